/**
 * Uploading a processed TransformerLens-layout state dict to the GPU in the layouts the
 * components read (joint W_Q|W_K|W_V, W_U padded to a multiple of 4 columns, rotary tables).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { loadPretrained } from "./load.ts";
 * import { uploadWeights } from "./upload.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const weights = uploadWeights(sd, cfg, "float32");
 * assert.equal(weights.blocks.length, 2);
 * ```
 * @module
 */
import { GpuLimitError, HookNameError } from "../errors.ts";
import { freezeWeight } from "../gpu/kernels/linear.ts";
import { runtime } from "../gpu/runtime.ts";
import { type DType, Tensor } from "../gpu/tensor.ts";
import type { BlockWeights, ModelWeights } from "./components/index.ts";
import type { HookedTransformerConfig } from "./config.ts";
import { rotaryTables } from "./processing.ts";
import type { CpuTensor, StateDict } from "./checkpoint.ts";

/** [H, E, D] -> [E, H * D]. */
function headsToColumns(data: Float32Array, H: number, E: number, D: number): Float32Array {
  const out = new Float32Array(E * H * D);
  for (let h = 0; h < H; h++) {
    for (let e = 0; e < E; e++) {
      for (let d = 0; d < D; d++) out[e * H * D + h * D + d] = data[(h * E + e) * D + d];
    }
  }
  return out;
}

/** Makes GPU tensors from state dict entries (checking the adapter's binding limit). */
type Uploader = (name: string, data?: Float32Array, shape?: number[], dt?: DType) => Tensor;

/**
 * Uploads the weights of a model: dense-layer matrices (and W_E) as f16 with dtype "float16".
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { loadPretrained } from "./load.ts";
 * import { uploadWeights, weightData } from "./upload.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float16");
 * // Read back to float32: the f16 rounding error is small.
 * const { data } = await weightData(w, cfg, "embed.W_E");
 * const wE = sd.get("embed.W_E")!.data;
 * assert.ok(data.every((x, i) => Math.abs(x - wE[i]) <= 1e-3 * Math.max(1, Math.abs(wE[i]))));
 * ```
 */
export function uploadWeights(
  sd: StateDict,
  cfg: HookedTransformerConfig,
  dtype: "float32" | "float16",
): ModelWeights {
  const maxBind = runtime().gpu.limits.maxStorageBufferBindingSize;
  const t: Uploader = (name, data, shape, dt = "float32") => {
    const w = sd.get(name)!;
    const d = data ?? w.data;
    if (d.byteLength / (dt === "float16" ? 2 : 1) > maxBind) {
      throw new GpuLimitError(
        `Weight ${name} needs ${d.byteLength / (dt === "float16" ? 2 : 1)} bytes (${dt}) in one ` +
          `binding; this adapter allows ` +
          `${maxBind}. Use a GPU with a larger maxStorageBufferBindingSize or a smaller model.`,
      );
    }
    return Tensor.from(d, shape ?? w.shape, dt).keep();
  };
  // Dense-layer matrices may be stored as f16 (the tiled kernels read them and compute in f32).
  // Frozen (nothing writes a model's weights): on a software adapter the products of a few rows
  // (logitsAt, generation) read them from texture copies made on first use (see
  // tuning.linear.matvecTexture).
  const matrix = (name: string, data?: Float32Array, shape?: number[]): Tensor => {
    const sh = shape ?? sd.get(name)!.shape;
    const ok = dtype === "float16" && sh[0] % 4 === 0 && sh[1] % 4 === 0;
    return freezeWeight(t(name, data, sh, ok ? "float16" : "float32"));
  };
  const opt = (name: string) => (sd.has(name) ? t(name) : undefined);
  const blocks: BlockWeights[] = [];
  for (let l = 0; l < cfg.nLayers; l++) blocks.push(uploadBlock(sd, cfg, l, t, matrix, opt));
  return {
    embed: {
      // W_E follows the weights' dtype too: GPT-2's 147 MiB f32 table exceeds the 128 MiB
      // binding limit of some adapters (lavapipe); in f16 it fits.
      wE: t("embed.W_E", undefined, undefined, dtype === "float16" ? "float16" : "float32"),
      wPos: opt("pos_embed.W_pos"),
    },
    blocks,
    lnFinal: { w: opt("ln_final.w"), b: opt("ln_final.b") },
    unembed: {
      wU: padColumns(matrix, sd.get("unembed.W_U")!, "unembed.W_U"),
      bU: t("unembed.b_U"),
    },
    rot: cfg.rotaryDim ? rotaryTensor(cfg) : undefined,
  };
}

/** One block's weights. */
function uploadBlock(
  sd: StateDict,
  cfg: HookedTransformerConfig,
  l: number,
  t: Uploader,
  matrix: (name: string, data?: Float32Array, shape?: number[]) => Tensor,
  opt: (name: string) => Tensor | undefined,
): BlockWeights {
  const { dModel: E, nHeads: H, dHead: D } = cfg;
  const Hkv = cfg.nKeyValueHeads ?? H;
  const kv = cfg.nKeyValueHeads ? "_" : ""; // TransformerLens's names for grouped-query K/V
  const b = `blocks.${l}.`;
  const cols = (n: string, heads: number) => headsToColumns(sd.get(b + n)!.data, heads, E, D);
  const [nq, nkv] = [H * D, Hkv * D];
  const wqkv = new Float32Array(E * (nq + 2 * nkv));
  const parts = [cols("attn.W_Q", H), cols(`attn.${kv}W_K`, Hkv), cols(`attn.${kv}W_V`, Hkv)];
  for (let e = 0; e < E; e++) {
    let c = e * (nq + 2 * nkv);
    for (const [i, p] of parts.entries()) {
      const n = i === 0 ? nq : nkv;
      wqkv.set(p.subarray(e * n, (e + 1) * n), c);
      c += n;
    }
  }
  const biasNames = ["attn.b_Q", `attn.${kv}b_K`, `attn.${kv}b_V`];
  let bqkv: Tensor | undefined;
  if (biasNames.some((n) => sd.has(b + n))) {
    const data = new Float32Array(nq + 2 * nkv);
    let c = 0;
    for (const [i, n] of biasNames.entries()) {
      if (sd.has(b + n)) data.set(sd.get(b + n)!.data, c);
      c += i === 0 ? nq : nkv;
    }
    bqkv = t(b + "attn.b_Q", data, [nq + 2 * nkv]);
  }
  const flat = (n: string, heads: number) =>
    sd.has(b + n) ? t(b + n, undefined, [heads * D]) : undefined;
  return {
    ln1: { w: opt(b + "ln1.w"), b: opt(b + "ln1.b") },
    attn: {
      wqkv: matrix(b + "attn.W_Q", wqkv, [E, nq + 2 * nkv]),
      bqkv,
      bq: flat("attn.b_Q", H),
      bk: flat(`attn.${kv}b_K`, Hkv),
      bv: flat(`attn.${kv}b_V`, Hkv),
      wo: matrix(b + "attn.W_O", undefined, [H * D, E]),
      bo: opt(b + "attn.b_O"),
    },
    ln2: { w: opt(b + "ln2.w"), b: opt(b + "ln2.b") },
    ...(sd.has(b + "ln1_post.w") ? { ln1Post: { w: t(b + "ln1_post.w") } } : {}),
    ...(sd.has(b + "ln2_post.w") ? { ln2Post: { w: t(b + "ln2_post.w") } } : {}),
    mlp: {
      win: matrix(b + "mlp.W_in"),
      bin: opt(b + "mlp.b_in"),
      wgate: sd.has(b + "mlp.W_gate") ? matrix(b + "mlp.W_gate") : undefined,
      wout: matrix(b + "mlp.W_out"),
      bout: opt(b + "mlp.b_out"),
    },
  };
}

/** Uploads [rows, cols] with cols padded to a multiple of 4 (zeros), for the tiled kernel. */
function padColumns(
  t: (name: string, data?: Float32Array, shape?: number[]) => Tensor,
  w: CpuTensor,
  name: string,
): Tensor {
  const [rows, cols] = w.shape;
  const padded = Math.ceil(cols / 4) * 4;
  if (padded === cols) return t(name);
  const data = new Float32Array(rows * padded);
  for (let r = 0; r < rows; r++) data.set(w.data.subarray(r * cols, (r + 1) * cols), r * padded);
  return t(name, data, [rows, padded]);
}

/** The rotary tables: cos then sin, each [n_ctx, rotary_dim]. */
function rotaryTensor(cfg: HookedTransformerConfig): Tensor {
  const { cos, sin } = rotaryTables(cfg.nCtx, cfg.rotaryDim!, cfg.rotaryBase, cfg.ropeScaling);
  const table = new Float32Array(cos.length * 2);
  table.set(cos);
  table.set(sin, cos.length);
  return Tensor.from(table, [2, cfg.nCtx, cfg.rotaryDim!]).keep();
}

/**
 * A weight read back from the GPU in TransformerLens's layout: `embed.W_E`, `blocks.L.attn.W_O`
 * or `unembed.W_U` (without the padding of its columns).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { loadPretrained } from "./load.ts";
 * import { uploadWeights, weightData } from "./upload.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const weights = uploadWeights(sd, cfg, "float32");
 * const { shape, data } = await weightData(weights, cfg, "unembed.W_U");
 * assert.deepEqual(shape, [64, 1000]); // without the padding of its columns
 * assert.deepEqual(data, sd.get("unembed.W_U")!.data);
 * ```
 */
export async function weightData(
  w: ModelWeights,
  cfg: HookedTransformerConfig,
  name: string,
): Promise<{ shape: number[]; data: Float32Array }> {
  const { nHeads: H, dHead: E, dModel: D, dVocabOut: V } = cfg;
  const m = /^blocks\.(\d+)\.attn\.W_O$/.exec(name);
  if (m && Number(m[1]) < cfg.nLayers) {
    return {
      shape: [H, E, D],
      data: await w.blocks[Number(m[1])].attn.wo.toArray() as Float32Array,
    };
  }
  if (name === "embed.W_E") {
    return { shape: [...w.embed.wE.shape], data: await w.embed.wE.toArray() as Float32Array };
  }
  if (name === "unembed.W_U") {
    const padded = await w.unembed.wU.toArray() as Float32Array;
    const ld = w.unembed.wU.shape[1];
    const data = new Float32Array(D * V);
    for (let d = 0; d < D; d++) data.set(padded.subarray(d * ld, d * ld + V), d * V);
    return { shape: [D, V], data };
  }
  throw new HookNameError(
    `weightData: "${name}" is not available; use embed.W_E, blocks.L.attn.W_O or unembed.W_U.`,
  );
}
