/**
 * SAE training's configuration: what a user passes ({@link TrainSaeConfig}), what training gives
 * back ({@link TrainResult}, {@link TrainProgress}, {@link CeEval}), and the checked config with
 * SAELens's defaults filled in ({@link resolveConfig}), before any GPU work.
 *
 * @example
 * ```ts
 * import { resolveConfig } from "./config.ts";
 * const r = resolveConfig({ hookName: "blocks.2.hook_resid_pre", dSae: 512, architecture: "topk", k: 16 });
 * console.log(r.batchSize, r.storeRows); // 1024 8192
 * ```
 * @module
 */
import { TrainConfigError } from "../../errors.ts";
import type { SaeConfig } from "../config.ts";
import type { SAE } from "../sae.ts";
import type { StepMetrics, TrainArchitecture } from "./step.ts";

/** What to train (SAELens's runner and SAE config options, camelCase; defaults as SAELens's). */
export interface TrainSaeConfig {
  /** Hook point to train on, e.g. "blocks.2.hook_resid_pre". */
  hookName: string;
  /** Latents. */
  dSae: number;
  /** Architecture (default "standard"). */
  architecture?: TrainArchitecture;
  /** Top-k: latents kept per row (required for top-k). */
  k?: number;
  /** Training steps (default 1000). */
  totalSteps?: number;
  /** Activations per step (default 1024). */
  batchSize?: number;
  /** Peak learning rate (default 3e-4). */
  lr?: number;
  /** "constant" (default) or "cosineannealing". */
  lrScheduler?: "constant" | "cosineannealing";
  /** Linear lr warm-up steps (default 0). */
  lrWarmUpSteps?: number;
  /** Final steps of linear lr decay to 0 (default 0). */
  lrDecaySteps?: number;
  /** Cosine annealing's floor (default lr / 10). */
  lrEnd?: number;
  /** Standard and gated: L1 coefficient (default 1). */
  l1Coefficient?: number;
  /** Standard and gated: L1 warm-up steps (default 0). */
  l1WarmUpSteps?: number;
  /** JumpReLU: L0 coefficient (default 1). */
  l0Coefficient?: number;
  /** JumpReLU: L0 warm-up steps (default 0). */
  l0WarmUpSteps?: number;
  /** JumpReLU: straight-through estimator bandwidth (default 0.05). */
  jumpreluBandwidth?: number;
  /** JumpReLU: initial threshold (default 0.01). */
  jumpreluInitThreshold?: number;
  /** Top-k: auxiliary dead-latent loss coefficient (default 1). */
  auxLossCoefficient?: number;
  /** Top-k: select on pre-activations scaled by decoder norms (default true). */
  rescaleActsByDecoderNorm?: boolean;
  /** Decoder rows' initial norm (default 0.1). */
  decoderInitNorm?: number;
  /** Steps without firing after which a latent counts as dead (default 1000). */
  deadFeatureWindow?: number;
  /** Subtract b_dec from the input (default true). */
  applyBDecToInput?: boolean;
  /** "none" (default) or "expected_average_only_in": scale inputs so the mean norm is √d_in. */
  normalizeActivations?: "none" | "expected_average_only_in";
  /** b_dec's initial value: "zeros" (default), "mean" or "geometric_median" of the first store. */
  bDecInit?: "zeros" | "mean" | "geometric_median";
  /** Adam β1 (default 0.9). */
  adamBeta1?: number;
  /** Adam β2 (default 0.999). */
  adamBeta2?: number;
  /** Read metrics back and report progress every this many steps (default 50). */
  logEvery?: number;
  /** Seed of the initial weights and the shuffling (default 42). */
  seed?: number;
  /**
   * Write a checkpoint every this many steps into `checkpointDir/<step>/`: the SAE in SAELens's
   * layout plus `trainer_state.safetensors` and `trainer_state.json` (parameters in training form,
   * Adam's moments, latent counters, step, normalisation scale) for `resumeFrom`.
   */
  checkpointEvery?: number;
  /** Where checkpoints go (needed with checkpointEvery). */
  checkpointDir?: string;
  /**
   * Continue from a checkpoint directory: same architecture, sizes, batch and store; training goes
   * on from its step with its parameters, Adam state and counters. The activation source is not
   * rewound: it continues from wherever the source given now starts.
   */
  resumeFrom?: string;
  /** Rows the activation store holds, a multiple of batchSize (default 8 batches). */
  storeRows?: number;
  /** Model runs: the text (default the demo corpus models/demo-pycode/corpus.txt). */
  text?: string | string[] | AsyncIterable<string>;
  /** Model runs: tokens per context (default 128, at most the model's n_ctx). */
  contextSize?: number;
  /** Model runs: leave the BOS position's activations out (default true). */
  excludeBos?: boolean;
  /** Model runs: contexts per forward pass (default 8). */
  modelBatch?: number;
  /** Model runs: CE-loss evaluation every this many steps (0, the default: at the end only). */
  evalEvery?: number;
  /** Model runs: contexts in the evaluation batch (default 4). */
  evalContexts?: number;
}

/** CE losses on the evaluation batch (SAELens's metrics/ce_loss_*). */
export interface CeEval {
  /** The model's loss. */
  clean: number;
  /** With the SAE's reconstruction in place of the hook's activation. */
  withSae: number;
  /** With the activation zeroed. */
  zeroAblated: number;
  /** (zeroAblated - withSae) / (zeroAblated - clean). */
  recovered: number;
}

/** What `onProgress` receives. */
export interface TrainProgress {
  /** Steps done. */
  step: number;
  /** Steps in all. */
  totalSteps: number;
  /** Activations trained on so far. */
  tokens: number;
  /** Throughput since the start. */
  tokensPerSecond: number;
  /** The latest step's metrics. */
  metrics: StepMetrics;
  /** The latest CE evaluation, when one ran at this step. */
  eval?: CeEval;
}

/** Options of `trainSae` (./trainer.ts). */
export interface TrainSaeOptions {
  /** Called every `logEvery` steps and at the end. */
  onProgress?: (p: TrainProgress) => void;
  /** Stops training (the promise rejects with the signal's reason) at the next step. */
  signal?: AbortSignal;
}

/** A trained SAE and what SAELens would save with it. */
export interface TrainResult {
  /** The SAE on the GPU (inference form, normalisation folded in). */
  sae: SAE;
  /** Its config. */
  cfg: SaeConfig;
  /** Inference weights (SAELens names), as saved. */
  weights: Record<string, Float32Array>;
  /** log10 of each latent's firing frequency (+1e-10), as SAELens's sparsity.safetensors. */
  logSparsity: Float32Array;
  /**
   * Latent health at the end: the fraction dead (not fired within the dead-feature window), the
   * fraction dense (firing on more than 10% of activations), and SAELens's sparsity summaries
   * (mean log10 firing frequency, fraction firing below 1e-5).
   */
  latents: {
    deadFraction: number;
    denseFraction: number;
    meanLog10Sparsity: number;
    below1e5: number;
  };
  /** The input scale applied during training (expected_average_only_in), or null. */
  scalingFactor: number | null;
  /** Every logged step's metrics. */
  metrics: StepMetrics[];
  /** The final CE evaluation (model runs). */
  eval?: CeEval;
  /** Activations trained on. */
  tokens: number;
  /** Model name and context size for cfg.json's metadata. */
  metadata: Record<string, unknown>;
}

/**
 * A training config with every default filled in and checked ({@link resolveConfig}); the
 * sparsity coefficient and its warm-up are the architecture's (L0 for JumpReLU, else L1).
 *
 * @example
 * ```ts
 * const r: ResolvedTrainConfig = resolveConfig({ hookName: "blocks.0.hook_resid_pre", dSae: 64 });
 * r.batchSize; // 1024
 * ```
 */
export interface ResolvedTrainConfig {
  architecture: TrainArchitecture;
  hookName: string;
  dSae: number;
  k: number;
  totalSteps: number;
  batchSize: number;
  lr: number;
  lrScheduler: "constant" | "cosineannealing";
  lrWarmUpSteps: number;
  lrDecaySteps: number;
  lrEnd: number;
  coefficient: number;
  coefficientWarmUp: number;
  jumpreluBandwidth: number;
  jumpreluInitThreshold: number;
  auxLossCoefficient: number;
  rescaleActsByDecoderNorm: boolean;
  decoderInitNorm: number;
  deadFeatureWindow: number;
  applyBDecToInput: boolean;
  normalizeActivations: "none" | "expected_average_only_in";
  bDecInit: "zeros" | "mean" | "geometric_median";
  adamBeta1: number;
  adamBeta2: number;
  logEvery: number;
  seed: number;
  storeRows: number;
  checkpointEvery: number;
  checkpointDir: string | null;
  resumeFrom: string | null;
}

function positiveInt(v: number, what: string, hook: string): number {
  if (!Number.isInteger(v) || v <= 0) {
    throw new TrainConfigError(
      `SAE training at ${hook}: ${what} must be a positive integer, got ${v}.`,
    );
  }
  return v;
}

/**
 * Defaults and checks of a training config: a TrainConfigError before any GPU work.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TrainConfigError } from "../../errors.ts";
 * import { resolveConfig } from "./config.ts";
 *
 * assert.equal(resolveConfig({ hookName: "blocks.0.hook_resid_pre", dSae: 64 }).architecture, "standard");
 * assert.throws( // a top-k SAE needs k
 *   () => resolveConfig({ hookName: "blocks.0.hook_resid_pre", dSae: 64, architecture: "topk" }),
 *   TrainConfigError,
 * );
 * ```
 */
export function resolveConfig(c: TrainSaeConfig): ResolvedTrainConfig {
  const hook = c.hookName;
  const architecture = c.architecture ?? "standard";
  if (!["standard", "topk", "jumprelu", "gated"].includes(architecture)) {
    throw new TrainConfigError(
      `SAE training at ${hook}: unknown architecture "${architecture}"; use standard, topk, jumprelu or gated.`,
    );
  }
  const dSae = positiveInt(c.dSae, "dSae (latents)", hook);
  let k = 0;
  if (architecture === "topk") {
    if (c.k === undefined) {
      throw new TrainConfigError(`SAE training at ${hook}: a top-k SAE needs k.`);
    }
    k = positiveInt(c.k, "k", hook);
    if (k > dSae) {
      throw new TrainConfigError(
        `SAE training at ${hook}: k ${k} is more than the ${dSae} latents; use k <= dSae.`,
      );
    }
  }
  const batchSize = positiveInt(c.batchSize ?? 1024, "batchSize", hook);
  const storeRows = positiveInt(c.storeRows ?? 8 * batchSize, "storeRows", hook);
  if (storeRows % batchSize !== 0) {
    throw new TrainConfigError(
      `SAE training at ${hook}: storeRows ${storeRows} is not a multiple of batchSize ${batchSize}.`,
    );
  }
  const lr = c.lr ?? 3e-4;
  if (!(lr > 0)) throw new TrainConfigError(`SAE training at ${hook}: lr must be > 0, got ${lr}.`);
  const oneOf = (v: unknown, allowed: readonly unknown[], what: string) => {
    if (v !== undefined && !allowed.includes(v)) {
      throw new TrainConfigError(
        `SAE training at ${hook}: ${what} ${JSON.stringify(v)}; use one of ${allowed.join(", ")}.`,
      );
    }
  };
  oneOf(c.lrScheduler, ["constant", "cosineannealing"], "unknown lrScheduler");
  oneOf(
    c.normalizeActivations,
    ["none", "expected_average_only_in"],
    "unsupported normalizeActivations",
  );
  oneOf(c.bDecInit, ["zeros", "mean", "geometric_median"], "unknown bDecInit");
  if (c.checkpointEvery !== undefined && c.checkpointDir === undefined) {
    throw new TrainConfigError(`SAE training at ${hook}: checkpointEvery needs checkpointDir.`);
  }
  const jumprelu = architecture === "jumprelu";
  return {
    architecture,
    hookName: hook,
    dSae,
    k,
    totalSteps: positiveInt(c.totalSteps ?? 1000, "totalSteps", hook),
    batchSize,
    lr,
    lrScheduler: c.lrScheduler ?? "constant",
    lrWarmUpSteps: c.lrWarmUpSteps ?? 0,
    lrDecaySteps: c.lrDecaySteps ?? 0,
    lrEnd: c.lrEnd ?? lr / 10,
    coefficient: (jumprelu ? c.l0Coefficient : c.l1Coefficient) ?? 1,
    coefficientWarmUp: (jumprelu ? c.l0WarmUpSteps : c.l1WarmUpSteps) ?? 0,
    jumpreluBandwidth: c.jumpreluBandwidth ?? 0.05,
    jumpreluInitThreshold: c.jumpreluInitThreshold ?? 0.01,
    auxLossCoefficient: c.auxLossCoefficient ?? 1,
    rescaleActsByDecoderNorm: architecture === "topk" && (c.rescaleActsByDecoderNorm ?? true),
    decoderInitNorm: c.decoderInitNorm ?? 0.1,
    deadFeatureWindow: c.deadFeatureWindow ?? 1000,
    applyBDecToInput: c.applyBDecToInput ?? true,
    normalizeActivations: c.normalizeActivations ?? "none",
    bDecInit: c.bDecInit ?? "zeros",
    adamBeta1: c.adamBeta1 ?? 0.9,
    adamBeta2: c.adamBeta2 ?? 0.999,
    logEvery: positiveInt(c.logEvery ?? 50, "logEvery", hook),
    seed: c.seed ?? 42,
    storeRows,
    checkpointEvery: c.checkpointEvery === undefined
      ? 0
      : positiveInt(c.checkpointEvery, "checkpointEvery", hook),
    checkpointDir: c.checkpointDir ?? null,
    resumeFrom: c.resumeFrom ?? null,
  };
}

/**
 * The inference SAE config of a resolved training config on `D`-wide inputs (the model name from
 * the metadata's `model_name`).
 *
 * @example
 * ```ts
 * const cfg = saeConfigOf(resolveConfig({ hookName: "blocks.0.hook_resid_pre", dSae: 64 }), 32);
 * cfg.dIn; // 32
 * ```
 */
export function saeConfigOf(
  r: ResolvedTrainConfig,
  D: number,
  meta: Record<string, unknown> = {},
): SaeConfig {
  return {
    dIn: D,
    dSae: r.dSae,
    architecture: r.architecture,
    hookName: r.hookName,
    applyBDecToInput: r.applyBDecToInput,
    normalizeActivations: "none",
    reshapeActivations: "none",
    k: r.architecture === "topk" ? r.k : undefined,
    rescaleActsByDecoderNorm: r.rescaleActsByDecoderNorm,
    modelName: typeof meta.model_name === "string" ? meta.model_name : undefined,
    dtype: "float32",
  };
}
