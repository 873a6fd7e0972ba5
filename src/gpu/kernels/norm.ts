/**
 * LayerNorm and RMSNorm (shaders/norm.wgsl): the per-row scale, its application, or both in one
 * dispatch. Their backward rules are in backward.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { normApply, normScale } from "./norm.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 3], [1, 2]); // mean 2, variance 1
 * using scale = normScale(x, "LN", 0);
 * using y = normApply(x, scale, "LN"); // (x - mean) / scale (times w, plus b, when given)
 * assert.deepEqual(r4(await scale.toArray()), [1]);
 * assert.deepEqual(r4(await y.toArray()), [-1, 1]);
 * ```
 * @module
 */
import normWgsl from "../../../shaders/norm.wgsl" with { type: "text" };
import reduceWgsl from "../../../shaders/reduce.wgsl" with { type: "text" };
import { ShapeError } from "../../errors.ts";
import type { ShaderSource } from "../dispatch.ts";
import { Tensor } from "../tensor.ts";
import { assertF32, dispatchRows, scratch } from "./launch.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/norm.wgsl. */
const NORM_P = uniforms({
  rows: "u32",
  d: "u32",
  /** 1: subtract the mean (LN), 0: RMS. */
  center: "u32",
  /** Multiply by w. */
  affine: "u32",
  eps: "f32",
  /** Add b. */
  has_bias: "u32",
});

/** shaders/norm.wgsl (with shaders/reduce.wgsl). */
export const NORM_SHADER: ShaderSource = shaderSource("norm", NORM_P, reduceWgsl, normWgsl);

/** Normalisation kind: LayerNorm centres, RMSNorm does not. */
export type NormKind = "LN" | "RMS";

/**
 * Per-row scale of a norm: `sqrt(mean((x - mean)^2) + eps)` (LN) or `sqrt(mean(x^2) + eps)` (RMS).
 * x is [..., d]; the result is [..., 1].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { normApply, normScale } from "./norm.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([3, 4], [1, 2]);
 * using scale = normScale(x, "RMS", 0); // sqrt(mean(x^2))
 * assert.deepEqual(r4(await scale.toArray()), r4([Math.sqrt(12.5)]));
 * ```
 */
export function normScale(x: Tensor, kind: NormKind, eps: number): Tensor {
  assertF32(x, "norm");
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  const out = Tensor.empty([...x.shape.slice(0, -1), 1]);
  dispatchRows(NORM_SHADER, "scale", NORM_P.pack({ rows, d, center: kind === "LN", eps }), [
    x.buffer,
    undefined,
    out.buffer,
  ], rows);
  return out;
}

/**
 * Applies a norm given its per-row scale: `(x - mean) / scale * w + b` (LN; mean 0 for RMS;
 * w and b optional).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { normApply, normScale } from "./norm.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 3], [1, 2]);
 * using w = Tensor.from([2, 2], [2]);
 * using b = Tensor.from([0, 1], [2]);
 * using scale = normScale(x, "LN", 0);
 * using y = normApply(x, scale, "LN", w, b);
 * assert.deepEqual(r4(await y.toArray()), [-2, 3]);
 * ```
 */
export function normApply(
  x: Tensor,
  scale: Tensor,
  kind: NormKind,
  w?: Tensor,
  b?: Tensor,
): Tensor {
  assertF32(x, "norm");
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  if (scale.size !== rows) {
    throw new ShapeError(`norm: scale has ${scale.size} elements for ${rows} rows.`);
  }
  const out = Tensor.empty(x.shape);
  dispatchRows(
    NORM_SHADER,
    "apply",
    NORM_P.pack({ rows, d, center: kind === "LN", affine: Boolean(w), has_bias: Boolean(b) }),
    [x.buffer, scale.buffer, out.buffer, (w ?? x).buffer, (b ?? x).buffer],
    rows,
  );
  return out;
}

/**
 * A whole norm in one dispatch: [scale ([..., 1]), normalized ([..., d]), normalized * w + b, or
 * null without w and b]. For when no hook can replace the scale or the normalised input in between
 * (else {@link normScale} and {@link normApply} with the hooks between them).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { normFused } from "./norm.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 3], [1, 2]);
 * using w = Tensor.from([2, 2], [2]);
 * using b = Tensor.from([0, 1], [2]);
 * const [scale, normalized, y] = normFused(x, "LN", 0, w, b);
 * assert.deepEqual(r4(await scale.toArray()), [1]);
 * assert.deepEqual(r4(await normalized.toArray()), [-1, 1]);
 * assert.deepEqual(r4(await y!.toArray()), [-2, 3]);
 * ```
 */
export function normFused(
  x: Tensor,
  kind: NormKind,
  eps: number,
  w?: Tensor,
  b?: Tensor,
): [Tensor, Tensor, Tensor | null] {
  assertF32(x, "norm");
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  const scale = Tensor.empty([...x.shape.slice(0, -1), 1]);
  const normalized = Tensor.empty(x.shape);
  const y = w || b ? Tensor.empty(x.shape) : null;
  dispatchRows(
    NORM_SHADER,
    "fused",
    NORM_P.pack({ rows, d, center: kind === "LN", affine: Boolean(w), eps, has_bias: Boolean(b) }),
    [
      x.buffer,
      undefined,
      (y ?? scratch()).buffer,
      (w ?? x).buffer,
      (b ?? x).buffer,
      scale.buffer,
      normalized.buffer,
    ],
    rows,
  );
  return [scale, normalized, y];
}
