/**
 * Every kernel launcher under one name, as `src/model` and `src/sae` import them: each function
 * records one or a few dispatches and returns new tensors; nothing here waits on the GPU. The
 * launchers live in `src/gpu/kernels/`, one file per shader family (see its README.md for the
 * dimension names); the performance choices in `tuning` (tuning.ts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { matmul } from "./ops.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]);
 * using w = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]);
 * using bias = Tensor.from([1, 1, 1], [3]);
 * using y = matmul(x, w, bias); // [.., M, K] x [K, N] + [N]
 * assert.deepEqual([...await y.toArray()], [2, 3, 4]);
 * ```
 * @module
 */
export { tuning } from "./tuning.ts";
export type {
  AttentionTuning,
  CpuVariantsTuning,
  LinearTuning,
  PoolTuning,
  Tuning,
} from "./tuning.ts";
export {
  ACT_CODES,
  activation,
  affine,
  binary,
  fillAt,
  kvWrite,
  scaleShift,
  softCap,
  softCapGrad,
} from "./kernels/elementwise.ts";
export { bmm, gemm, matmul } from "./kernels/matmul.ts";
export type { GemmOptions, Operand } from "./kernels/matmul.ts";
export { freezeWeight, linear, linearBack, linearBlock, linearSplit } from "./kernels/linear.ts";
export type { LinearEpilogue } from "./kernels/linear.ts";
export { normApply, normFused, normScale } from "./kernels/norm.ts";
export type { NormKind } from "./kernels/norm.ts";
export { softmax } from "./kernels/softmax.ts";
export { flashAttention, flashFits, rotary, rotaryRows } from "./kernels/attention.ts";
export type { FlashShape } from "./kernels/attention.ts";
export { embedPositions, embedPositionsRows, embedTokens } from "./kernels/embed.ts";
export { gatherPositions, maskKeys } from "./kernels/padding.ts";
export { lossPerToken, meanAll } from "./kernels/loss.ts";
export { sampleNext } from "./kernels/sample.ts";
export type { SampleOptions } from "./kernels/sample.ts";
export {
  ROW_NORM,
  rowNorm,
  rowStats,
  SAE_ACT,
  saeActivation,
  saeDecode,
  saeEncode,
  topK,
} from "./kernels/sae.ts";
export {
  activationGrad,
  gatedGrad,
  lossGrad,
  maskGrad,
  normApplyGrad,
  normScaleGrad,
  rowNormInGrad,
  rowNormOutGrad,
  softmaxGrad,
} from "./kernels/backward.ts";
