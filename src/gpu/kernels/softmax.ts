/**
 * Softmax over the last dimension (shaders/softmax.wgsl); its backward is in backward.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { softmax } from "./softmax.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using scores = Tensor.from([0, Math.log(3), 0, 0], [2, 2]);
 * using p = softmax(scores); // over the last dimension
 * assert.deepEqual(r4(await p.toArray()), [0.25, 0.75, 0.5, 0.5]);
 * ```
 * @module
 */
import reduceWgsl from "../../../shaders/reduce.wgsl" with { type: "text" };
import softmaxWgsl from "../../../shaders/softmax.wgsl" with { type: "text" };
import type { ShaderSource } from "../dispatch.ts";
import { Tensor } from "../tensor.ts";
import { assertF32, dispatchRows } from "./launch.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/softmax.wgsl. */
const SOFTMAX_P = uniforms({ rows: "u32", n: "u32" });

/** shaders/softmax.wgsl (with shaders/reduce.wgsl). */
export const SOFTMAX_SHADER: ShaderSource = shaderSource(
  "softmax",
  SOFTMAX_P,
  reduceWgsl,
  softmaxWgsl,
);

/**
 * Softmax over the last dimension.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { softmax } from "./softmax.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using scores = Tensor.from([0, Math.log(3), 0, 0], [2, 2]);
 * using p = softmax(scores); // over the last dimension
 * assert.deepEqual(r4(await p.toArray()), [0.25, 0.75, 0.5, 0.5]);
 * ```
 */
export function softmax(x: Tensor): Tensor {
  assertF32(x, "softmax");
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = Tensor.empty(x.shape);
  dispatchRows(SOFTMAX_SHADER, "main", SOFTMAX_P.pack({ rows, n }), [x.buffer, out.buffer], rows);
  return out;
}
