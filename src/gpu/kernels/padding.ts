/**
 * Batches of different lengths (shaders/padding.wgsl): pad keys masked out of attention scores,
 * and a device-side gather of one position per batch row (buffer copies, no kernel). The
 * position kernels that count real tokens only are attention.ts's `rotaryRows` and embed.ts's
 * `embedPositionsRows`; flash attention takes the key mask itself (`FlashShape.mask`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { maskKeys } from "./padding.ts";
 *
 * await initGpu();
 * using scores = Tensor.from([1, 2, 3], [1, 1, 3]); // [B, query, key]
 * using keyMask = Tensor.from([0, 1, 1], [1, 3], "int32");
 * maskKeys(scores, keyMask, keyMask.shape[1]); // -inf at every pad key, in place
 * assert.deepEqual([...await scores.toArray()], [-Infinity, 2, 3]);
 * ```
 * @module
 */
import paddingWgsl from "../../../shaders/padding.wgsl" with { type: "text" };
import { ShapeError } from "../../errors.ts";
import { dispatch, pipeline, type ShaderSource } from "../dispatch.ts";
import { copyBuffer } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { grid256 } from "./launch.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/padding.wgsl. */
const MASK_P = uniforms({
  /** Elements of the scores. */
  n: "u32",
  /** Elements per batch row of the scores. */
  per_batch: "u32",
  /** Key positions (the scores' last dimension). */
  keys: "u32",
  /** Positions per batch row of the key mask (>= keys: a KV cache's mask covers its capacity). */
  stride: "u32",
});

/** shaders/padding.wgsl. */
export const PADDING_SHADER: ShaderSource = shaderSource("padding", MASK_P, paddingWgsl);

/**
 * Sets scores [B, .., keys] to -inf, in place, wherever the int32 key mask [B, stride] is 0 at
 * that key (stride >= keys: a KV cache's mask covers its capacity).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { maskKeys } from "./padding.ts";
 *
 * await initGpu();
 * using scores = Tensor.from([1, 2], [1, 1, 2]);
 * using keyMask = Tensor.from([1, 0, 1, 1], [1, 4], "int32"); // a KV cache's mask: stride 4
 * maskKeys(scores, keyMask, 4);
 * assert.deepEqual([...await scores.toArray()], [1, -Infinity]);
 * ```
 */
export function maskKeys(scores: Tensor, mask: Tensor, stride: number): void {
  const B = scores.shape[0];
  const keys = scores.shape.at(-1)!;
  if (
    scores.dtype !== "float32" || mask.dtype !== "int32" || stride < keys ||
    mask.size < B * stride
  ) {
    throw new ShapeError(
      `maskKeys: float32 scores [${scores.shape}] do not fit an int32 key mask [${mask.shape}] ` +
        `(${mask.dtype}) of stride ${stride}.`,
    );
  }
  if (scores.size === 0) return;
  dispatch(
    pipeline(PADDING_SHADER, "mask_keys"),
    MASK_P.pack({ n: scores.size, per_batch: scores.size / B, keys, stride }),
    [scores.buffer, mask.buffer],
    grid256(scores.size),
  );
}

/**
 * One position per batch row of x [B, P, ...]: returns [B, ...] with row b's entry at position
 * `positions[b]` (negative: from the end; e.g. each row's last real token), copied on the GPU
 * (nothing is read back).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { lastTokenIndices } from "../../model/padding.ts";
 * import { gatherPositions } from "./padding.ts";
 *
 * await initGpu();
 * using logits = Tensor.from([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]); // [B, P, d_vocab]
 * const mask = [[1, 0], [1, 1]]; // row 0 right-padded
 * using last = gatherPositions(logits, lastTokenIndices(mask)); // [B, d_vocab]
 * assert.deepEqual([...await last.toArray()], [1, 2, 7, 8]);
 * ```
 */
export function gatherPositions(x: Tensor, positions: readonly number[]): Tensor {
  const [B, P, ...rest] = x.shape;
  if (x.shape.length < 2 || positions.length !== B) {
    throw new ShapeError(
      `gatherPositions: needs one position per batch row of [${x.shape}], got ${positions.length}.`,
    );
  }
  for (const [b, p] of positions.entries()) {
    if (!Number.isInteger(p) || p < -P || p >= P) {
      throw new ShapeError(`gatherPositions: position ${p} of row ${b} is outside 0..${P - 1}.`);
    }
  }
  const inner = rest.reduce((a, n) => a * n, 1);
  const bytes = inner * (x.dtype === "float16" ? 2 : 4);
  const out = Tensor.empty([B, ...rest], x.dtype);
  positions.forEach((p, b) => {
    const at = p < 0 ? P + p : p;
    copyBuffer(x.buffer, out.buffer, bytes, (b * P + at) * bytes, b * bytes);
  });
  return out;
}
