/**
 * What a training step is, independent of its kernels: the architectures and their parameters
 * ({@link TRAIN_PARAMS}, {@link trainParamSizes}), a step's shape, schedule and metrics, the GPU
 * state it keeps ({@link TrainStep}) and the layout of its small buffer.
 *
 * @example
 * ```ts
 * import { TRAIN_PARAMS, trainParamSizes } from "./step.ts";
 * TRAIN_PARAMS.jumprelu; // ["b_dec", "W_dec", "W_enc", "b_enc", "log_threshold"]
 * trainParamSizes({ architecture: "standard", batch: 8, dIn: 16, dSae: 48, applyBDecToInput: true,
 *   deadFeatureWindow: 1000, adamBeta1: 0.9, adamBeta2: 0.999, metricSlots: 1 }).W_dec; // 768
 * ```
 * @module
 */
/** The SAE architectures the trainer knows. */
export type TrainArchitecture = "standard" | "topk" | "jumprelu" | "gated";

/**
 * Trainable parameters of each architecture, in SAELens's `sae.parameters()` order (b_dec first:
 * the decode's bias is read from the start of the flat parameter buffer).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TRAIN_PARAMS } from "./kernels.ts";
 *
 * assert.deepEqual(TRAIN_PARAMS.gated, ["b_dec", "W_dec", "W_enc", "b_gate", "r_mag", "b_mag"]);
 * ```
 */
export const TRAIN_PARAMS: Readonly<Record<TrainArchitecture, readonly string[]>> = {
  standard: ["b_dec", "W_dec", "W_enc", "b_enc"],
  topk: ["b_dec", "W_dec", "W_enc", "b_enc"],
  jumprelu: ["b_dec", "W_dec", "W_enc", "b_enc", "log_threshold"],
  gated: ["b_dec", "W_dec", "W_enc", "b_gate", "r_mag", "b_mag"],
};

/** What fixes a training step's kernels: architecture, sizes and the constant hyperparameters. */
export interface TrainShape {
  /** Architecture. */
  architecture: TrainArchitecture;
  /** Rows (activations) per step. */
  batch: number;
  /** Input width. */
  dIn: number;
  /** Latents. */
  dSae: number;
  /** Top-k: latents kept per row. */
  k?: number;
  /** Subtract b_dec from the input before encoding (SAELens's default true). */
  applyBDecToInput: boolean;
  /** Top-k: select on pre-activations scaled by ‖W_dec[j]‖ (SAELens's training default true). */
  rescaleActsByDecoderNorm?: boolean;
  /** A latent is dead once it has not fired for more than this many steps. */
  deadFeatureWindow: number;
  /** JumpReLU: the straight-through estimator's kernel bandwidth. */
  jumpreluBandwidth?: number;
  /** Top-k: coefficient of the auxiliary dead-latent loss. */
  auxLossCoefficient?: number;
  /** Adam β1, β2, ε (torch defaults 0.9, 0.999, 1e-8). */
  adamBeta1: number;
  /** Adam β2. */
  adamBeta2: number;
  /** Adam ε. */
  adamEps?: number;
  /** Steps whose metrics the ring keeps before they are overwritten. */
  metricSlots: number;
}

/** The per-step schedule values. */
export interface StepSchedule {
  /** Learning rate of this step. */
  lr: number;
  /** The sparsity coefficient (L1 for standard/gated, L0 for JumpReLU) of this step. */
  coefficient: number;
  /** Adam's step number, from 1. */
  step: number;
}

/** One step's logged metrics (SAELens's names in the comments). */
export interface StepMetrics {
  /** losses/overall_loss */
  overallLoss: number;
  /** losses/mse_loss */
  mseLoss: number;
  /** losses/l1_loss (standard, gated) or losses/l0_loss (JumpReLU); 0 for top-k. */
  sparsityLoss: number;
  /** losses/auxiliary_reconstruction_loss (top-k, gated). */
  auxLoss: number;
  /** metrics/l0: mean latents firing per row. */
  l0: number;
  /** metrics/explained_variance. */
  explainedVariance: number;
  /** Dead latents in the mask the step used. */
  deadLatents: number;
  /** Gradient norm before clipping. */
  gradNorm: number;
  /** details/current_learning_rate. */
  lr: number;
  /** The sparsity coefficient used. */
  coefficient: number;
}

/**
 * Layout of the small buffer `sm` (floats, as shaders/train.wgsl's constants): {@link SCHED} is
 * where the step's schedule starts, {@link VAR} where the per-dimension variances start (then
 * 4 values per batch row, then the metrics ring); {@link NM} is the metrics each step logs.
 *
 * @example
 * A fragment: offsets inside the step's small buffer; readback.ts uses them.
 * ```
 * const ringStart = VAR + shape.dIn + 4 * shape.batch; // slot t at ringStart + t * NM
 * ```
 */
export const NM = 10;
/**
 * Offset (floats) of the step's schedule in `sm`: lr / bias correction, coefficient, √bc2, lr.
 *
 * @example
 * A fragment: offsets inside the step's small buffer; kernels.ts writes the schedule there.
 * ```
 * writeBuffer(st.buf.sm, new Float32Array([lr / bc1, coefficient, Math.sqrt(bc2), lr]), SCHED * 4);
 * ```
 */
export const SCHED = 8;
/**
 * Offset (floats) of the per-dimension variances in `sm` (see {@link NM}).
 *
 * @example
 * A fragment: offsets inside the step's small buffer; readback.ts uses them.
 * ```
 * const metricsBase = VAR + shape.dIn + 4 * shape.batch;
 * ```
 */
export const VAR = 16;

/** A training step's GPU state. */
export interface TrainStep {
  /** The shape it was built for. */
  readonly shape: Readonly<TrainShape>;
  /** Offsets (in floats) of each parameter in the flat buffers. */
  readonly offsets: Readonly<Record<string, number>>;
  /** Parameter sizes (floats). */
  readonly sizes: Readonly<Record<string, number>>;
  /** Total parameter count. */
  readonly n: number;
  /** Buffers: parameters, gradients, Adam moments, [B, D] and [B, S] work, latent stats, small. */
  readonly buf: {
    th: GPUBuffer;
    gr: GPUBuffer;
    m: GPUBuffer;
    v: GPUBuffer;
    bd: GPUBuffer;
    bs: GPUBuffer;
    lat: GPUBuffer;
    sm: GPUBuffer;
  };
  /** Steps recorded so far. */
  steps: number;
}

/**
 * Element counts of each parameter for a shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trainParamSizes } from "./kernels.ts";
 *
 * const shape = {
 *   architecture: "jumprelu" as const,
 *   batch: 4,
 *   dIn: 16,
 *   dSae: 48,
 *   applyBDecToInput: true,
 *   deadFeatureWindow: 1000,
 *   adamBeta1: 0.9,
 *   adamBeta2: 0.999,
 *   metricSlots: 4,
 * };
 * assert.equal(trainParamSizes(shape).W_enc, 768); // d_in * d_sae
 * assert.equal(trainParamSizes(shape).log_threshold, 48);
 * ```
 */
export function trainParamSizes(shape: TrainShape): Record<string, number> {
  const { dIn: D, dSae: S } = shape;
  const sizes: Record<string, number> = {};
  for (const name of TRAIN_PARAMS[shape.architecture]) {
    sizes[name] = name === "W_dec" || name === "W_enc" ? D * S : name === "b_dec" ? D : S;
  }
  return sizes;
}
