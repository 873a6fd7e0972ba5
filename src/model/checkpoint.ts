/**
 * Reading a Hugging Face checkpoint: `model.safetensors`, or `model.safetensors.index.json` plus
 * shards; F32/F16/BF16 read as float32. The per-family conversion to TransformerLens's layout is
 * in `convert/`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openCheckpoint } from "./checkpoint.ts";
 *
 * using ck = await openCheckpoint("tests/reference/gpt2_tiny/hf");
 * assert.deepEqual(ck.shape("transformer.wte.weight"), [1000, 64]);
 * ```
 * @module
 */
import { join } from "node:path";
import { WeightsError } from "../errors.ts";
import { readJsonFile } from "../io/json.ts";
import { SafetensorsFile } from "../io/safetensors.ts";

/** A CPU tensor: shape and float32 data. */
export interface CpuTensor {
  /** Dimensions. */
  shape: number[];
  /** Row-major data. */
  data: Float32Array;
}

/** A TransformerLens-layout state dict on the CPU. */
export type StateDict = Map<string, CpuTensor>;

/** Tensors of a (possibly sharded) checkpoint by name. */
export interface Checkpoint extends Disposable {
  /** Directory or file it came from. */
  readonly source: string;
  /** Every tensor name. */
  names(): string[];
  /** Shape of a tensor. */
  shape(name: string): readonly number[];
  /** A tensor as float32 (floating-point dtypes only: integer weights are a WeightsError). */
  float32(name: string): Promise<Float32Array>;
  /** The file holding a tensor (the checkpoint's main file for absent ones). */
  file(name: string): string;
}

/**
 * Opens `dir/model.safetensors` or `dir/model.safetensors.index.json` with its shards.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WeightsError } from "../errors.ts";
 * import { openCheckpoint } from "./checkpoint.ts";
 *
 * using ck = await openCheckpoint("tests/reference/neox_tiny/hf");
 * assert.ok(ck.names().length > 0);
 * await assert.rejects(openCheckpoint("tests/reference"), WeightsError); // no weights there
 * ```
 */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const single = join(dir, "model.safetensors");
  const index = join(dir, "model.safetensors.index.json");
  const files = new Map<string, SafetensorsFile>();
  const where = new Map<string, SafetensorsFile>();
  // Present at all: a named pipe or directory in its place is refused by the reader, by name.
  const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
  try {
    if (await exists(single)) {
      const f = await SafetensorsFile.open(single);
      files.set(single, f);
      for (const n of f.names()) where.set(n, f);
    } else if (await exists(index)) {
      const idx = await readJsonFile(index);
      const map = idx && typeof idx === "object" && !Array.isArray(idx)
        ? (idx as Record<string, unknown>).weight_map
        : undefined;
      if (!map || typeof map !== "object" || Array.isArray(map)) {
        throw new WeightsError(index, "no weight_map object", "weight_map");
      }
      for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
        if (
          typeof shard !== "string" || !shard || shard.includes("/") || shard.includes("\\") ||
          shard.startsWith(".")
        ) {
          throw new WeightsError(
            index,
            `shard ${JSON.stringify(shard)} is not a file name in the directory`,
            name,
          );
        }
        const path = join(dir, shard);
        let f = files.get(path);
        if (!f) {
          f = await SafetensorsFile.open(path);
          files.set(path, f);
        }
        if (!f.has(name)) {
          throw new WeightsError(path, "listed in the index but not in the shard", name);
        }
        where.set(name, f);
      }
    } else {
      throw new WeightsError(
        dir,
        "no model.safetensors or model.safetensors.index.json in the directory",
      );
    }
  } catch (e) {
    for (const f of files.values()) f.close();
    throw e;
  }
  return {
    source: dir,
    names: () => [...where.keys()],
    shape: (n) => where.get(n)!.info(n).shape,
    float32: (n) => where.get(n)!.floatWeights(n),
    file: (n) =>
      where.get(n)?.path ??
        (files.size === 1 ? [...files.keys()][0] : join(dir, "model.safetensors.index.json")),
    [Symbol.dispose]: () => {
      for (const f of files.values()) f.close();
    },
  };
}

/**
 * Reads a tensor as float32, checking that it exists, has `shape` and is finite.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { WeightsError } from "../errors.ts";
 * import { openCheckpoint, readTensor } from "./checkpoint.ts";
 *
 * using ck = await openCheckpoint("tests/reference/gpt2_tiny/hf");
 * const wte = await readTensor(ck, "transformer.wte.weight", [1000, 64]);
 * assert.equal(wte.data.length, 1000 * 64);
 * await assert.rejects(readTensor(ck, "transformer.wte.weight", [64, 1000]), WeightsError);
 * ```
 */
export async function readTensor(
  ck: Checkpoint,
  name: string,
  shape: number[],
): Promise<CpuTensor> {
  if (!ck.names().includes(name)) {
    throw new WeightsError(
      ck.file(name),
      "missing tensor; is config.json for the same model?",
      name,
    );
  }
  const got = ck.shape(name);
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new WeightsError(
      ck.file(name),
      `shape [${got.join(", ")}], expected [${shape.join(", ")}]`,
      name,
    );
  }
  const data = await ck.float32(name);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new WeightsError(ck.file(name), `non-finite value ${data[i]} at element ${i}`, name);
    }
  }
  return { shape, data };
}
