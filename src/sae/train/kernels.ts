/**
 * The SAE training step on the GPU: SAELens 6.18's `training_forward_pass`, the backward pass,
 * `clip_grad_norm_(params, 1.0)` and torch's Adam, recorded as one command buffer per step
 * (`shaders/train.wgsl`; the matrix products by the library's tiled `gemm`). Parameters,
 * gradients and Adam's moments live in flat GPU buffers; nothing is read back unless asked
 * ({@link readStepMetrics}, {@link readTrainParams}).
 *
 * The step's types and buffer layout are in ./step.ts, the readbacks in ./readback.ts; both are
 * re-exported here.
 *
 * @example
 * A fragment: createTrainStep's example below runs a step with real shapes.
 * ```
 * import { createTrainStep, recordTrainStep, readStepMetrics } from "./kernels.ts";
 * const st = createTrainStep(shape, initParams);
 * recordTrainStep(st, batch, { lr: 3e-4, coefficient: 1, step: 1 });
 * const [m] = await readStepMetrics(st, 1);
 * ```
 * @module
 */
import trainWgsl from "../../../shaders/train.wgsl" with { type: "text" };
import gatherWgsl from "../../../shaders/train_gather.wgsl" with { type: "text" };
import { dispatch, pipeline, type ShaderSource } from "../../gpu/dispatch.ts";
import { shaderSource, uniforms } from "../../gpu/kernels/uniforms.ts";
import { gemm } from "../../gpu/ops.ts";
import { Tensor } from "../../gpu/tensor.ts";
import { createDataBuffer, deferDestroy, flush, runtime, writeBuffer } from "../../gpu/runtime.ts";
import {
  NM,
  SCHED,
  type StepSchedule,
  TRAIN_PARAMS,
  type TrainArchitecture,
  trainParamSizes,
  type TrainShape,
  type TrainStep,
  VAR,
} from "./step.ts";

// The step's types and its readbacks live in their own modules; their names stay reachable here.
export {
  readLatentStats,
  readStepForward,
  readStepMetrics,
  readTrainParams,
  readTrainState,
  writeTrainState,
} from "./readback.ts";
export type { LatentStats, TrainState } from "./readback.ts";
export { TRAIN_PARAMS, trainParamSizes } from "./step.ts";
export type {
  StepMetrics,
  StepSchedule,
  TrainArchitecture,
  TrainShape,
  TrainStep,
} from "./step.ts";

/** The uniform block of shaders/train.wgsl. */
const TRAIN_P = uniforms({
  /** Batch rows. */
  B: "u32",
  /** d_in. */
  D: "u32",
  /** d_sae. */
  S: "u32",
  /** 0 standard, 1 top-k, 2 JumpReLU, 3 gated. */
  arch: "u32",
  /** Top-k: k. */
  k: "u32",
  /** Subtract b_dec from the input. */
  apply_bdec: "u32",
  /** Top-k: rescale by decoder norms. */
  rescale: "u32",
  /** Dead-feature window (steps). */
  window: "u32",
  /** Offsets in the flat parameters: W_enc, b_enc (b_gate), W_dec, b_dec. */
  oWe: "u32",
  oBe: "u32",
  oWd: "u32",
  oBd: "u32",
  /** log_threshold (JumpReLU) or r_mag (gated); b_mag (gated). */
  oX1: "u32",
  oX2: "u32",
  /** Parameters in all. */
  N: "u32",
  /** Metrics ring slot of this step. */
  slot: "u32",
  /** JumpReLU bandwidth. */
  bw: "f32",
  /** Top-k auxiliary loss coefficient. */
  aux_coef: "f32",
  /** Adam ε, β1, β2. */
  eps: "f32",
  b1: "f32",
  b2: "f32",
});
const TRAIN: ShaderSource = shaderSource("train", TRAIN_P, trainWgsl);

/** The uniform block of shaders/train_gather.wgsl. */
const GATHER_P = uniforms({ rows: "u32", d: "u32", off: "u32", scale: "f32" });
const GATHER: ShaderSource = shaderSource("train_gather", GATHER_P, gatherWgsl);

const ARCH_CODE: Record<TrainArchitecture, number> = {
  standard: 0,
  topk: 1,
  jumprelu: 2,
  gated: 3,
};

/**
 * Allocates a training step's buffers with initial parameters (SAELens names, W_enc [d_in,
 * d_sae], W_dec [d_sae, d_in]; log_threshold for JumpReLU). Adam's moments start at zero.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, readTrainParams, trainParamSizes } from "./kernels.ts";
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
 * assert.deepEqual((await readTrainParams(st)).W_enc, init.W_enc); // as given, before any step
 * disposeTrainStep(st);
 * ```
 */
export function createTrainStep(shape: TrainShape, init: Record<string, Float32Array>): TrainStep {
  const sizes = trainParamSizes(shape);
  const offsets: Record<string, number> = {};
  let n = 0;
  for (const name of TRAIN_PARAMS[shape.architecture]) {
    offsets[name] = n;
    n += sizes[name];
  }
  const th = new Float32Array(n);
  for (const name of TRAIN_PARAMS[shape.architecture]) {
    const v = init[name];
    if (!v || v.length !== sizes[name]) {
      throw new RangeError(`initial ${name}: need ${sizes[name]} values, got ${v?.length}`);
    }
    th.set(v, offsets[name]);
  }
  const { batch: B, dIn: D, dSae: S } = shape;
  const zeros = (len: number) => new Float32Array(Math.max(len, 4));
  const buf = {
    th: createDataBuffer(th, "train params"),
    gr: createDataBuffer(zeros(n), "train grads"),
    m: createDataBuffer(zeros(n), "adam m"),
    v: createDataBuffer(zeros(n), "adam v"),
    bd: createDataBuffer(zeros(6 * B * D), "train [B, d_in]"),
    bs: createDataBuffer(zeros(8 * B * S), "train [B, d_sae]"),
    lat: createDataBuffer(zeros(5 * S), "train latents"),
    sm: createDataBuffer(zeros(VAR + D + 4 * B + shape.metricSlots * NM), "train small"),
  };
  return { shape: { ...shape }, offsets, sizes, n, buf, steps: 0 };
}

function trainParams(st: TrainStep, slot: number): ReturnType<typeof TRAIN_P.pack> {
  const s = st.shape, o = st.offsets;
  const arch = s.architecture;
  return TRAIN_P.pack({
    B: s.batch,
    D: s.dIn,
    S: s.dSae,
    arch: ARCH_CODE[arch],
    k: s.k ?? 0,
    apply_bdec: s.applyBDecToInput,
    rescale: s.rescaleActsByDecoderNorm ?? false,
    window: s.deadFeatureWindow,
    oWe: o.W_enc,
    oBe: arch === "gated" ? o.b_gate : o.b_enc,
    oWd: o.W_dec,
    oBd: o.b_dec,
    oX1: arch === "jumprelu" ? o.log_threshold : arch === "gated" ? o.r_mag : 0,
    oX2: arch === "gated" ? o.b_mag : 0,
    N: st.n,
    slot,
    bw: s.jumpreluBandwidth ?? 0.05,
    aux_coef: s.auxLossCoefficient ?? 1,
    eps: s.adamEps ?? 1e-8,
    b1: s.adamBeta1,
    b2: s.adamBeta2,
  });
}

/** Which of th, gr, bd, bs, lat, sm, m, v each train.wgsl entry binds. */
const USES: Record<string, string> = {
  center: "th bd",
  dec_norms: "th lat",
  act_fwd: "th bs lat sm",
  out_grad: "bd sm",
  act_bwd: "th gr bs lat sm",
  bdec_grad: "th gr bd lat sm",
  wdec_norm_grad: "th gr lat",
  grad_norm: "gr sm",
  adam: "th gr sm m v",
  metrics: "sm",
};
const ORDER = ["th", "gr", "bd", "bs", "lat", "sm", "m", "v"] as const;

function grid64(n: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / 64));
  const x = Math.min(groups, 65535);
  return [x, Math.ceil(groups / x)];
}

function run(
  st: TrainStep,
  entry: string,
  params: ReturnType<typeof TRAIN_P.pack>,
  threads: number | "one",
): void {
  const uses = USES[entry].split(" ");
  const bufs = ORDER.map((k) => (uses.includes(k) ? st.buf[k] : undefined));
  dispatch(pipeline(TRAIN, entry), params, bufs, threads === "one" ? [1] : grid64(threads));
}

/** A strided operand of {@link mm}: buffer, offset and the strides of its two indices. */
interface Operand {
  buf: GPUBuffer;
  off: number;
  /** Stride of the first index (m for A, k for B). */
  s0: number;
  /** Stride of the second index (k for A, n for B). */
  s1: number;
}

/** Tensor views of the trainer's buffers, for the library's tiled matmul (ops.gemm). */
const views = new WeakMap<GPUBuffer, Tensor>();

function view(buf: GPUBuffer): Tensor {
  let t = views.get(buf);
  if (!t) {
    t = new Tensor(buf, [buf.size / 4], "float32", false).keep();
    views.set(buf, t);
  }
  return t;
}

/**
 * C[coff + m N + n] (+)= Σ_k A(m, k) B(k, n) (+ b_dec[n]): the library's tiled matmul on strided
 * operands (the bias is th's first D values: b_dec is the first parameter).
 */
function mm(
  M: number,
  N: number,
  K: number,
  a: Operand,
  b: Operand,
  c: { buf: GPUBuffer; off: number },
  o: { acc?: boolean; bias?: GPUBuffer } = {},
): void {
  gemm(
    { t: view(c.buf), off: c.off, row: N, col: 1 },
    { t: view(a.buf), off: a.off, row: a.s0, col: a.s1 },
    { t: view(b.buf), off: b.off, row: b.s0, col: b.s1 },
    { M, N, K, accumulate: o.acc, bias: o.bias ? view(o.bias) : undefined },
  );
}

/**
 * Where a step's input batch comes from: CPU data; or rows of a GPU buffer (the activation store)
 * picked by a GPU buffer of row indices (f32) from `offset`, times `scale` (normalisation).
 */
export type BatchSource = Float32Array | {
  store: GPUBuffer;
  indices: GPUBuffer;
  offset: number;
  scale: number;
};

/**
 * Records one training step (forward, backward, clipping, Adam, metrics into ring slot
 * `(step - 1) % metricSlots`) and submits it: one `queue.submit`, no readback.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, recordTrainStep, trainParamSizes } from "./kernels.ts";
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
 * recordTrainStep(st, batch, { lr: 3e-4, coefficient: 1, step: st.steps + 1 });
 * assert.equal(st.steps, 1);
 * disposeTrainStep(st);
 * ```
 */
export function recordTrainStep(st: TrainStep, batch: BatchSource, sched: StepSchedule): void {
  const s = st.shape, b = st.buf, o = st.offsets;
  const { batch: B, dIn: D, dSae: S } = s;
  const BD = B * D, BS = B * S;
  const t = sched.step;
  const bc1 = 1 - s.adamBeta1 ** t, bc2 = 1 - s.adamBeta2 ** t;
  // The schedule first (queue.writeBuffer is ordered against submits, not against recording).
  writeBuffer(
    b.sm,
    new Float32Array([sched.lr / bc1, sched.coefficient, Math.sqrt(bc2), sched.lr]),
    SCHED * 4,
  );
  if (batch instanceof Float32Array) {
    if (batch.length !== BD) throw new RangeError(`batch: need ${BD} values, got ${batch.length}`);
    writeBuffer(b.bd, batch);
  } else {
    const params = GATHER_P.pack({ rows: B, d: D, off: batch.offset, scale: batch.scale });
    dispatch(pipeline(GATHER, "gather"), params, [batch.store, batch.indices, b.bd], grid64(BD));
  }
  const slot = (t - 1) % s.metricSlots;
  const p = trainParams(st, slot);
  const arch = s.architecture;
  const auxPath = arch === "topk" || arch === "gated";
  run(st, "center", p, BD);
  run(st, "dec_norms", p, S);
  // h = c · W_enc
  mm(B, S, D, { buf: b.bd, off: BD, s0: D, s1: 1 }, { buf: b.th, off: o.W_enc, s0: S, s1: 1 }, {
    buf: b.bs,
    off: 0,
  });
  run(st, "act_fwd", p, B);
  // out = eff · W_dec + b_dec (and the auxiliary path's reconstruction)
  const wDec = { buf: b.th, off: o.W_dec, s0: D, s1: 1 };
  const bias = { bias: b.th }; // b_dec is at offset 0
  mm(B, D, S, { buf: b.bs, off: 3 * BS, s0: S, s1: 1 }, wDec, { buf: b.bd, off: 2 * BD }, bias);
  if (auxPath) {
    mm(B, D, S, { buf: b.bs, off: 4 * BS, s0: S, s1: 1 }, wDec, { buf: b.bd, off: 3 * BD }, bias);
  }
  run(st, "out_grad", p, B);
  // gA = g_out · W_decᵀ (gR likewise from g_rec)
  const wDecT = { buf: b.th, off: o.W_dec, s0: 1, s1: D };
  mm(B, S, D, { buf: b.bd, off: 4 * BD, s0: D, s1: 1 }, wDecT, { buf: b.bs, off: 5 * BS });
  if (auxPath) {
    mm(B, S, D, { buf: b.bd, off: 5 * BD, s0: D, s1: 1 }, wDecT, { buf: b.bs, off: 6 * BS });
  }
  run(st, "act_bwd", p, S);
  // grad W_enc = cᵀ · G; grad W_dec = effᵀ · g_out (+ aeffᵀ · g_rec)
  mm(D, S, B, { buf: b.bd, off: BD, s0: 1, s1: D }, { buf: b.bs, off: 7 * BS, s0: S, s1: 1 }, {
    buf: b.gr,
    off: o.W_enc,
  });
  mm(S, D, B, { buf: b.bs, off: 3 * BS, s0: 1, s1: S }, { buf: b.bd, off: 4 * BD, s0: D, s1: 1 }, {
    buf: b.gr,
    off: o.W_dec,
  });
  if (auxPath) {
    mm(
      S,
      D,
      B,
      { buf: b.bs, off: 4 * BS, s0: 1, s1: S },
      { buf: b.bd, off: 5 * BD, s0: D, s1: 1 },
      { buf: b.gr, off: o.W_dec },
      { acc: true },
    );
  }
  run(st, "bdec_grad", p, D);
  const normInLoss = arch === "standard" || arch === "gated" ||
    (arch === "topk" && s.rescaleActsByDecoderNorm);
  if (normInLoss) run(st, "wdec_norm_grad", p, S * D);
  run(st, "grad_norm", p, "one");
  run(st, "adam", p, st.n);
  run(st, "metrics", p, "one");
  flush();
  st.steps = t;
}

/**
 * Frees a training step's buffers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { createTrainStep, disposeTrainStep, trainParamSizes } from "./kernels.ts";
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
 * disposeTrainStep(st); // frees its GPU buffers
 * assert.ok(st);
 * ```
 */
export function disposeTrainStep(st: TrainStep): void {
  if (!runtime()) return;
  for (const b of Object.values(st.buf)) {
    const t = views.get(b);
    views.delete(b);
    if (t) t.dispose();
    else deferDestroy(b);
  }
}
