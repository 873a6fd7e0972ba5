/**
 * Training SAEs as SAELens's `SAETrainer` does, on the GPU: an activation store (text streamed
 * through the model in contexts, one hook read, kept in a GPU buffer and served in a shuffled
 * order), SAELens's initialisation, schedules and "expected_average_only_in" normalisation
 * (folded into the saved SAE), dead-latent tracking, the metrics SAELens logs, and CE loss
 * recovered on an evaluation batch. Saved in SAELens's layout, which `SAE.load` reads.
 *
 * This module is the loop and the initialisation; the activation sources (./activations.ts), the
 * config and result types (./config.ts) and saving and checkpoints (./checkpoint.ts) have their
 * own modules, and their public names are re-exported here.
 *
 * @example Not run as a doc test: it trains an SAE on the demo model (a minute on lavapipe) and
 * writes out/sae; tests/train_sae_test.ts trains, saves and loads one.
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
  initRuntime,
  readBuffers,
  writeBuffer,
} from "../../gpu/runtime.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { HookedTransformer } from "../../model/model.ts";
import { seededUniform } from "../../model/random.ts";
import { SAE } from "../sae.ts";
import { type ActivationSource, hookWidth, modelActivationSource } from "./activations.ts";
import { inferenceWeights, readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import {
  type CeEval,
  resolveConfig,
  type ResolvedTrainConfig,
  saeConfigOf,
  type TrainResult,
  type TrainSaeConfig,
  type TrainSaeOptions,
} from "./config.ts";
import {
  createTrainStep,
  disposeTrainStep,
  readLatentStats,
  readStepMetrics,
  readTrainParams,
  recordTrainStep,
  type StepMetrics,
  type TrainStep,
  writeTrainState,
} from "./kernels.ts";
import { coefficientAt, lrAt } from "./schedule.ts";

// The training loop's parts live in their own modules; their public names stay reachable here.
export { cpuActivationSource, modelActivationSource } from "./activations.ts";
export type { ActivationSource } from "./activations.ts";
export { saveTrainedSae } from "./checkpoint.ts";
export type {
  CeEval,
  TrainProgress,
  TrainResult,
  TrainSaeConfig,
  TrainSaeOptions,
} from "./config.ts";

/** SAELens's initialisation: kaiming-uniform W_dec, rows at decoderInitNorm, W_enc = W_decᵀ. */
function initParams(
  r: ResolvedTrainConfig,
  dIn: number,
  bDec: Float32Array,
): Record<string, Float32Array> {
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

async function evalWith(
  r: ResolvedTrainConfig,
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
