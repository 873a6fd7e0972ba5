/**
 * Training SAEs as SAELens's `SAETrainer` does, on the GPU: an activation store (text streamed
 * through the model in contexts, one hook read, kept in a GPU buffer and served in a shuffled
 * order), SAELens's initialisation, schedules and "expected_average_only_in" normalisation
 * (folded into the saved SAE), dead-latent tracking, the metrics SAELens logs, and CE loss
 * recovered on an evaluation batch. Saved in SAELens's layout, which `SAE.load` reads.
 *
 * @example Not run as a doc test: it trains an SAE on the demo model for minutes on lavapipe (the examples below train a small one fast)
 * ```
 * import { HookedTransformer } from "../../model/model.ts";
 * import { saveTrainedSae, trainSae } from "./trainer.ts";
 * const model = await HookedTransformer.fromPretrained("models/demo-pycode/hf");
 * const result = await trainSae(model, { hookName: "blocks.2.hook_resid_pre", dSae: 512, architecture: "topk", k: 16, totalSteps: 200 });
 * await saveTrainedSae("out/sae", result);
 * ```
 * @module
 */
import { join } from "node:path";
import { TrainConfigError } from "../../errors.ts";
import {
  createDataBuffer,
  deferDestroy,
  encoder,
  initRuntime,
  readBuffers,
  writeBuffer,
} from "../../gpu/runtime.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { SafetensorsFile, writeSafetensors } from "../../io/safetensors.ts";
import type { HookedTransformer } from "../../model/model.ts";
import { seededUniform } from "../../model/random.ts";
import type { SaeConfig } from "../config.ts";
import { SAE } from "../sae.ts";
import {
  createTrainStep,
  disposeTrainStep,
  readLatentStats,
  readStepMetrics,
  readTrainParams,
  readTrainState,
  recordTrainStep,
  type StepMetrics,
  type TrainArchitecture,
  type TrainState,
  type TrainStep,
  writeTrainState,
} from "./kernels.ts";
import { coefficientAt, lrAt } from "./schedule.ts";

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

/** Options of {@link trainSae}. */
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

/** Where training activations come from: `fill` writes `rows` rows [rows, dIn] into `store`. */
export interface ActivationSource {
  /** Input width. */
  readonly dIn: number;
  /** Writes the next `rows` activations into the GPU buffer. */
  fill(store: GPUBuffer, rows: number): Promise<void>;
}

/**
 * An activation source from CPU data (synthetic or precomputed): `next(rows)` returns the next
 * rows, [rows, dIn] flat.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { cpuActivationSource } from "./trainer.ts";
 *
 * await initGpu();
 * const src = cpuActivationSource(32, (rows) => new Float32Array(rows * 32).map(Math.random));
 * assert.equal(src.dIn, 32);
 * ```
 */
export function cpuActivationSource(
  dIn: number,
  next: (rows: number) => Float32Array,
): ActivationSource {
  return {
    dIn,
    fill(store: GPUBuffer, rows: number): Promise<void> {
      writeBuffer(store, next(rows));
      return Promise.resolve();
    },
  };
}

interface Resolved {
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

/** Defaults and checks of a training config: a TrainConfigError before any GPU work. */
function resolveConfig(c: TrainSaeConfig): Resolved {
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

/** SAELens's initialisation: kaiming-uniform W_dec, rows at decoderInitNorm, W_enc = W_decᵀ. */
function initParams(r: Resolved, dIn: number, bDec: Float32Array): Record<string, Float32Array> {
  const rand = seededUniform(r.seed);
  const D = dIn, S = r.dSae;
  const bound = Math.sqrt(6 / D);
  const wDec = Float32Array.from({ length: S * D }, () => (rand() * 2 - 1) * bound);
  for (let j = 0; j < S; j++) {
    let n = 0;
    for (let d = 0; d < D; d++) n += wDec[j * D + d] ** 2;
    const f = r.decoderInitNorm / Math.sqrt(n);
    for (let d = 0; d < D; d++) wDec[j * D + d] *= f;
  }
  const wEnc = new Float32Array(D * S);
  for (let j = 0; j < S; j++) for (let d = 0; d < D; d++) wEnc[d * S + j] = wDec[j * D + d];
  const p: Record<string, Float32Array> = { b_dec: bDec, W_dec: wDec, W_enc: wEnc };
  if (r.architecture === "gated") {
    p.b_gate = new Float32Array(S);
    p.r_mag = new Float32Array(S);
    p.b_mag = new Float32Array(S);
  } else {
    p.b_enc = new Float32Array(S);
  }
  if (r.architecture === "jumprelu") {
    p.log_threshold = new Float32Array(S).fill(Math.log(r.jumpreluInitThreshold));
  }
  return p;
}

/** The geometric median of rows (Weiszfeld's iterations, float64). */
function geometricMedian(x: Float32Array, rows: number, D: number, iters = 100): Float32Array {
  const m = new Float64Array(D);
  for (let i = 0; i < rows; i++) for (let d = 0; d < D; d++) m[d] += x[i * D + d] / rows;
  for (let it = 0; it < iters; it++) {
    const num = new Float64Array(D);
    let den = 0;
    for (let i = 0; i < rows; i++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += (x[i * D + d] - m[d]) ** 2;
      const w = 1 / Math.max(Math.sqrt(s), 1e-8);
      den += w;
      for (let d = 0; d < D; d++) num[d] += w * x[i * D + d];
    }
    for (let d = 0; d < D; d++) m[d] = num[d] / den;
  }
  return Float32Array.from(m);
}

/** Inference weights from training parameters, with the input scale folded in (as SAELens). */
function inferenceWeights(
  arch: TrainArchitecture,
  p: Record<string, Float32Array>,
  scale: number | null,
): Record<string, Float32Array> {
  const w: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(p)) {
    if (name === "log_threshold") w.threshold = v.map(Math.exp);
    else w[name] = v.slice();
  }
  if (scale !== null) {
    w.W_enc = w.W_enc.map((v) => v * scale);
    w.W_dec = w.W_dec.map((v) => v / scale);
    w.b_dec = w.b_dec.map((v) => v / scale);
  }
  if (arch === "jumprelu") delete w.log_threshold;
  return w;
}

/**
 * Trains an SAE on activations from any source (the core of {@link trainSae}; synthetic data in
 * tests). `evaluate` runs after training (and every `evalEvery` steps, when given) on the
 * inference weights.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cpuActivationSource, trainSaeOnActivations } from "./trainer.ts";
 *
 * const rows = (n: number) => Float32Array.from({ length: n * 8 }, (_, i) => Math.sin(i * 1.7));
 * const src = cpuActivationSource(8, rows); // d_in 8, rows made on the CPU
 * const result = await trainSaeOnActivations(src, {
 *   hookName: "synthetic",
 *   dSae: 16,
 *   architecture: "topk",
 *   k: 2,
 *   totalSteps: 5,
 *   batchSize: 8,
 * });
 * assert.equal(result.cfg.dSae, 16);
 * ```
 */
export async function trainSaeOnActivations(
  source: ActivationSource,
  config: TrainSaeConfig,
  opts: TrainSaeOptions & {
    evaluate?: (sae: SAE) => Promise<CeEval>;
    evalEvery?: number;
    metadata?: Record<string, unknown>;
  } = {},
): Promise<TrainResult> {
  const D = source.dIn;
  const r = resolveConfig(config);
  await initRuntime();
  opts.signal?.throwIfAborted();
  const B = r.batchSize, R = r.storeRows;
  const store = createDataBuffer(new Float32Array(R * D), "activation store");
  const indices = createDataBuffer(new Float32Array(R), "store order");
  let st: TrainStep | null = null;
  try {
    const resumed = r.resumeFrom ? await readCheckpoint(r, D) : null;
    if (!resumed) await source.fill(store, R);
    // One look at the first store: the normalisation scale and b_dec's initial value.
    let scale: number | null = resumed ? resumed.scale : null;
    let bDec: Float32Array = new Float32Array(D);
    if (!resumed && (r.normalizeActivations !== "none" || r.bDecInit !== "zeros")) {
      const [bytes] = await readBuffers([{ buffer: store, bytes: R * D * 4 }]);
      const x = new Float32Array(bytes);
      if (r.normalizeActivations === "expected_average_only_in") {
        let sum = 0;
        for (let i = 0; i < R; i++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += x[i * D + d] ** 2;
          sum += Math.sqrt(s);
        }
        scale = Math.sqrt(D) / (sum / R);
        for (let e = 0; e < x.length; e++) x[e] *= scale;
      }
      if (r.bDecInit === "mean") {
        const m = new Float64Array(D);
        for (let i = 0; i < R; i++) for (let d = 0; d < D; d++) m[d] += x[i * D + d] / R;
        bDec = Float32Array.from(m);
      } else if (r.bDecInit === "geometric_median") {
        const rows = Math.min(R, 4096);
        bDec = geometricMedian(x, rows, D);
      }
    }
    const logEvery = Math.min(r.logEvery, r.totalSteps);
    st = createTrainStep({
      architecture: r.architecture,
      batch: B,
      dIn: D,
      dSae: r.dSae,
      k: r.k,
      applyBDecToInput: r.applyBDecToInput,
      rescaleActsByDecoderNorm: r.rescaleActsByDecoderNorm,
      deadFeatureWindow: r.deadFeatureWindow,
      jumpreluBandwidth: r.jumpreluBandwidth,
      auxLossCoefficient: r.auxLossCoefficient,
      adamBeta1: r.adamBeta1,
      adamBeta2: r.adamBeta2,
      metricSlots: logEvery,
    }, initParams(r, D, bDec));
    const start = resumed ? resumed.step : 0;
    if (resumed) writeTrainState(st, resumed.state, start);
    const lrSched = {
      lr: r.lr,
      scheduler: r.lrScheduler,
      warmUpSteps: r.lrWarmUpSteps,
      decaySteps: r.lrDecaySteps,
      lrEnd: r.lrEnd,
      totalSteps: r.totalSteps,
    };
    const stepsPerFill = R / B;
    const metrics: StepMetrics[] = [];
    let lastRead = start;
    let ceEval: CeEval | undefined;
    const t0 = performance.now();
    const order = new Float32Array(R);
    for (let s = start; s < r.totalSteps; s++) {
      opts.signal?.throwIfAborted();
      if (s % stepsPerFill === 0 || s === start) {
        if (s > 0) await source.fill(store, R);
        // Each fill's order from the seed and the fill's number, so that a resumed run at a fill
        // boundary shuffles as the uninterrupted one did.
        const rand = seededUniform((r.seed + 1) * 7919 + Math.floor(s / stepsPerFill));
        for (let i = 0; i < R; i++) order[i] = i;
        for (let i = R - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [order[i], order[j]] = [order[j], order[i]];
        }
        writeBuffer(indices, order);
      }
      recordTrainStep(st, { store, indices, offset: (s % stepsPerFill) * B, scale: scale ?? 1 }, {
        lr: lrAt(lrSched, s),
        coefficient: coefficientAt(s, r.coefficient, r.coefficientWarmUp),
        step: s + 1,
      });
      const done = s + 1;
      if (r.checkpointEvery && done % r.checkpointEvery === 0 && done < r.totalSteps) {
        await writeCheckpoint(
          join(r.checkpointDir!, String(done)),
          r,
          D,
          st,
          done,
          scale,
          opts.metadata,
        );
      }
      const evalNow = opts.evaluate && opts.evalEvery && done % opts.evalEvery === 0 &&
        done < r.totalSteps;
      if (done % logEvery === 0 || done === r.totalSteps || evalNow) {
        metrics.push(...await readStepMetrics(st, done - lastRead));
        lastRead = done;
        let ev: CeEval | undefined;
        if (evalNow) {
          const p = await readTrainParams(st);
          ev = await evalWith(r, D, p, scale, opts);
        }
        opts.onProgress?.({
          step: done,
          totalSteps: r.totalSteps,
          tokens: done * B,
          tokensPerSecond: done * B / ((performance.now() - t0) / 1000),
          metrics: metrics.at(-1)!,
          eval: ev,
        });
      }
    }
    if (r.checkpointDir) {
      await writeCheckpoint(
        join(r.checkpointDir, String(r.totalSteps)),
        r,
        D,
        st,
        r.totalSteps,
        scale,
        opts.metadata,
      );
    }
    const params = await readTrainParams(st);
    const stats = await readLatentStats(st);
    const weights = inferenceWeights(r.architecture, params, scale);
    const cfg = saeConfigOf(r, D, opts.metadata);
    const sae = await SAE.fromWeights(cfg, weights, { source: "(trained)" });
    if (opts.evaluate) {
      ceEval = await opts.evaluate(sae);
      opts.onProgress?.({
        step: r.totalSteps,
        totalSteps: r.totalSteps,
        tokens: r.totalSteps * B,
        tokensPerSecond: r.totalSteps * B / ((performance.now() - t0) / 1000),
        metrics: metrics.at(-1)!,
        eval: ceEval,
      });
    }
    const n = r.totalSteps * B;
    const logSparsity = stats.fireCounts.map((c) => Math.log10(c / n + 1e-10));
    const S = r.dSae;
    let dead = 0, dense = 0, below = 0, logSum = 0;
    for (let j = 0; j < S; j++) {
      const f = stats.fireCounts[j] / n;
      if (stats.stepsSinceFired[j] > r.deadFeatureWindow) dead++;
      if (f > 0.1) dense++;
      if (f < 1e-5) below++;
      logSum += logSparsity[j];
    }
    const latents = {
      deadFraction: dead / S,
      denseFraction: dense / S,
      meanLog10Sparsity: logSum / S,
      below1e5: below / S,
    };
    return {
      sae,
      cfg,
      weights,
      logSparsity,
      latents,
      scalingFactor: scale,
      metrics,
      eval: ceEval,
      tokens: n,
      metadata: { ...opts.metadata },
    };
  } finally {
    if (st) disposeTrainStep(st);
    deferDestroy(store);
    deferDestroy(indices);
  }
}

/** What a checkpoint's trainer_state.json says, checked against a resumed run's config. */
interface CheckpointInfo {
  step: number;
  scaling_factor: number | null;
  architecture: TrainArchitecture;
  d_in: number;
  d_sae: number;
  batch_size: number;
  store_rows: number;
}

async function writeCheckpoint(
  dir: string,
  r: Resolved,
  D: number,
  st: TrainStep,
  step: number,
  scale: number | null,
  metadata: Record<string, unknown> = {},
): Promise<void> {
  const state = await readTrainState(st);
  const params: Record<string, Float32Array> = {};
  for (const [name, off] of Object.entries(st.offsets)) {
    params[name] = state.params.slice(off, off + st.sizes[name]);
  }
  const n = step * r.batchSize;
  const cfg = saeConfigOf(r, D, metadata);
  await saveTrainedSae(dir, {
    cfg,
    weights: inferenceWeights(r.architecture, params, scale),
    logSparsity: state.fireCounts.map((c) => Math.log10(c / n + 1e-10)),
    metadata,
  });
  const f32 = (data: Float32Array) => ({ dtype: "F32" as const, shape: [data.length], data });
  await writeSafetensors(join(dir, "trainer_state.safetensors"), {
    params: f32(state.params),
    adam_m: f32(state.m),
    adam_v: f32(state.v),
    steps_since_fired: f32(state.stepsSinceFired),
    fire_counts: f32(state.fireCounts),
  });
  const info: CheckpointInfo = {
    step,
    scaling_factor: scale,
    architecture: r.architecture,
    d_in: D,
    d_sae: r.dSae,
    batch_size: r.batchSize,
    store_rows: r.storeRows,
  };
  await Deno.writeTextFile(join(dir, "trainer_state.json"), JSON.stringify(info, null, 2) + "\n");
}

async function readCheckpoint(
  r: Resolved,
  D: number,
): Promise<{ step: number; scale: number | null; state: TrainState }> {
  const dir = r.resumeFrom!;
  const jsonPath = join(dir, "trainer_state.json");
  let info: CheckpointInfo;
  try {
    info = JSON.parse(await Deno.readTextFile(jsonPath));
  } catch (e) {
    throw new TrainConfigError(
      `SAE training: cannot resume from ${dir}: ${jsonPath} is missing or unreadable ` +
        `(${(e as Error).message}); pass a checkpoint directory written with checkpointDir.`,
    );
  }
  const want: [string, unknown, unknown][] = [
    ["architecture", info.architecture, r.architecture],
    ["d_in", info.d_in, D],
    ["d_sae", info.d_sae, r.dSae],
    ["batch_size", info.batch_size, r.batchSize],
    ["store_rows", info.store_rows, r.storeRows],
  ];
  for (const [k, got, need] of want) {
    if (got !== need) {
      throw new TrainConfigError(
        `SAE training: the checkpoint ${dir} has ${k} ${JSON.stringify(got)}, this run ` +
          `${JSON.stringify(need)}; resume with the checkpoint's settings.`,
      );
    }
  }
  using f = await SafetensorsFile.open(join(dir, "trainer_state.safetensors"));
  return {
    step: info.step,
    scale: info.scaling_factor,
    state: {
      params: await f.float32("params"),
      m: await f.float32("adam_m"),
      v: await f.float32("adam_v"),
      stepsSinceFired: await f.float32("steps_since_fired"),
      fireCounts: await f.float32("fire_counts"),
    },
  };
}

async function evalWith(
  r: Resolved,
  D: number,
  p: Record<string, Float32Array>,
  scale: number | null,
  opts: { evaluate?: (sae: SAE) => Promise<CeEval>; metadata?: Record<string, unknown> },
): Promise<CeEval> {
  const sae = await SAE.fromWeights(
    saeConfigOf(r, D, opts.metadata),
    inferenceWeights(r.architecture, p, scale),
  );
  try {
    return await opts.evaluate!(sae);
  } finally {
    sae.dispose();
  }
}

function saeConfigOf(r: Resolved, D: number, meta: Record<string, unknown> = {}): SaeConfig {
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

/** The layer a hook fires in ("blocks.3.x" -> 3), to stop the forward pass after it. */
function hookLayer(name: string): number | null {
  const m = /^blocks\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/** Token contexts from text: [BOS] + the next contextSize - 1 tokens, cycling at the end. */
function contextStream(
  model: HookedTransformer,
  text: string | string[] | AsyncIterable<string>,
  contextSize: number,
): () => Promise<number[]> {
  const bos = model.cfg.defaultPrependBos ? model.cfg.bosTokenId : null;
  const body = bos === null ? contextSize : contextSize - 1;
  const seen: number[] = [];
  let pos = 0;
  let iter: AsyncIterator<string> | null = null;
  let ended = false;
  if (typeof text === "string" || Array.isArray(text)) {
    for (const t of typeof text === "string" ? [text] : text) {
      seen.push(...model.toTokenIds(t, { prependBos: false })[0]);
    }
    ended = true;
  } else {
    iter = text[Symbol.asyncIterator]();
  }
  return async () => {
    while (!ended && seen.length - pos < body) {
      const n = await iter!.next();
      if (n.done) ended = true;
      else seen.push(...model.toTokenIds(n.value, { prependBos: false })[0]);
    }
    if (seen.length === 0) {
      throw new TrainConfigError("SAE training: the text gives no tokens; pass some text.");
    }
    const out: number[] = [];
    while (out.length < body) {
      if (pos >= seen.length) pos = 0;
      out.push(seen[pos++]);
    }
    return bos === null ? out : [bos, ...out];
  };
}

/**
 * An activation source that streams text through the model: contexts of `contextSize` tokens,
 * `modelBatch` at a time, reading `hookName` (the forward pass stops after its block), the BOS
 * position's row left out when `excludeBos`. Activations go from the model's cache into the
 * store on the GPU.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedTransformer } from "@hooklens/hooklens";
 * import { modelActivationSource } from "./trainer.ts";
 *
 * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf");
 * const src = modelActivationSource(model, "blocks.2.hook_resid_pre", {
 *   text: "def f(x):\n  return x",
 *   contextSize: 8,
 *   excludeBos: true,
 *   modelBatch: 1,
 * });
 * assert.equal(src.dIn, 128); // the model's d_model
 * ```
 */
export function modelActivationSource(
  model: HookedTransformer,
  hookName: string,
  o: {
    text: string | string[] | AsyncIterable<string>;
    contextSize: number;
    excludeBos: boolean;
    modelBatch: number;
  },
): ActivationSource & { nextContext: () => Promise<number[]> } {
  const dIn = hookWidth(model, hookName);
  const next = contextStream(model, o.text, o.contextSize);
  const layer = hookLayer(hookName);
  const skip = o.excludeBos && model.cfg.defaultPrependBos && model.cfg.bosTokenId !== null ? 1 : 0;
  const perCtx = o.contextSize - skip;
  return {
    dIn,
    nextContext: next,
    async fill(store: GPUBuffer, rows: number): Promise<void> {
      let filled = 0;
      while (filled < rows) {
        const batch: number[][] = [];
        const want = Math.min(o.modelBatch, Math.ceil((rows - filled) / perCtx));
        for (let b = 0; b < want; b++) batch.push(await next());
        const [out, cache] = await model.runWithCache(batch, {
          namesFilter: hookName,
          ...(layer !== null && layer + 1 < model.cfg.nLayers ? { stopAtLayer: layer + 1 } : {}),
        });
        try {
          const act = cache.get(hookName);
          const enc = encoder();
          for (let b = 0; b < batch.length && filled < rows; b++) {
            const n = Math.min(perCtx, rows - filled);
            enc.copyBufferToBuffer(
              act.buffer,
              (b * o.contextSize + skip) * dIn * 4,
              store,
              filled * dIn * 4,
              n * dIn * 4,
            );
            filled += n;
          }
        } finally {
          (out as Tensor).dispose();
          cache.dispose();
        }
      }
    },
  };
}

function hookWidth(model: HookedTransformer, hookName: string): number {
  if (!model.hasHook(hookName)) {
    throw new TrainConfigError(
      `SAE training: the model has no hook "${hookName}"; pick one of model.hookNames() ` +
        `(e.g. "blocks.0.hook_resid_pre").`,
    );
  }
  const c = model.cfg;
  if (/hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)$/.test(hookName)) return c.dModel;
  if (/mlp\.hook_(pre|post)$/.test(hookName)) return c.dMlp;
  throw new TrainConfigError(
    `SAE training: hook "${hookName}" is not a residual-stream, attention-output or MLP hook; ` +
      "train on blocks.N.hook_resid_pre/mid/post, hook_attn_out, hook_mlp_out or mlp.hook_pre/post.",
  );
}

/**
 * Trains an SAE on a model's activations at `cfg.hookName` (SAELens's LanguageModelSAETrainingRunner
 * in one call): streams `cfg.text` through the model, trains, and evaluates CE loss recovered on
 * `evalContexts` contexts. Config errors (d_sae 0, k > d_sae, unknown hook) throw a
 * TrainConfigError before any step.
 *
 * @example Not run as a doc test: it trains for minutes (trainSaeOnActivations with a small totalSteps runs fast)
 * ```
 * import { HookedTransformer } from "../../../mod.ts";
 * import { trainSae } from "./trainer.ts";
 * const model = await HookedTransformer.fromPretrained("models/demo-pycode/hf");
 * const { sae, eval: ce } = await trainSae(model, {
 *   hookName: "blocks.2.hook_resid_pre",
 *   dSae: 512,
 *   architecture: "topk",
 *   k: 16,
 * }, {
 *   onProgress: (p) => console.log(p.step, p.metrics.mseLoss),
 * });
 * ```
 */
export async function trainSae(
  model: HookedTransformer,
  cfg: TrainSaeConfig,
  opts: TrainSaeOptions = {},
): Promise<TrainResult> {
  const contextSize = cfg.contextSize ?? Math.min(128, model.cfg.nCtx);
  hookWidth(model, cfg.hookName);
  resolveConfig(cfg); // config errors before any model work
  if (!Number.isInteger(contextSize) || contextSize < 2 || contextSize > model.cfg.nCtx) {
    throw new TrainConfigError(
      `SAE training: contextSize ${contextSize} must be 2..${model.cfg.nCtx} (the model's n_ctx).`,
    );
  }
  const text = cfg.text ?? await Deno.readTextFile(
    new URL("../../../models/demo-pycode/corpus.txt", import.meta.url),
  );
  const excludeBos = cfg.excludeBos ?? true;
  const src = modelActivationSource(model, cfg.hookName, {
    text,
    contextSize,
    excludeBos,
    modelBatch: cfg.modelBatch ?? 8,
  });
  const evalBatch: number[][] = [];
  for (let i = 0; i < (cfg.evalContexts ?? 4); i++) evalBatch.push(await src.nextContext());
  const hook = cfg.hookName;
  const loss = async (fn?: (a: Tensor) => Tensor | Promise<Tensor>): Promise<number> => {
    const out = await model.runWithHooks(evalBatch, {
      fwdHooks: fn ? [[hook, fn]] : [],
      returnType: "loss",
    }) as Tensor;
    try {
      return (await out.toArray())[0];
    } finally {
      out.dispose();
    }
  };
  const evaluate = async (sae: SAE): Promise<CeEval> => {
    const clean = await loss();
    const withSae = await loss((a) => sae.forward(a));
    const zeroAblated = await loss((a) => a.scale(0));
    return {
      clean,
      withSae,
      zeroAblated,
      recovered: (zeroAblated - withSae) / (zeroAblated - clean),
    };
  };
  return await trainSaeOnActivations(src, cfg, {
    ...opts,
    evaluate,
    evalEvery: cfg.evalEvery ?? 0,
    metadata: {
      model_name: model.cfg.modelName ?? undefined,
      hook_name: hook,
      hook_head_index: null,
      prepend_bos: model.cfg.defaultPrependBos,
      context_size: contextSize,
      exclude_special_tokens: excludeBos,
    },
  });
}

/**
 * Writes a trained SAE in SAELens's layout: `cfg.json` (v6), `sae_weights.safetensors` and
 * `sparsity.safetensors` (log10 feature sparsity). `SAE.load(dir)` (and SAELens) read it back.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SAE } from "@hooklens/hooklens";
 * import { cpuActivationSource, saveTrainedSae, trainSaeOnActivations } from "./trainer.ts";
 *
 * const rows = (n: number) => Float32Array.from({ length: n * 8 }, (_, i) => Math.sin(i * 1.7));
 * const src = cpuActivationSource(8, rows); // d_in 8, rows made on the CPU
 * const result = await trainSaeOnActivations(src, {
 *   hookName: "synthetic",
 *   dSae: 16,
 *   architecture: "topk",
 *   k: 2,
 *   totalSteps: 5,
 *   batchSize: 8,
 * });
 * const dir = await Deno.makeTempDir();
 * await saveTrainedSae(dir, result);
 * using sae = await SAE.load(dir);
 * assert.equal(sae.cfg.architecture, "topk");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveTrainedSae(
  dir: string,
  result: Pick<TrainResult, "cfg" | "weights" | "logSparsity" | "metadata">,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const c = result.cfg;
  const cfgJson: Record<string, unknown> = {
    d_in: c.dIn,
    d_sae: c.dSae,
    dtype: "float32",
    device: "cpu",
    apply_b_dec_to_input: c.applyBDecToInput,
    normalize_activations: "none",
    reshape_activations: "none",
    architecture: c.architecture,
    metadata: {
      ...result.metadata,
      hook_name: c.hookName,
      sae_lens_training_version: "6.18.0",
      trained_with: "hooklens",
    },
  };
  if (c.architecture === "topk") {
    cfgJson.k = c.k;
    cfgJson.rescale_acts_by_decoder_norm = c.rescaleActsByDecoderNorm;
  }
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfgJson, null, 2) + "\n");
  const shapes: Record<string, number[]> = {
    W_enc: [c.dIn, c.dSae],
    W_dec: [c.dSae, c.dIn],
    b_dec: [c.dIn],
  };
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [name, data] of Object.entries(result.weights)) {
    tensors[name] = { dtype: "F32", shape: shapes[name] ?? [c.dSae], data };
  }
  await writeSafetensors(join(dir, "sae_weights.safetensors"), tensors);
  await writeSafetensors(join(dir, "sparsity.safetensors"), {
    sparsity: { dtype: "F32", shape: [c.dSae], data: result.logSparsity },
  });
}
