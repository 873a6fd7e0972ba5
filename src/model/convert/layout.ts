/**
 * Layout helpers shared by the per-family converters: torch Linear weights and fused
 * projections to TransformerLens's [heads, d_model, d_head] / [heads, d_head, d_model] layouts,
 * and the check that a converter used every tensor of the checkpoint.
 *
 * @example
 * ```ts
 * import { transpose2d } from "./layout.ts";
 * transpose2d({ shape: [2, 3], data: new Float32Array(6) }).shape; // [3, 2]
 * ```
 * @module
 */
import { WeightsError } from "../../errors.ts";
import type { Checkpoint, CpuTensor } from "../checkpoint.ts";

/**
 * [rows, cols] -> [cols, rows].
 *
 * @example
 * ```ts
 * const wIn = transpose2d(upProj); // [F, E] -> [E, F]
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
 * const wq = splitHeadsIn(cAttn, 0, H, D);
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
 * const bq = slice1d(bias, 0, H * D, [H, D]);
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
 * sd.set("unembed.b_U", zeros([V]));
 * ```
 */
export function zeros(shape: number[]): CpuTensor {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}

/**
 * Fails on tensors the converter did not use (a different model, or a corrupted file).
 *
 * @example
 * ```ts
 * checkExtra(ck, used, /attention\.bias$/);
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
 * const wq = linearToHeads(qProj, H, D);
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
 * const wo = linearToWO(oProj, H, D);
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
