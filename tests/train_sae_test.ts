// trainSae on the demo model: config errors before any GPU work, a short run whose saved directory
// (SAELens's layout) loads with SAE.load and gives the trainer's activations, progress and abort.
import assert from "node:assert/strict";
import { join } from "node:path";
import { HookedTransformer, SAE, Tensor, TrainConfigError, trainSae } from "../mod.ts";
import { runtime } from "../src/gpu/runtime.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import {
  cpuActivationSource,
  saveTrainedSae,
  type TrainSaeConfig,
  trainSaeOnActivations,
} from "../src/sae/train/trainer.ts";
import { maxRelErr, rng } from "./_util.ts";

const model = await HookedTransformer.fromPretrained("models/demo-pycode/hf");
const HOOK = "blocks.2.hook_resid_pre";
const SMALL: TrainSaeConfig = {
  hookName: HOOK,
  dSae: 64,
  architecture: "topk",
  k: 8,
  totalSteps: 12,
  batchSize: 62,
  storeRows: 124,
  contextSize: 32,
  modelBatch: 2,
  logEvery: 4,
  evalContexts: 2,
  normalizeActivations: "expected_average_only_in",
  bDecInit: "geometric_median",
};

Deno.test("trainSae refuses configs that cannot work, before any GPU work", async () => {
  const bad: [Partial<TrainSaeConfig>, RegExp][] = [
    [{ dSae: 0 }, /dSae \(latents\) must be a positive integer, got 0/],
    [{ k: 65 }, /k 65 is more than the 64 latents/],
    [{ hookName: "blocks.9.hook_resid_pre" }, /no hook "blocks\.9\.hook_resid_pre"/],
    [{ architecture: "topk", k: undefined }, /needs k/],
    [{ batchSize: 60, storeRows: 100 }, /storeRows 100 is not a multiple of batchSize 60/],
    [{ lrScheduler: "linear" as "constant" }, /unknown lrScheduler "linear"/],
  ];
  for (const [patch, msg] of bad) {
    const before = runtime().stats.submits;
    let progressed = false;
    await assert.rejects(
      trainSae(model, { ...SMALL, ...patch }, { onProgress: () => void (progressed = true) }),
      (e: Error) => e instanceof TrainConfigError && msg.test(e.message),
    );
    assert.equal(runtime().stats.submits, before, `${JSON.stringify(patch)}: no GPU work`);
    assert.equal(progressed, false);
  }
});

Deno.test("trainSae: a short run saves in SAELens's layout and SAE.load gives the same activations", async () => {
  const seen: number[] = [];
  const res = await trainSae(model, SMALL, { onProgress: (p) => seen.push(p.step) });
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual(seen, [4, 8, 12, 12]);
    assert.equal(res.metrics.length, 12);
    for (const m of res.metrics) {
      assert.ok(Number.isFinite(m.mseLoss) && m.l0 <= 8 && m.l0 > 0, JSON.stringify(m));
    }
    assert.ok(res.scalingFactor !== null && res.scalingFactor > 0);
    // Top-k 8 of 64: each latent fires on 1/8 of the rows on average, so some are dense (> 10%).
    const { deadFraction, denseFraction, meanLog10Sparsity } = res.latents;
    assert.ok(
      deadFraction >= 0 && deadFraction < 1 && denseFraction > 0,
      JSON.stringify(res.latents),
    );
    assert.ok(meanLog10Sparsity < 0);
    const ce = res.eval!;
    assert.ok(ce.zeroAblated > ce.clean, JSON.stringify(ce));
    assert.ok(Number.isFinite(ce.recovered));
    await saveTrainedSae(dir, res);
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "cfg.json")));
    assert.equal(cfg.architecture, "topk");
    assert.equal(cfg.k, 8);
    assert.equal(cfg.normalize_activations, "none"); // the scale is folded into the weights
    assert.equal(cfg.metadata.hook_name, HOOK);
    assert.equal(cfg.metadata.context_size, 32);
    using sp = await SafetensorsFile.open(join(dir, "sparsity.safetensors"));
    assert.deepEqual(sp.info("sparsity").shape, [64]);
    const loaded = await SAE.load(dir);
    try {
      // Real activations at the hook, through both.
      const [out, cache] = await model.runWithCache([[50256, 4299, 277, 7, 87, 2599]], {
        namesFilter: HOOK,
      });
      (out as Tensor).dispose();
      const x = cache.get(HOOK);
      const a1 = await (await res.sae.encode(x)).toArray();
      const a2 = await (await loaded.encode(x)).toArray();
      assert.ok(a1.some((v) => v !== 0));
      assert.equal(maxRelErr(a2, a1), 0);
      const r1 = await (await res.sae.forward(x)).toArray();
      const r2 = await (await loaded.forward(x)).toArray();
      assert.equal(maxRelErr(r2, r1), 0);
      cache.dispose();
    } finally {
      loaded.dispose();
    }
  } finally {
    res.sae.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainSae stops at the next step when its signal aborts", async () => {
  const ac = new AbortController();
  let last = 0;
  await assert.rejects(
    trainSae(model, { ...SMALL, normalizeActivations: "none", bDecInit: "mean" }, {
      signal: ac.signal,
      onProgress: (p) => {
        last = p.step;
        ac.abort(new Error("stop"));
      },
    }),
    /stop/,
  );
  assert.equal(last, 4);
});

Deno.test("expected_average_only_in: the saved SAE, scale folded in, reconstructs raw activations", async () => {
  // Activations of norm ~60 with an offset: trained at mean norm √d_in, saved for the raw scale.
  const D = 16;
  const r = rng(5);
  const dirs = Float32Array.from({ length: 24 * D }, () => r() * 2 - 1);
  const rows = (n: number) => {
    const x = new Float32Array(n * D);
    for (let i = 0; i < n; i++) {
      for (let f = 0; f < 24; f++) {
        if (r() < 0.15) { for (let d = 0; d < D; d++) x[i * D + d] += 40 * r() * dirs[f * D + d]; }
      }
      for (let d = 0; d < D; d++) x[i * D + d] += 30;
    }
    return x;
  };
  const res = await trainSaeOnActivations(cpuActivationSource(D, rows), {
    hookName: "synthetic",
    dSae: 48,
    batchSize: 64,
    storeRows: 512,
    totalSteps: 160,
    logEvery: 160,
    lr: 1e-2,
    l1Coefficient: 0.05,
    normalizeActivations: "expected_average_only_in",
    bDecInit: "geometric_median",
  });
  try {
    assert.ok(res.scalingFactor! < 0.2, `scale ${res.scalingFactor}`);
    const trainedEv = res.metrics.at(-1)!.explainedVariance;
    assert.ok(trainedEv > 0.6, `trained EV ${trainedEv}`);
    const xs = rows(256);
    using x = Tensor.from(xs, [256, D]);
    const y = await (await res.sae.forward(x)).toArray();
    let err = 0, tot = 0;
    for (let d = 0; d < D; d++) {
      let mean = 0;
      for (let i = 0; i < 256; i++) mean += xs[i * D + d] / 256;
      for (let i = 0; i < 256; i++) {
        err += (y[i * D + d] - xs[i * D + d]) ** 2;
        tot += (xs[i * D + d] - mean) ** 2;
      }
    }
    const ev = 1 - err / tot;
    // Another batch than the last training one: within 0.02 (seen: 0.982 vs 0.983; with b_dec left
    // unscaled the raw-scale EV is 0.82).
    assert.ok(Math.abs(ev - trainedEv) < 0.02, `raw-scale EV ${ev} vs trained ${trainedEv}`);
  } finally {
    res.sae.dispose();
  }
});
