/**
 * Layout helpers shared by the per-family converters: torch Linear weights and fused
 * projections to TransformerLens's [heads, d_model, d_head] / [heads, d_head, d_model] layouts,
 * and the check that a converter used every tensor of the checkpoint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transpose2d } from "./layout.ts";
 *
 * assert.deepEqual(transpose2d({ shape: [2, 3], data: new Float32Array(6) }).shape, [3, 2]);
 * ```
 * @module
 */
import { WeightsError } from "../../errors.ts";
import { type Checkpoint, type CpuTensor, readTensor, type StateDict } from "../checkpoint.ts";
import type { HookedTransformerConfig } from "../config.ts";

/**
 * [rows, cols] -> [cols, rows].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transpose2d } from "./layout.ts";
 *
 * const upProj = { shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }; // [F, E]
 * const wIn = transpose2d(upProj); // [E, F]
 * assert.deepEqual([...wIn.data], [1, 4, 2, 5, 3, 6]);
 * ```
 */
export function transpose2d(t: CpuTensor): CpuTensor {
  const [r, c] = t.shape;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = t.data[i * c + j];
  return { shape: [c, r], data: out };
}

/**
 * Columns [c0, c0 + n) of a [rows, cols] matrix, as [heads, rows, dHead] ("m (h d) -> h m d").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitHeadsIn } from "./layout.ts";
 *
 * // c_attn [d_model 1, 3 * heads 2 * d_head 1]: columns q0 q1 k0 k1 v0 v1.
 * const cAttn = { shape: [1, 6], data: new Float32Array([1, 2, 3, 4, 5, 6]) };
 * const wk = splitHeadsIn(cAttn, 2, 2, 1); // [heads, d_model, d_head]
 * assert.deepEqual(wk.shape, [2, 1, 1]);
 * assert.deepEqual([...wk.data], [3, 4]);
 * ```
 */
export function splitHeadsIn(t: CpuTensor, c0: number, heads: number, dHead: number): CpuTensor {
  const [rows, cols] = t.shape;
  const out = new Float32Array(heads * rows * dHead);
  for (let h = 0; h < heads; h++) {
    for (let m = 0; m < rows; m++) {
      for (let d = 0; d < dHead; d++) {
        out[(h * rows + m) * dHead + d] = t.data[m * cols + c0 + h * dHead + d];
      }
    }
  }
  return { shape: [heads, rows, dHead], data: out };
}

/**
 * `n` values from `start` as a tensor of `shape`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { slice1d } from "./layout.ts";
 *
 * const bias = { shape: [6], data: new Float32Array([1, 2, 3, 4, 5, 6]) };
 * const bk = slice1d(bias, 2, 2, [2, 1]);
 * assert.deepEqual([...bk.data], [3, 4]);
 * ```
 */
export function slice1d(t: CpuTensor, start: number, n: number, shape: number[]): CpuTensor {
  return { shape, data: t.data.slice(start, start + n) };
}

/**
 * A zero tensor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { zeros } from "./layout.ts";
 *
 * const bU = zeros([1000]);
 * assert.ok(bU.data.length === 1000 && bU.data.every((x) => x === 0));
 * ```
 */
export function zeros(shape: number[]): CpuTensor {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}

/**
 * A converter's reader of a checkpoint: `get` reads a tensor (named after `prefix`) and records its
 * name in `used` for {@link checkExtra}; `has` says whether the checkpoint holds a name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkpointReader } from "./layout.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 *
 * using ck = await openCheckpoint("tests/reference/gpt2_tiny/hf");
 * const r = checkpointReader(ck, ck.names().some((n) => n.startsWith("transformer.")) ? "transformer." : "");
 * const wpe = await r.get("wpe.weight", [ck.shape(r.prefix + "wpe.weight")[0], 64]);
 * assert.equal(wpe.shape[1], 64);
 * assert.ok(r.used.has(r.prefix + "wpe.weight"));
 * assert.ok(r.has(r.prefix + "wpe.weight") && !r.has("no.such.tensor"));
 * ```
 */
export function checkpointReader(ck: Checkpoint, prefix = ""): {
  prefix: string;
  used: Set<string>;
  get: (name: string, shape: number[]) => Promise<CpuTensor>;
  has: (name: string) => boolean;
} {
  const used = new Set<string>();
  return {
    prefix,
    used,
    get: (n, shape) => (used.add(prefix + n), readTensor(ck, prefix + n, shape)),
    has: (n) => ck.names().includes(n),
  };
}

/**
 * Fails on tensors the converter did not use (a different model, or a corrupted file).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkExtra } from "./layout.ts";
 * import { WeightsError } from "../../errors.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 *
 * using ck = await openCheckpoint("tests/reference/gpt2_tiny/hf");
 * const used = new Set(ck.names().filter((n) => !n.endsWith("ln_f.bias")));
 * assert.throws(() => checkExtra(ck, used, /attn\.bias$/), WeightsError); // ln_f.bias unused
 * assert.doesNotThrow(() => checkExtra(ck, used, /ln_f\.bias$/));
 * ```
 */
export function checkExtra(ck: Checkpoint, used: Set<string>, ignore: RegExp): void {
  const extra = ck.names().filter((n) => !used.has(n) && !ignore.test(n));
  if (extra.length) {
    throw new WeightsError(
      ck.file(extra[0]),
      `unexpected tensors for this architecture: ${extra.slice(0, 8).join(", ")}` +
        (extra.length > 8 ? ` and ${extra.length - 8} more` : "") +
        "; is config.json for the same model?",
      extra[0],
    );
  }
}

/**
 * [rows = heads * dHead, cols] (a torch Linear weight) as [heads, cols, dHead]
 * ("(n h) m -> n m h"); `rowOffset` and `rowStride` pick heads out of a fused projection.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { linearToHeads } from "./layout.ts";
 *
 * // q_proj.weight [heads 2 * d_head 1, d_model 2] (torch Linear: [out, in]).
 * const qProj = { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) };
 * const wq = linearToHeads(qProj, 2, 1); // [heads, d_model, d_head]
 * assert.deepEqual(wq.shape, [2, 2, 1]);
 * assert.deepEqual([...wq.data], [1, 2, 3, 4]);
 * ```
 */
export function linearToHeads(
  t: CpuTensor,
  heads: number,
  dHead: number,
  rowOffset = 0,
  rowStride = 1,
): CpuTensor {
  const cols = t.shape[1];
  const out = new Float32Array(heads * cols * dHead);
  for (let n = 0; n < heads; n++) {
    for (let h = 0; h < dHead; h++) {
      const row = rowOffset + (n * rowStride) * dHead + h;
      for (let m = 0; m < cols; m++) out[(n * cols + m) * dHead + h] = t.data[row * cols + m];
    }
  }
  return { shape: [heads, cols, dHead], data: out };
}

/**
 * A torch Linear weight [out = E, in = heads * dHead] as W_O [heads, dHead, E]
 * ("m (n h) -> n h m").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { linearToWO } from "./layout.ts";
 *
 * // o_proj.weight [d_model 2, heads 2 * d_head 1].
 * const oProj = { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) };
 * const wo = linearToWO(oProj, 2, 1); // [heads, d_head, d_model]
 * assert.deepEqual(wo.shape, [2, 1, 2]);
 * assert.deepEqual([...wo.data], [1, 3, 2, 4]);
 * ```
 */
export function linearToWO(t: CpuTensor, heads: number, dHead: number): CpuTensor {
  const [D, inner] = t.shape;
  const out = new Float32Array(heads * dHead * D);
  for (let m = 0; m < D; m++) {
    for (let i = 0; i < inner; i++) out[i * D + m] = t.data[m * inner + i];
  }
  return { shape: [heads, dHead, D], data: out };
}

/**
 * One block's attention in the Hugging Face `self_attn.{q,k,v,o}_proj` layout (Llama, Mistral,
 * Qwen2, Gemma) into TransformerLens's names under `b` (e.g. "blocks.0."): W_Q/W_K/W_V per head
 * (`_W_K`, `_W_V` with grouped-query heads), W_O, and their biases (zeros where the checkpoint
 * has none). `get` reads a tensor of the given shape and marks it used; `has` says whether the
 * checkpoint holds one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint, readTensor, type StateDict } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { hfAttention } from "./layout.ts";
 *
 * const dir = "tests/reference/rmsgqa_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd: StateDict = new Map();
 * const get = (n: string, shape: number[]) => readTensor(ck, n, shape);
 * await hfAttention(sd, cfg, "blocks.0.", "model.layers.0.self_attn.", get, (n) => ck.names().includes(n));
 * assert.deepEqual(sd.get("blocks.0.attn._W_K")!.shape, [cfg.nKeyValueHeads, cfg.dModel, cfg.dHead]);
 * ```
 */
export async function hfAttention(
  sd: StateDict,
  cfg: HookedTransformerConfig,
  b: string,
  a: string,
  get: (name: string, shape: number[]) => Promise<CpuTensor>,
  has: (name: string) => boolean,
): Promise<void> {
  const { dModel: D, nHeads: H, dHead: E } = cfg;
  const Hkv = cfg.nKeyValueHeads ?? H;
  const kv = cfg.nKeyValueHeads ? "_" : "";
  sd.set(b + "attn.W_Q", linearToHeads(await get(a + "q_proj.weight", [H * E, D]), H, E));
  sd.set(b + `attn.${kv}W_K`, linearToHeads(await get(a + "k_proj.weight", [Hkv * E, D]), Hkv, E));
  sd.set(b + `attn.${kv}W_V`, linearToHeads(await get(a + "v_proj.weight", [Hkv * E, D]), Hkv, E));
  const bias = async (n: string, heads: number) =>
    has(a + n)
      ? { shape: [heads, E], data: (await get(a + n, [heads * E])).data }
      : zeros([heads, E]);
  sd.set(b + "attn.b_Q", await bias("q_proj.bias", H));
  sd.set(b + `attn.${kv}b_K`, await bias("k_proj.bias", Hkv));
  sd.set(b + `attn.${kv}b_V`, await bias("v_proj.bias", Hkv));
  sd.set(b + "attn.W_O", linearToWO(await get(a + "o_proj.weight", [D, H * E]), H, E));
  sd.set(b + "attn.b_O", has(a + "o_proj.bias") ? await get(a + "o_proj.bias", [D]) : zeros([D]));
}
