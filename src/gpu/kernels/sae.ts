/**
 * SAE kernels (shaders/sae.wgsl, and the encode epilogue of the dense and general matmul
 * kernels): fused encode, activations (ReLU, JumpReLU, gated, top-k by radix select), the sparse
 * decode that reads only active rows of W_dec, and SAELens's run-time input normalisation. Their
 * backward rules are in backward.ts.
 *
 * @example
 * ```ts
 * import { saeDecode, saeEncode } from "./sae.ts";
 * const [pre, post] = saeEncode(x, W_enc, b_enc, "relu");
 * const recons = saeDecode(post, W_dec, extra, 64, false);
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
 * const [pre, post] = saeEncode(x, W_enc, b_enc, "relu");
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
 * const post = saeActivation(pre, "jumprelu", threshold);
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
 * const post = topK(pre, 8);
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
 * const recons = saeDecode(acts, wDec, extra, 64, false);
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
 * const stats = rowStats(x);
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
 * const y = rowNorm(x, stats, "layerNormIn", 1e-5);
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
