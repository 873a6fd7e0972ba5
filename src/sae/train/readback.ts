/**
 * Reading a training step's GPU state back (metrics, parameters, latent statistics, the last
 * forward pass, the full state for a checkpoint) and restoring a saved state. Nothing here is
 * called per step unless asked: the step itself never reads back.
 *
 * @example
 * A fragment: it needs a training step (`st`); createTrainStep's example makes one.
 * ```
 * import { readStepMetrics, readTrainParams } from "./readback.ts";
 * const [m] = await readStepMetrics(st, 1);
 * const { W_enc } = await readTrainParams(st);
 * ```
 * @module
 */
import { readBuffers, writeBuffer } from "../../gpu/runtime.ts";
import { NM, type StepMetrics, type TrainStep, VAR } from "./step.ts";

/**
 * Reads the metrics of the last `count` steps (at most metricSlots), oldest first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, readStepMetrics, recordTrainStep, trainParamSizes } from "./kernels.ts";
 *
 * await initGpu();
 * const shape = {
 *   architecture: "standard" as const,
 *   batch: 4,
 *   dIn: 4,
 *   dSae: 8,
 *   applyBDecToInput: true,
 *   deadFeatureWindow: 1000,
 *   adamBeta1: 0.9,
 *   adamBeta2: 0.999,
 *   metricSlots: 4,
 * };
 * const init = Object.fromEntries(
 *   Object.entries(trainParamSizes(shape)).map(([name, n]) => [
 *     name,
 *     Float32Array.from({ length: n }, (_, i) => 0.3 * Math.sin(7 * i + name.length)),
 *   ]),
 * );
 * const batch = Float32Array.from({ length: 4 * 4 }, (_, i) => Math.cos(i)); // [batch, d_in]
 * const st = createTrainStep(shape, init);
 * for (let step = 1; step <= 3; step++) recordTrainStep(st, batch, { lr: 1e-2, coefficient: 0, step });
 * const metrics = await readStepMetrics(st, 3); // oldest first
 * assert.ok(metrics[2].mseLoss < metrics[0].mseLoss); // it learns
 * disposeTrainStep(st);
 * ```
 */
export async function readStepMetrics(st: TrainStep, count: number): Promise<StepMetrics[]> {
  const s = st.shape;
  const n = Math.min(count, s.metricSlots, st.steps);
  const base = VAR + s.dIn + 4 * s.batch;
  const [bytes] = await readBuffers([{
    buffer: st.buf.sm,
    bytes: (base + s.metricSlots * NM) * 4,
  }]);
  const all = new Float32Array(bytes);
  const out: StepMetrics[] = [];
  for (let t = st.steps - n + 1; t <= st.steps; t++) {
    const o = base + ((t - 1) % s.metricSlots) * NM;
    const v = all.subarray(o, o + NM);
    out.push({
      overallLoss: v[0],
      mseLoss: v[1],
      sparsityLoss: v[2],
      auxLoss: v[3],
      l0: v[4],
      explainedVariance: v[5],
      deadLatents: v[6],
      gradNorm: v[7],
      lr: v[8],
      coefficient: v[9],
    });
  }
  return out;
}

/**
 * Reads the current parameters back (SAELens training names).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, readTrainParams, recordTrainStep, trainParamSizes } from "./kernels.ts";
 *
 * await initGpu();
 * const shape = {
 *   architecture: "standard" as const,
 *   batch: 4,
 *   dIn: 4,
 *   dSae: 8,
 *   applyBDecToInput: true,
 *   deadFeatureWindow: 1000,
 *   adamBeta1: 0.9,
 *   adamBeta2: 0.999,
 *   metricSlots: 4,
 * };
 * const init = Object.fromEntries(
 *   Object.entries(trainParamSizes(shape)).map(([name, n]) => [
 *     name,
 *     Float32Array.from({ length: n }, (_, i) => 0.3 * Math.sin(7 * i + name.length)),
 *   ]),
 * );
 * const batch = Float32Array.from({ length: 4 * 4 }, (_, i) => Math.cos(i)); // [batch, d_in]
 * const st = createTrainStep(shape, init);
 * recordTrainStep(st, batch, { lr: 1e-2, coefficient: 1, step: 1 });
 * const { W_enc, b_dec } = await readTrainParams(st);
 * assert.notDeepEqual(W_enc, init.W_enc); // Adam moved it
 * assert.equal(b_dec.length, 4);
 * disposeTrainStep(st);
 * ```
 */
export async function readTrainParams(st: TrainStep): Promise<Record<string, Float32Array>> {
  const [bytes] = await readBuffers([{ buffer: st.buf.th, bytes: st.n * 4 }]);
  const all = new Float32Array(bytes);
  const out: Record<string, Float32Array> = {};
  for (const [name, off] of Object.entries(st.offsets)) {
    out[name] = all.slice(off, off + st.sizes[name]);
  }
  return out;
}

/** Per-latent training statistics read back from the GPU. */
export interface LatentStats {
  /** Steps since each latent last fired. */
  stepsSinceFired: Float32Array;
  /** How many rows each latent fired on, summed over all steps. */
  fireCounts: Float32Array;
}

/**
 * Reads the per-latent statistics (steps since fired, fire counts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, readLatentStats, recordTrainStep, trainParamSizes } from "./kernels.ts";
 *
 * await initGpu();
 * const shape = {
 *   architecture: "standard" as const,
 *   batch: 4,
 *   dIn: 4,
 *   dSae: 8,
 *   applyBDecToInput: true,
 *   deadFeatureWindow: 1000,
 *   adamBeta1: 0.9,
 *   adamBeta2: 0.999,
 *   metricSlots: 4,
 * };
 * const init = Object.fromEntries(
 *   Object.entries(trainParamSizes(shape)).map(([name, n]) => [
 *     name,
 *     Float32Array.from({ length: n }, (_, i) => 0.3 * Math.sin(7 * i + name.length)),
 *   ]),
 * );
 * const batch = Float32Array.from({ length: 4 * 4 }, (_, i) => Math.cos(i)); // [batch, d_in]
 * const st = createTrainStep(shape, init);
 * recordTrainStep(st, batch, { lr: 1e-2, coefficient: 1, step: 1 });
 * const { stepsSinceFired, fireCounts } = await readLatentStats(st);
 * assert.equal(stepsSinceFired.length, 8);
 * assert.ok(fireCounts.every((c, j) => (c > 0) === (stepsSinceFired[j] === 0)));
 * disposeTrainStep(st);
 * ```
 */
export async function readLatentStats(st: TrainStep): Promise<LatentStats> {
  const S = st.shape.dSae;
  const [bytes] = await readBuffers([{ buffer: st.buf.lat, bytes: 5 * S * 4 }]);
  const all = new Float32Array(bytes);
  return { stepsSinceFired: all.slice(3 * S, 4 * S), fireCounts: all.slice(4 * S, 5 * S) };
}

/**
 * Reads the forward pass of the last step: hidden_pre, feature_acts [B, d_sae], sae_out [B, d_in].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, readStepForward, recordTrainStep, trainParamSizes } from "./kernels.ts";
 *
 * await initGpu();
 * const shape = {
 *   architecture: "standard" as const,
 *   batch: 4,
 *   dIn: 4,
 *   dSae: 8,
 *   applyBDecToInput: true,
 *   deadFeatureWindow: 1000,
 *   adamBeta1: 0.9,
 *   adamBeta2: 0.999,
 *   metricSlots: 4,
 * };
 * const init = Object.fromEntries(
 *   Object.entries(trainParamSizes(shape)).map(([name, n]) => [
 *     name,
 *     Float32Array.from({ length: n }, (_, i) => 0.3 * Math.sin(7 * i + name.length)),
 *   ]),
 * );
 * const batch = Float32Array.from({ length: 4 * 4 }, (_, i) => Math.cos(i)); // [batch, d_in]
 * const st = createTrainStep(shape, init);
 * recordTrainStep(st, batch, { lr: 1e-2, coefficient: 1, step: 1 });
 * const { featureActs, saeOut } = await readStepForward(st);
 * assert.equal(featureActs.length, 4 * 8); // [batch, d_sae]
 * assert.equal(saeOut.length, 4 * 4); // [batch, d_in]
 * disposeTrainStep(st);
 * ```
 */
export async function readStepForward(
  st: TrainStep,
): Promise<{ hiddenPre: Float32Array; featureActs: Float32Array; saeOut: Float32Array }> {
  const { batch: B, dIn: D, dSae: S } = st.shape;
  const [bs, bd] = await readBuffers([
    { buffer: st.buf.bs, bytes: 3 * B * S * 4 },
    { buffer: st.buf.bd, bytes: 3 * B * D * 4 },
  ]);
  const a = new Float32Array(bs), c = new Float32Array(bd);
  return {
    hiddenPre: a.slice(B * S, 2 * B * S),
    featureActs: a.slice(2 * B * S, 3 * B * S),
    saeOut: c.slice(2 * B * D, 3 * B * D),
  };
}

/** A training step's full state: parameters, Adam's moments, per-latent counters. */
export interface TrainState {
  /** Flat parameters (offsets as the step's). */
  params: Float32Array;
  /** Adam's first moments. */
  m: Float32Array;
  /** Adam's second moments. */
  v: Float32Array;
  /** Steps since each latent fired. */
  stepsSinceFired: Float32Array;
  /** Rows each latent fired on. */
  fireCounts: Float32Array;
}

/**
 * Reads a step's full state back (for a checkpoint).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, readTrainState, recordTrainStep, trainParamSizes } from "./kernels.ts";
 *
 * await initGpu();
 * const shape = {
 *   architecture: "standard" as const,
 *   batch: 4,
 *   dIn: 4,
 *   dSae: 8,
 *   applyBDecToInput: true,
 *   deadFeatureWindow: 1000,
 *   adamBeta1: 0.9,
 *   adamBeta2: 0.999,
 *   metricSlots: 4,
 * };
 * const init = Object.fromEntries(
 *   Object.entries(trainParamSizes(shape)).map(([name, n]) => [
 *     name,
 *     Float32Array.from({ length: n }, (_, i) => 0.3 * Math.sin(7 * i + name.length)),
 *   ]),
 * );
 * const batch = Float32Array.from({ length: 4 * 4 }, (_, i) => Math.cos(i)); // [batch, d_in]
 * const st = createTrainStep(shape, init);
 * recordTrainStep(st, batch, { lr: 1e-2, coefficient: 1, step: 1 });
 * const state = await readTrainState(st);
 * assert.ok(state.m.some((x) => x !== 0)); // Adam's moments after one step
 * disposeTrainStep(st);
 * ```
 */
export async function readTrainState(st: TrainStep): Promise<TrainState> {
  const S = st.shape.dSae, n = st.n * 4;
  const [th, m, v, lat] = await readBuffers([
    { buffer: st.buf.th, bytes: n },
    { buffer: st.buf.m, bytes: n },
    { buffer: st.buf.v, bytes: n },
    { buffer: st.buf.lat, bytes: 5 * S * 4 },
  ]);
  const l = new Float32Array(lat);
  return {
    params: new Float32Array(th),
    m: new Float32Array(m),
    v: new Float32Array(v),
    stepsSinceFired: l.slice(3 * S, 4 * S),
    fireCounts: l.slice(4 * S, 5 * S),
  };
}

/**
 * Restores a state read by {@link readTrainState} into a step of the same shape, which then
 * continues from step `steps` (Adam's bias correction and the metrics ring go on from there).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, readTrainParams, readTrainState, recordTrainStep, trainParamSizes, writeTrainState } from "./kernels.ts";
 *
 * await initGpu();
 * const shape = {
 *   architecture: "standard" as const,
 *   batch: 4,
 *   dIn: 4,
 *   dSae: 8,
 *   applyBDecToInput: true,
 *   deadFeatureWindow: 1000,
 *   adamBeta1: 0.9,
 *   adamBeta2: 0.999,
 *   metricSlots: 4,
 * };
 * const init = Object.fromEntries(
 *   Object.entries(trainParamSizes(shape)).map(([name, n]) => [
 *     name,
 *     Float32Array.from({ length: n }, (_, i) => 0.3 * Math.sin(7 * i + name.length)),
 *   ]),
 * );
 * const batch = Float32Array.from({ length: 4 * 4 }, (_, i) => Math.cos(i)); // [batch, d_in]
 * const st = createTrainStep(shape, init);
 * recordTrainStep(st, batch, { lr: 1e-2, coefficient: 1, step: 1 });
 * const state = await readTrainState(st);
 * const again = createTrainStep(shape, init);
 * writeTrainState(again, state, 1); // continues from step 1
 * assert.deepEqual(await readTrainParams(again), await readTrainParams(st));
 * disposeTrainStep(st);
 * disposeTrainStep(again);
 * ```
 */
export function writeTrainState(st: TrainStep, state: TrainState, steps: number): void {
  const S = st.shape.dSae;
  const sizes: [string, Float32Array, number][] = [
    ["params", state.params, st.n],
    ["m", state.m, st.n],
    ["v", state.v, st.n],
    ["stepsSinceFired", state.stepsSinceFired, S],
    ["fireCounts", state.fireCounts, S],
  ];
  for (const [name, a, len] of sizes) {
    if (a.length !== len) {
      throw new RangeError(`train state ${name}: need ${len} values, got ${a.length}`);
    }
  }
  writeBuffer(st.buf.th, state.params);
  writeBuffer(st.buf.m, state.m);
  writeBuffer(st.buf.v, state.v);
  writeBuffer(st.buf.lat, state.stepsSinceFired, 3 * S * 4);
  writeBuffer(st.buf.lat, state.fireCounts, 4 * S * 4);
  st.steps = steps;
}
