/**
 * Backward rules of the forward kernels (shaders/backward.wgsl): activations (plain, gated,
 * masks), softmax, norms, the next-token loss and SAELens's normalisation. The dense layers'
 * backward (`linearBack`) is with their forward in linear.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { activationGrad, softmaxGrad } from "./backward.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using pattern = Tensor.from([0.5, 0.5], [1, 2]);
 * using gPattern = Tensor.from([1, 0], [1, 2]);
 * using gScores = softmaxGrad(gPattern, pattern); // pattern * (g - sum(g * pattern))
 * assert.deepEqual(r4(await gScores.toArray()), [0.25, -0.25]);
 * using pre = Tensor.from([-1, 2], [2]);
 * using gPost = Tensor.from([5, 5], [2]);
 * using gPre = activationGrad(gPost, pre, "relu");
 * assert.deepEqual([...await gPre.toArray()], [0, 5]);
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { activationGrad } from "./backward.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using pre = Tensor.from([-1, 0, 1], [3]);
 * using gPost = Tensor.from([1, 1, 1], [3]);
 * using gPre = activationGrad(gPost, pre, "gelu_new"); // g * gelu_new'(pre)
 * assert.deepEqual(r4(await gPre.toArray()), [-0.0830, 0.5, 1.0830]);
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { gatedGrad } from "./backward.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using pre = Tensor.from([2, -1], [2]);
 * using lin = Tensor.from([3, 4], [2]);
 * using g = Tensor.from([1, 1], [2]);
 * const [gPre, gLin] = gatedGrad(g, pre, lin, "relu"); // post = relu(pre) * lin
 * assert.deepEqual([...await gPre.toArray()], [3, 0]);
 * assert.deepEqual([...await gLin.toArray()], [2, 0]);
 * gPre.dispose();
 * gLin.dispose();
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { maskGrad } from "./backward.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using post = Tensor.from([0, 5, 1], [3]);
 * using gPost = Tensor.from([1, 2, 3], [3]);
 * using gPre = maskGrad(gPost, post); // g where post is non-zero
 * assert.deepEqual([...await gPre.toArray()], [0, 2, 3]);
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { softmaxGrad } from "./backward.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using pattern = Tensor.from([0.25, 0.75], [1, 2]);
 * using gPattern = Tensor.from([1, 1], [1, 2]);
 * using gScores = softmaxGrad(gPattern, pattern); // a constant gradient changes nothing
 * assert.deepEqual(r4(await gScores.toArray()), [0, 0]);
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { normApplyGrad } from "./backward.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([2, 4], [1, 2]);
 * using scale = Tensor.from([2], [1, 1]);
 * using g = Tensor.from([1, 1], [1, 2]);
 * const [gx, gScale] = normApplyGrad(g, x, scale, "RMS"); // normalized = x / scale
 * assert.deepEqual(r4(await gx.toArray()), [0.5, 0.5]);
 * assert.deepEqual(r4(await gScale.toArray()), [-1.5]); // -sum(g * x) / scale^2
 * gx.dispose();
 * gScale.dispose();
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { normScaleGrad } from "./backward.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([3, 4], [1, 2]);
 * using scale = Tensor.from([Math.sqrt(12.5)], [1, 1]); // RMS scale of x
 * using gScale = Tensor.from([1], [1, 1]);
 * using gx = normScaleGrad(gScale, x, scale, "RMS"); // x / (n * scale)
 * assert.deepEqual(r4(await gx.toArray()), r4([3 / (2 * Math.sqrt(12.5)), 4 / (2 * Math.sqrt(12.5))]));
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { lossGrad } from "./backward.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using logits = Tensor.from(new Float32Array(6), [1, 2, 3]); // uniform
 * using tokens = Tensor.from([0, 2], [1, 2], "int32");
 * using g = lossGrad(logits, tokens, 1); // softmax - one-hot(next token); the last row zero
 * assert.deepEqual(r4(await g.toArray()), r4([1 / 3, 1 / 3, -2 / 3, 0, 0, 0]));
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { rowNormInGrad } from "./backward.ts";
 * import { rowStats } from "./sae.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 2, 4], [1, 3]);
 * using stats = rowStats(x);
 * using g = Tensor.from([1, 0, 0], [1, 3]);
 * using gx = rowNormInGrad(g, x, stats, "layerNormIn");
 * // (x - mean) / std does not change when x shifts: the gradient sums to zero.
 * assert.ok(Math.abs([...await gx.toArray()].reduce((a, b) => a + b, 0)) < 1e-5);
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { rowNormOutGrad } from "./backward.ts";
 * import { rowStats } from "./sae.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 3], [1, 2]); // the SAE input: mean 2, std sqrt(2)
 * using stats = rowStats(x);
 * using recons = Tensor.from([0.5, -0.5], [1, 2]);
 * using g = Tensor.from([1, 1], [1, 2]);
 * const [gr, gx] = rowNormOutGrad(g, recons, stats, x, "layerNormOut"); // out = r * std + mean
 * assert.deepEqual(r4(await gr.toArray()), r4([Math.SQRT2, Math.SQRT2]));
 * assert.deepEqual(gx.shape, [1, 2]);
 * gr.dispose();
 * gx.dispose();
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
