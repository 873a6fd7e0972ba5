/**
 * Backward rules of the forward kernels (shaders/backward.wgsl): activations (plain, gated,
 * masks), softmax, norms, the next-token loss and SAELens's normalisation. The dense layers'
 * backward (`linearBack`) is with their forward in linear.ts.
 *
 * @example
 * ```ts
 * import { activationGrad, softmaxGrad } from "./backward.ts";
 * const gScores = softmaxGrad(gPattern, pattern);
 * const gPre = activationGrad(gPost, pre, "gelu_new");
 * ```
 * @module
 */
import activationsWgsl from "../../../shaders/activations.wgsl" with { type: "text" };
import backwardWgsl from "../../../shaders/backward.wgsl" with { type: "text" };
import reduceWgsl from "../../../shaders/reduce.wgsl" with { type: "text" };
import { ShapeError } from "../../errors.ts";
import { dispatch, type Param, pipeline, type ShaderSource } from "../dispatch.ts";
import { Tensor } from "../tensor.ts";
import { ACT_CODES } from "./elementwise.ts";
import { dispatchRows, grid256, gridRows } from "./launch.ts";
import type { NormKind } from "./norm.ts";
import { ROW_NORM } from "./sae.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/backward.wgsl. */
const BACKWARD_P = uniforms({
  rows: "u32",
  /** Row length (or elements, for the elementwise rules). */
  n: "u32",
  /** Activation code, mask scaling, or {@link ROW_NORM} mode. */
  mode: "u32",
  /** 1: the norm subtracts the mean (LN). */
  center: "u32",
  /** loss_grad: the loss's scale; rownorm_in_grad: eps. */
  scale: "f32",
  /** loss_grad: positions per row of tokens. */
  tok_stride: "u32",
});

/** shaders/backward.wgsl (with shaders/activations.wgsl and shaders/reduce.wgsl). */
export const BACKWARD_SHADER: ShaderSource = shaderSource(
  "backward",
  BACKWARD_P,
  activationsWgsl,
  reduceWgsl,
  backwardWgsl,
);

function bwd(
  entry: string,
  params: Param[],
  buffers: (Tensor | undefined)[],
  groups: [number, number?],
): void {
  dispatch(pipeline(BACKWARD_SHADER, entry), params, buffers.map((t) => t?.buffer), groups);
}

/**
 * g * act'(x) for an activation function by name.
 *
 * @example
 * ```ts
 * const gPre = activationGrad(gPost, pre, "gelu_new");
 * ```
 */
export function activationGrad(g: Tensor, x: Tensor, fn: string): Tensor {
  const code = ACT_CODES[fn];
  if (code === undefined || code > 3) throw new ShapeError(`No gradient for activation "${fn}".`);
  const out = Tensor.empty(x.shape);
  bwd("act_grad", BACKWARD_P.pack({ n: x.size, mode: code }), [g, x, out], grid256(x.size));
  return out;
}

/**
 * Gradients of post = act(pre) * lin: [dL/dpre, dL/dlin].
 *
 * @example
 * ```ts
 * const [gPre, gLin] = gatedGrad(g, pre, lin, "silu");
 * ```
 */
export function gatedGrad(g: Tensor, pre: Tensor, lin: Tensor, fn: string): [Tensor, Tensor] {
  const code = ACT_CODES[fn];
  const a = Tensor.empty(pre.shape), b = Tensor.empty(pre.shape);
  bwd(
    "gated_grad",
    BACKWARD_P.pack({ n: pre.size, mode: code }),
    [g, pre, a, lin, b],
    grid256(pre.size),
  );
  return [a, b];
}

/**
 * g where `acts` is non-zero (optionally times a per-column scale): the gradient through ReLU,
 * JumpReLU, top-k and gates, whose active set is where the output is non-zero.
 *
 * @example
 * ```ts
 * const gPre = maskGrad(gPost, post);
 * ```
 */
export function maskGrad(g: Tensor, acts: Tensor, scale?: Tensor): Tensor {
  const n = acts.shape.at(-1) ?? 1;
  const out = Tensor.empty(acts.shape);
  bwd("mask_grad", BACKWARD_P.pack({ rows: acts.size / n, n, mode: scale ? 1 : 0 }), [
    g,
    acts,
    out,
    scale ?? acts,
  ], grid256(acts.size));
  return out;
}

/**
 * Softmax backward over the last dimension: pattern * (g - sum(g * pattern)).
 *
 * @example
 * ```ts
 * const gScores = softmaxGrad(gPattern, pattern);
 * ```
 */
export function softmaxGrad(g: Tensor, pattern: Tensor): Tensor {
  const n = pattern.shape.at(-1) ?? 1;
  const rows = pattern.size / n;
  const out = Tensor.empty(pattern.shape);
  dispatchRows(BACKWARD_SHADER, "softmax_grad", BACKWARD_P.pack({ rows, n }), [
    g.buffer,
    pattern.buffer,
    out.buffer,
  ], rows);
  return out;
}

/**
 * Backward of normalized = (x - mean) / scale (LN) or x / scale (RMS) with the scale an input
 * of its own: [dL/dx, dL/dscale].
 *
 * @example
 * ```ts
 * const [gx, gScale] = normApplyGrad(g, x, scale, "LN");
 * ```
 */
export function normApplyGrad(
  g: Tensor,
  x: Tensor,
  scale: Tensor,
  kind: NormKind,
): [Tensor, Tensor] {
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  const gx = Tensor.empty(x.shape), gs = Tensor.empty(scale.shape);
  const params = BACKWARD_P.pack({ rows, n: d, center: kind === "LN" });
  dispatchRows(BACKWARD_SHADER, "norm_apply_grad", params, [
    g.buffer,
    x.buffer,
    gx.buffer,
    scale.buffer,
    gs.buffer,
  ], rows);
  return [gx, gs];
}

/**
 * Backward of scale = sqrt(mean((x - mean)^2) + eps) (LN) or sqrt(mean(x^2) + eps) (RMS): dL/dx.
 *
 * @example
 * ```ts
 * const gx = normScaleGrad(gScale, x, scale, "LN");
 * ```
 */
export function normScaleGrad(gScale: Tensor, x: Tensor, scale: Tensor, kind: NormKind): Tensor {
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  const gx = Tensor.empty(x.shape);
  const params = BACKWARD_P.pack({ rows, n: d, center: kind === "LN" });
  dispatchRows(BACKWARD_SHADER, "norm_scale_grad", params, [
    gScale.buffer,
    x.buffer,
    gx.buffer,
    scale.buffer,
  ], rows);
  return gx;
}

/**
 * dL/dlogits of the mean next-token loss times `scale` (1 / number of predicted tokens for the
 * mean): softmax - one-hot of the next token, zero on each row's last position.
 *
 * @example
 * ```ts
 * const g = lossGrad(logits, tokens, 1 / (B * (P - 1)));
 * ```
 */
export function lossGrad(logits: Tensor, tokens: Tensor, scale: number): Tensor {
  const [B, P, V] = logits.shape;
  const out = Tensor.empty(logits.shape);
  const params = BACKWARD_P.pack({ rows: B * P, n: V, scale, tok_stride: P });
  dispatchRows(BACKWARD_SHADER, "loss_grad", params, [
    undefined,
    logits.buffer,
    out.buffer,
    undefined,
    undefined,
    tokens.buffer,
  ], B * P);
  return out;
}

/**
 * Backward of SAELens's input normalisation (see sae.ts's rowNorm): dL/dx from dL/dnormed, with
 * the statistics' dependence on x included.
 *
 * @example
 * ```ts
 * const gx = rowNormInGrad(g, x, stats, "layerNormIn");
 * ```
 */
export function rowNormInGrad(
  g: Tensor,
  x: Tensor,
  stats: Tensor,
  mode: "constantIn" | "layerNormIn",
  eps = 1e-5,
): Tensor {
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = Tensor.empty(x.shape);
  bwd(
    "rownorm_in_grad",
    BACKWARD_P.pack({ rows, n, mode: ROW_NORM[mode], scale: eps }),
    [g, x, out, stats],
    gridRows(rows),
  );
  return out;
}

/**
 * Backward of the reconstruction's denormalisation: [dL/dr, the part of dL/dx through the
 * statistics of the SAE input x].
 *
 * @example
 * ```ts
 * const [gr, gx] = rowNormOutGrad(g, recons, stats, x, "layerNormOut");
 * ```
 */
export function rowNormOutGrad(
  g: Tensor,
  r: Tensor,
  stats: Tensor,
  x: Tensor,
  mode: "constantOut" | "layerNormOut",
): [Tensor, Tensor] {
  const n = r.shape.at(-1) ?? 1;
  const rows = r.size / n;
  const gr = Tensor.empty(r.shape), gx = Tensor.empty(x.shape);
  bwd("rownorm_out_grad", BACKWARD_P.pack({ rows, n, mode: ROW_NORM[mode] }), [
    g,
    r,
    gr,
    stats,
    gx,
    undefined,
    x,
  ], gridRows(rows));
  return [gr, gx];
}
