/**
 * The SAE training step on the GPU: SAELens 6.18's `training_forward_pass`, the backward pass,
 * `clip_grad_norm_(params, 1.0)` and torch's Adam, recorded as one command buffer per step
 * (`shaders/train.wgsl`; the matrix products by the library's tiled `gemm`). Parameters,
 * gradients and Adam's moments live in flat GPU buffers; nothing is read back unless asked
 * ({@link readStepMetrics}, {@link readTrainParams}).
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
 * recordTrainStep(st, batch, { lr: 3e-4, coefficient: 1, step: 1 });
 * const [m] = await readStepMetrics(st, 1);
 * assert.ok(m.mseLoss > 0 && m.overallLoss >= m.mseLoss);
 * disposeTrainStep(st);
 * ```
 * @module
 */
import trainWgsl from "../../../shaders/train.wgsl" with { type: "text" };
import gatherWgsl from "../../../shaders/train_gather.wgsl" with { type: "text" };
import { dispatch, pipeline, type ShaderSource } from "../../gpu/dispatch.ts";
import { shaderSource, uniforms } from "../../gpu/kernels/uniforms.ts";
import { gemm } from "../../gpu/ops.ts";
import { Tensor } from "../../gpu/tensor.ts";
import {
  createDataBuffer,
  deferDestroy,
  flush,
  readBuffers,
  runtime,
  writeBuffer,
} from "../../gpu/runtime.ts";

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

/** The SAE architectures the trainer knows. */
export type TrainArchitecture = "standard" | "topk" | "jumprelu" | "gated";

const ARCH_CODE: Record<TrainArchitecture, number> = {
  standard: 0,
  topk: 1,
  jumprelu: 2,
  gated: 3,
};

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

const NM = 10;
const SCHED = 8;
const VAR = 16;

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
