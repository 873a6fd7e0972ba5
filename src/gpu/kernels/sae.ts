/**
 * SAE kernels (shaders/sae.wgsl, and the encode epilogue of the dense and general matmul
 * kernels): fused encode, activations (ReLU, JumpReLU, gated, top-k by radix select), the sparse
 * decode that reads only active rows of W_dec, and SAELens's run-time input normalisation. Their
 * backward rules are in backward.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { saeDecode, saeEncode } from "./sae.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, d_in]
 * using W_enc = Tensor.from([1, 0, 1, 0, 1, -1], [2, 3]); // [d_in, d_sae]
 * using b_enc = Tensor.from([0, 0, 0], [3]);
 * const [pre, post] = saeEncode(x, W_enc, b_enc, "relu");
 * assert.deepEqual([...await post.toArray()], [1, 2, 0]);
 * using W_dec = Tensor.from([1, 1, 0, 1, 5, 5], [3, 2]); // [d_sae, d_in]
 * using extra = Tensor.from([0.5, 0.5, 1, 1, 1], [5]); // b_dec [d_in], then a scale per latent
 * using recons = saeDecode(post, W_dec, extra, 64, false);
 * assert.deepEqual([...await recons.toArray()], [1.5, 3.5]); // 1·[1, 1] + 2·[0, 1] + b_dec
 * pre.dispose();
 * post.dispose();
 * ```
 * @module
 */
import reduceWgsl from "../../../shaders/reduce.wgsl" with { type: "text" };
import saeWgsl from "../../../shaders/sae.wgsl" with { type: "text" };
import { dispatch, pipeline, type ShaderSource } from "../dispatch.ts";
import { Tensor } from "../tensor.ts";
import { dispatchRows, grid256, gridRows } from "./launch.ts";
import { linear } from "./linear.ts";
import { matmulEncode } from "./matmul.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/sae.wgsl. */
const SAE_P = uniforms({
  /** Tokens. */
  rows: "u32",
  /** d_sae (act, topk, compact) or d_in (decode, norms). */
  n: "u32",
  /** act: {@link SAE_ACT}; row_norm: {@link ROW_NORM}. */
  mode: "u32",
  /** topk: k; compact/decode: capacity of the active list per row. */
  k: "u32",
  /** decode: d_sae. */
  d_sae: "u32",
  /** decode: multiply latents by scale[j] (top-k's rescale_acts_by_decoder_norm). */
  scaled: "u32",
  eps: "f32",
});

/** shaders/sae.wgsl (with shaders/reduce.wgsl). */
export const SAE_SHADER: ShaderSource = shaderSource("sae", SAE_P, reduceWgsl, saeWgsl);

/** SAE activation codes of the `act` kernel and the fused encode epilogue. */
export const SAE_ACT = { relu: 1, jumprelu: 2, gated: 3 } as const;

/**
 * Fused SAE encode: pre = x · W_enc + b and post = activation(pre) in one dispatch. `aux` is the
 * threshold [d_sae] (jumprelu) or the gate pre-activation [rows, d_sae] (gated).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { saeEncode } from "./sae.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, d_in]
 * using W_enc = Tensor.from([1, 0, 1, 0, 1, -1], [2, 3]); // [d_in, d_sae]
 * using b_enc = Tensor.from([0, 0, 0], [3]);
 * const [pre, post] = saeEncode(x, W_enc, b_enc, "relu");
 * assert.deepEqual([...await pre.toArray()], [1, 2, -1]);
 * assert.deepEqual([...await post.toArray()], [1, 2, 0]);
 * pre.dispose();
 * post.dispose();
 * ```
 */
export function saeEncode(
  x: Tensor,
  w: Tensor,
  b: Tensor,
  act: keyof typeof SAE_ACT,
  aux?: Tensor,
): [Tensor, Tensor] {
  const [K, N] = w.shape;
  if (K % 4 === 0 && N % 4 === 0) {
    // The tiled kernel with the activation (and threshold or gate) in its epilogue.
    const gate = act === "jumprelu"
      ? { kind: "threshold" as const, t: aux! }
      : act === "gated"
      ? { kind: "gate" as const, t: aux! }
      : undefined;
    const [pre, post] = linear(x, w, b, { act: "relu", gate });
    return [pre, post!];
  }
  // The general matmul's encode entry.
  return matmulEncode(x, w, b, SAE_ACT[act], aux);
}

/**
 * SAE activation of an (already hooked) pre-activation [rows, d_sae].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { saeActivation } from "./sae.ts";
 *
 * await initGpu();
 * using pre = Tensor.from([0.5, 2, -1], [1, 3]);
 * using threshold = Tensor.from([1, 1, 1], [3]);
 * using post = saeActivation(pre, "jumprelu", threshold); // zero unless above the threshold
 * assert.deepEqual([...await post.toArray()], [0, 2, 0]);
 * ```
 */
export function saeActivation(pre: Tensor, act: keyof typeof SAE_ACT, aux?: Tensor): Tensor {
  const n = pre.shape.at(-1) ?? 1;
  const rows = pre.size / n;
  const out = Tensor.empty(pre.shape);
  dispatch(
    pipeline(SAE_SHADER, "act"),
    SAE_P.pack({ rows, n, mode: SAE_ACT[act] }),
    [pre.buffer, (aux ?? pre).buffer, out.buffer],
    grid256(rows * n),
  );
  return out;
}

/**
 * Per-row top-k (radix select, not a sort): keeps the k largest of each row (ReLU applied),
 * zero elsewhere; ties at the k-th value go to the lowest indices.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { topK } from "./sae.ts";
 *
 * await initGpu();
 * using pre = Tensor.from([3, -1, 5, 4, 0], [1, 5]);
 * using post = topK(pre, 2);
 * assert.deepEqual([...await post.toArray()], [0, 0, 5, 4, 0]);
 * ```
 */
export function topK(pre: Tensor, k: number): Tensor {
  const n = pre.shape.at(-1) ?? 1;
  const rows = pre.size / n;
  const out = Tensor.empty(pre.shape);
  dispatch(
    pipeline(SAE_SHADER, "topk"),
    SAE_P.pack({ rows, n, k }),
    [pre.buffer, undefined, out.buffer],
    gridRows(rows),
  );
  return out;
}

/**
 * SAE decode reading only the active rows of W_dec: compacts each row's non-zero latents (up to
 * `cap`; rows with more are decoded densely), then recons = acts · W_dec + b_dec. `extra` holds
 * b_dec [d_in] then a per-latent scale [d_sae] applied when `scaled`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { saeDecode } from "./sae.ts";
 *
 * await initGpu();
 * using acts = Tensor.from([0, 2, 0], [1, 3]); // [rows, d_sae]: one latent active
 * using wDec = Tensor.from([1, 1, 0, 1, 5, 5], [3, 2]);
 * using extra = Tensor.from([0, 0, 1, 3, 1], [5]); // b_dec, then the per-latent scale
 * using plain = saeDecode(acts, wDec, extra, 64, false);
 * using scaled = saeDecode(acts, wDec, extra, 64, true);
 * assert.deepEqual([...await plain.toArray()], [0, 2]);
 * assert.deepEqual([...await scaled.toArray()], [0, 6]);
 * ```
 */
export function saeDecode(
  acts: Tensor,
  wDec: Tensor,
  extra: Tensor,
  cap: number,
  scaled: boolean,
): Tensor {
  const dIn = wDec.shape[1];
  const dSae = acts.shape.at(-1) ?? 1;
  const rows = acts.size / dSae;
  const idx = Tensor.empty([rows, cap + 1], "int32");
  const vals = Tensor.empty([rows, cap]);
  dispatchRows(SAE_SHADER, "compact", SAE_P.pack({ rows, n: dSae, k: cap }), [
    acts.buffer,
    undefined,
    vals.buffer,
    idx.buffer,
  ], rows);
  const out = Tensor.empty([...acts.shape.slice(0, -1), dIn]);
  dispatch(
    pipeline(SAE_SHADER, "decode"),
    SAE_P.pack({ rows, n: dIn, k: cap, d_sae: dSae, scaled }),
    [acts.buffer, vals.buffer, out.buffer, idx.buffer, wDec.buffer, extra.buffer],
    gridRows(rows),
  );
  idx.dispose();
  vals.dispose();
  return out;
}

/**
 * Per-row mean, unbiased std and L2 norm of x [.., n]: returns [rows, 4].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { rowStats } from "./sae.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 3], [1, 2]);
 * using stats = rowStats(x); // [rows, 4]: mean, unbiased std, L2 norm, (unused)
 * const [mean, std, norm] = r4(await stats.toArray());
 * assert.deepEqual([mean, std, norm], r4([2, Math.SQRT2, Math.sqrt(10)]));
 * ```
 */
export function rowStats(x: Tensor): Tensor {
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = Tensor.empty([rows, 4]);
  dispatch(
    pipeline(SAE_SHADER, "row_stats"),
    SAE_P.pack({ rows, n }),
    [x.buffer, undefined, out.buffer],
    gridRows(rows),
  );
  return out;
}

/** Modes of {@link rowNorm}. */
export const ROW_NORM = { constantIn: 0, constantOut: 1, layerNormIn: 2, layerNormOut: 3 } as const;

/**
 * SAELens's run-time normalisation (or its inverse) with stats from {@link rowStats}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { rowNorm, rowStats } from "./sae.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 3], [1, 2]);
 * using stats = rowStats(x);
 * using y = rowNorm(x, stats, "layerNormIn", 0); // (x - mean) / std
 * assert.deepEqual(r4(await y.toArray()), r4([-1 / Math.SQRT2, 1 / Math.SQRT2]));
 * ```
 */
export function rowNorm(x: Tensor, stats: Tensor, mode: keyof typeof ROW_NORM, eps = 1e-5): Tensor {
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = Tensor.empty(x.shape);
  dispatch(
    pipeline(SAE_SHADER, "row_norm"),
    SAE_P.pack({ rows, n, mode: ROW_NORM[mode], eps }),
    [x.buffer, stats.buffer, out.buffer],
    grid256(rows * n),
  );
  return out;
}
