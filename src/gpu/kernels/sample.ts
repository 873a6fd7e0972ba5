/**
 * Next-token sampling on the GPU (shaders/sample.wgsl): greedy, temperature, top-k and top-p,
 * writing the chosen token where the next step's embedding lookup reads it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { sampleNext } from "./sample.ts";
 *
 * await initGpu();
 * using logits = Tensor.from([0, 5, 1, 0, 2, 9], [1, 2, 3]); // [batch, pos, vocab]
 * using seq = Tensor.from([7, 7, -1, -1, -1], [1, 5], "int32");
 * sampleNext(logits, seq, 2, { greedy: true }); // argmax of the last position into column 2
 * assert.deepEqual([...await seq.toArray()], [7, 7, 2, -1, -1]);
 * ```
 * @module
 */
import reduceWgsl from "../../../shaders/reduce.wgsl" with { type: "text" };
import sampleWgsl from "../../../shaders/sample.wgsl" with { type: "text" };
import { dispatch, pipeline, type ShaderSource } from "../dispatch.ts";
import type { Tensor } from "../tensor.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/sample.wgsl (offsets and strides in elements). */
const SAMPLE_P = uniforms({
  rows: "u32",
  vocab: "u32",
  row_stride: "u32",
  row_off: "u32",
  greedy: "u32",
  top_k: "u32",
  top_p: "f32",
  temp: "f32",
  /** The uniform draw in [0, 1). */
  u: "f32",
  out_off: "u32",
  out_stride: "u32",
});

/** shaders/sample.wgsl (with shaders/reduce.wgsl). */
export const SAMPLE_SHADER: ShaderSource = shaderSource("sample", SAMPLE_P, reduceWgsl, sampleWgsl);

/** How {@link sampleNext} picks a token. */
export interface SampleOptions {
  /** Argmax (lowest index on ties) instead of sampling. */
  greedy: boolean;
  /** Keep only the k most likely tokens (0: off). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1: off). */
  topP?: number;
  /** Softmax temperature. */
  temperature?: number;
  /** A uniform number in [0, 1) for the draw (per call; rows get decorrelated variants). */
  u?: number;
}

/**
 * Picks the next token of each sequence from logits [batch, pos, vocab] at position `pos - 1` and
 * writes it into int32 `seq` [batch, len] at column `col`, on the GPU (nothing is read back).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { sampleNext } from "./sample.ts";
 *
 * await initGpu();
 * using logits = Tensor.from([0, 5, 1, 0, 2, 9], [1, 2, 3]); // [batch, pos, vocab]
 * using seq = Tensor.from([7, 7, -1, -1, -1], [1, 5], "int32");
 * sampleNext(logits, seq, 2, { greedy: true }); // argmax of the last position into column 2
 * assert.deepEqual([...await seq.toArray()], [7, 7, 2, -1, -1]);
 * ```
 */
export function sampleNext(logits: Tensor, seq: Tensor, col: number, o: SampleOptions): void {
  const [B, P, V] = logits.shape;
  const len = seq.shape[1];
  for (let b = 0; b < B; b++) {
    // Each row gets its own uniform so batched rows do not draw the same quantile.
    const u = ((o.u ?? 0.5) + b * 0.6180339887498949) % 1;
    dispatch(
      pipeline(SAMPLE_SHADER, "main"),
      SAMPLE_P.pack({
        rows: 1,
        vocab: V,
        row_stride: P * V,
        row_off: (b * P + P - 1) * V,
        greedy: o.greedy,
        top_k: o.topK ?? 0,
        top_p: o.topP ?? 1,
        temp: o.temperature ?? 1,
        u,
        out_off: b * len + col,
      }),
      [logits.buffer, seq.buffer],
      [1],
    );
  }
}
