// One SAE training step per architecture against a float64 CPU computation on fresh random data:
// the losses, the gradients (by central differences of the float64 loss, so they do not share the
// kernels' derivation; JumpReLU's threshold gradient is a straight-through estimate, computed from
// its formula), the clipped Adam update. Odd shapes (no multiple of 8), some latents dead, every
// work buffer poisoned with NaN first.
import assert from "node:assert/strict";
import { initGpu } from "../mod.ts";
import {
  createDataBuffer,
  deferDestroy,
  readBuffers,
  runtime,
  writeBuffer,
} from "../src/gpu/runtime.ts";
import {
  createTrainStep,
  disposeTrainStep,
  readStepMetrics,
  readTrainParams,
  recordTrainStep,
  TRAIN_PARAMS,
  type TrainArchitecture,
  trainParamSizes,
  type TrainShape,
} from "../src/sae/train/kernels.ts";
import { maxRelErr, rng } from "./_util.ts";

const B = 13, D = 10, S = 21, K = 3, WINDOW = 4, BW = 0.3, COEF = 0.7, AUX = 0.8;
const DEAD = new Set([1, 4, 5, 9, 16, 20]);

type P64 = Record<string, Float64Array>;

/** The float64 loss of one step (the residual of top-k's aux loss held fixed, as SAELens detaches it). */
function loss(
  arch: TrainArchitecture,
  p: P64,
  x: Float64Array,
  fixedResidual?: Float64Array,
  applyBDec = true,
) {
  const norms = new Float64Array(S);
  for (let j = 0; j < S; j++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += p.W_dec[j * D + d] ** 2;
    norms[j] = Math.sqrt(s);
  }
  const c = x.map((v, e) => (applyBDec ? v - p.b_dec[e % D] : v));
  const h = new Float64Array(B * S);
  for (let i = 0; i < B; i++) {
    for (let j = 0; j < S; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += c[i * D + d] * p.W_enc[d * S + j];
      h[i * S + j] = s;
    }
  }
  const eff = new Float64Array(B * S), aeff = new Float64Array(B * S);
  let sparsity = 0;
  let auxScale = 0;
  for (let i = 0; i < B; i++) {
    const r = i * S;
    if (arch === "topk") {
      const hid = Array.from({ length: S }, (_, j) => (h[r + j] + p.b_enc[j]) * norms[j]);
      const order = [...hid.keys()].sort((a, b) => hid[b] - hid[a]);
      for (const j of order.slice(0, K)) eff[r + j] = Math.max(hid[j], 0) / norms[j];
      const kb = Math.floor(D / 2), nd = DEAD.size, ka = Math.min(kb, nd);
      auxScale = AUX * Math.min(nd / kb, 1);
      const dead = order.filter((j) => DEAD.has(j)).slice(0, ka);
      for (const j of dead) aeff[r + j] = hid[j] / norms[j];
    } else {
      for (let j = 0; j < S; j++) {
        const pre = h[r + j] + (arch === "gated" ? p.b_gate[j] : p.b_enc[j]);
        if (arch === "standard") {
          eff[r + j] = Math.max(pre, 0);
          sparsity += COEF * eff[r + j] * norms[j] / B;
        } else if (arch === "jumprelu") {
          const on = pre > Math.exp(p.log_threshold[j]);
          eff[r + j] = on ? pre : 0;
          sparsity += on ? COEF / B : 0;
        } else {
          const mag = h[r + j] * Math.exp(p.r_mag[j]) + p.b_mag[j];
          eff[r + j] = pre > 0 ? Math.max(mag, 0) : 0;
          aeff[r + j] = Math.max(pre, 0);
          sparsity += COEF * aeff[r + j] * norms[j] / B;
        }
      }
    }
  }
  const decode = (a: Float64Array) => {
    const out = new Float64Array(B * D);
    for (let i = 0; i < B; i++) {
      for (let d = 0; d < D; d++) {
        let s = p.b_dec[d];
        for (let j = 0; j < S; j++) s += a[i * S + j] * p.W_dec[j * D + d];
        out[i * D + d] = s;
      }
    }
    return out;
  };
  const out = decode(eff);
  let mse = 0;
  for (let e = 0; e < B * D; e++) mse += (out[e] - x[e]) ** 2 / B;
  let aux = 0;
  const residual = fixedResidual ?? x.map((v, e) => v - out[e]);
  if (arch === "topk" || arch === "gated") {
    const rec = decode(aeff);
    const target = arch === "topk" ? residual : x;
    for (let e = 0; e < B * D; e++) aux += (rec[e] - target[e]) ** 2 / B;
    if (arch === "topk") aux *= auxScale;
  }
  let tv = 0;
  for (let d = 0; d < D; d++) {
    let mean = 0;
    for (let i = 0; i < B; i++) mean += x[i * D + d] / B;
    for (let i = 0; i < B; i++) tv += (x[i * D + d] - mean) ** 2 / B;
  }
  return { total: mse + sparsity + aux, mse, sparsity, aux, out, residual, eff, ev: 1 - mse / tv };
}

const CASES: [TrainArchitecture, boolean][] = [
  ["standard", true],
  ["topk", true],
  ["jumprelu", true],
  ["gated", true],
  ["standard", false],
];

for (const [arch, applyBDec] of CASES) {
  const tag = applyBDec ? arch : `${arch}, b_dec not subtracted from the input`;
  Deno.test(`train step kernels vs float64: ${tag}`, async () => {
    await initGpu();
    const shape: TrainShape = {
      architecture: arch,
      batch: B,
      dIn: D,
      dSae: S,
      k: K,
      applyBDecToInput: applyBDec,
      rescaleActsByDecoderNorm: true,
      deadFeatureWindow: WINDOW,
      jumpreluBandwidth: BW,
      auxLossCoefficient: AUX,
      adamBeta1: 0.9,
      adamBeta2: 0.999,
      metricSlots: 3,
    };
    const r = rng(arch.length * 7919 + 17 + (applyBDec ? 0 : 1));
    const sizes = trainParamSizes(shape);
    const init: Record<string, Float32Array> = {};
    for (const name of TRAIN_PARAMS[arch]) {
      const scale = name.startsWith("W") ? 0.5 : 0.2;
      init[name] = Float32Array.from({ length: sizes[name] }, () => (r() * 2 - 1) * scale);
    }
    // Thresholds near the pre-activations so that the straight-through window catches some.
    if (arch === "jumprelu") init.log_threshold = init.log_threshold.map((v) => Math.log(0.2 + v));
    const x = Float32Array.from({ length: B * D }, () => r() * 2 - 1);
    const st = createTrainStep(shape, init);
    try {
      // Poison every work buffer, then set the latent state: some dead, the rest fired recently.
      for (const b of [st.buf.gr, st.buf.bd, st.buf.bs, st.buf.sm, st.buf.lat]) {
        writeBuffer(b, new Float32Array(b.size / 4).fill(NaN));
      }
      const since = Float32Array.from({ length: S }, (_, j) => (DEAD.has(j) ? WINDOW + 3 : 1));
      writeBuffer(st.buf.lat, since, 3 * S * 4);
      writeBuffer(st.buf.lat, new Float32Array(S), 4 * S * 4);
      const lr = 1e-2;
      recordTrainStep(st, x, { lr, coefficient: COEF, step: 1 });
      const [grBytes] = await readBuffers([{ buffer: st.buf.gr, bytes: st.n * 4 }]);
      const grads = new Float32Array(grBytes);
      const [m] = await readStepMetrics(st, 1);
      const after = await readTrainParams(st);

      // float64 reference
      const p: P64 = {};
      for (const name of TRAIN_PARAMS[arch]) p[name] = Float64Array.from(init[name]);
      const x64 = Float64Array.from(x);
      const base = loss(arch, p, x64, undefined, applyBDec);
      const close = (a: number, b: number, what: string) =>
        assert.ok(Math.abs(a - b) <= 2e-5 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
      close(m.mseLoss, base.mse, "mse");
      close(
        m.sparsityLoss,
        arch === "standard" || arch === "jumprelu" || arch === "gated" ? base.sparsity : 0,
        "sparsity",
      );
      close(m.auxLoss, base.aux, "aux");
      close(m.overallLoss, base.total, "overall");
      close(m.explainedVariance, base.ev, "explained variance");
      assert.equal(m.deadLatents, DEAD.size);
      let l0 = 0;
      for (const v of base.eff) if (v !== 0) l0++;
      close(m.l0, l0 / B, "l0");

      const g64: P64 = {};
      for (const name of TRAIN_PARAMS[arch]) {
        g64[name] = new Float64Array(sizes[name]);
        for (let e = 0; e < sizes[name]; e++) {
          if (name === "log_threshold") continue;
          const h = 1e-6, v = p[name][e];
          p[name][e] = v + h;
          const up = loss(arch, p, x64, base.residual, applyBDec).total;
          p[name][e] = v - h;
          const down = loss(arch, p, x64, base.residual, applyBDec).total;
          p[name][e] = v;
          g64[name][e] = (up - down) / (2 * h);
        }
      }
      if (arch === "jumprelu") {
        // STE: dL/dθ_j = Σ_i rect((pre - θ)/bw) (-(θ/bw) dL/dacts - (coef/B)/bw); dL/dlogθ = θ dL/dθ.
        for (let j = 0; j < S; j++) {
          const th = Math.exp(p.log_threshold[j]);
          let g = 0;
          for (let i = 0; i < B; i++) {
            let pre = p.b_enc[j];
            for (let d = 0; d < D; d++) pre += (x64[i * D + d] - p.b_dec[d]) * p.W_enc[d * S + j];
            let ga = 0;
            for (let d = 0; d < D; d++) {
              ga += 2 * (base.out[i * D + d] - x64[i * D + d]) / B * p.W_dec[j * D + d];
            }
            const u = (pre - th) / BW;
            if (u > -0.5 && u < 0.5) g += -(th / BW) * ga - COEF / B / BW;
          }
          g64.log_threshold[j] = g * th;
        }
        assert.ok(g64.log_threshold.some((v) => v !== 0), "the STE window catches some rows");
      }
      let sq = 0;
      for (const name of TRAIN_PARAMS[arch]) {
        const off = st.offsets[name];
        const got = grads.subarray(off, off + sizes[name]);
        const err = maxRelErr(got, g64[name]);
        assert.ok(err < 1e-4, `${arch} grad ${name}: max rel err ${err}`);
        for (const v of g64[name]) sq += v * v;
      }
      // Clip at norm 1, then Adam's first step: m̂ = g, v̂ = g², θ -= lr g / (|g| + ε).
      const clip = Math.min(1 / (Math.sqrt(sq) + 1e-6), 1);
      close(m.gradNorm, Math.sqrt(sq), "grad norm");
      for (const name of TRAIN_PARAMS[arch]) {
        const want = p[name].map((v, e) => {
          const g = g64[name][e] * clip;
          const mm = 0.1 * g, vv = 0.001 * g * g;
          return v - (lr / 0.1) * mm / (Math.sqrt(vv) / Math.sqrt(0.001) + 1e-8);
        });
        // An element whose gradient is within float32 noise of 0 may move by up to lr either way.
        for (let e = 0; e < want.length; e++) {
          const g = Math.abs(g64[name][e] * clip);
          const tol = g > 1e-4 ? 1e-6 : lr * 1.01;
          assert.ok(
            Math.abs(after[name][e] - want[e]) <= tol,
            `${arch} ${name}[${e}] after Adam: ${after[name][e]} vs ${want[e]}`,
          );
        }
      }
    } finally {
      disposeTrainStep(st);
    }
  });
}

Deno.test("a training step is one queue.submit and no readback, from CPU data or the GPU store", async () => {
  await initGpu();
  const shape: TrainShape = {
    architecture: "topk",
    batch: 8,
    dIn: D,
    dSae: S,
    k: K,
    applyBDecToInput: true,
    rescaleActsByDecoderNorm: true,
    deadFeatureWindow: WINDOW,
    adamBeta1: 0.9,
    adamBeta2: 0.999,
    metricSlots: 4,
  };
  const sizes = trainParamSizes(shape);
  const init: Record<string, Float32Array> = {};
  for (const name of TRAIN_PARAMS.topk) init[name] = new Float32Array(sizes[name]).fill(0.1);
  const st = createTrainStep(shape, init);
  const store = createDataBuffer(Float32Array.from({ length: 32 * D }, (_, i) => Math.sin(i)));
  const idx = createDataBuffer(Float32Array.from({ length: 32 }, (_, i) => 31 - i));
  try {
    const stats = runtime().stats;
    const x = new Float32Array(8 * D).fill(0.5);
    recordTrainStep(st, x, { lr: 1e-3, coefficient: 1, step: 1 }); // pipelines built
    for (
      const [step, batch] of [[2, x], [3, { store, indices: idx, offset: 8, scale: 2 }]] as const
    ) {
      const [submits, readbacks] = [stats.submits, stats.readbacks];
      recordTrainStep(st, batch, { lr: 1e-3, coefficient: 1, step });
      assert.equal(stats.submits - submits, 1, `step ${step}: submits`);
      assert.equal(stats.readbacks - readbacks, 0, `step ${step}: readbacks`);
    }
    const m = await readStepMetrics(st, 3);
    assert.deepEqual(m.map((v) => Number.isFinite(v.mseLoss)), [true, true, true]);
  } finally {
    disposeTrainStep(st);
    deferDestroy(store);
    deferDestroy(idx);
  }
});
