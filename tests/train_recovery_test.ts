// Training finds known directions: activations built from 64 unit-norm ground-truth directions in
// 32 dimensions, about 3 active per row; trained standard and top-k SAEs must have, for at least
// 90% of the true directions, a decoder row at cosine >= 0.9.
import assert from "node:assert/strict";
import { initGpu } from "../mod.ts";
import {
  cpuActivationSource,
  type TrainSaeConfig,
  trainSaeOnActivations,
} from "../src/sae/train/trainer.ts";
import { rng } from "./_util.ts";

const D = 32, F = 64, ACTIVE = 3;

function groundTruth(seed: number): Float32Array {
  const r = rng(seed);
  const f = new Float32Array(F * D);
  for (let i = 0; i < F; i++) {
    let n = 0;
    for (let d = 0; d < D; d++) {
      // Box-Muller normal components: directions uniform on the sphere.
      const v = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
      f[i * D + d] = v;
      n += v * v;
    }
    for (let d = 0; d < D; d++) f[i * D + d] /= Math.sqrt(n);
  }
  return f;
}

function sampler(feats: Float32Array, seed: number): (rows: number) => Float32Array {
  const r = rng(seed);
  return (rows) => {
    const x = new Float32Array(rows * D);
    for (let i = 0; i < rows; i++) {
      for (let f = 0; f < F; f++) {
        if (r() >= ACTIVE / F) continue;
        const a = 0.5 + 2 * r();
        for (let d = 0; d < D; d++) x[i * D + d] += a * feats[f * D + d];
      }
    }
    return x;
  };
}

function recovered(feats: Float32Array, wDec: Float32Array, dSae: number): number {
  let found = 0;
  for (let f = 0; f < F; f++) {
    let best = -1;
    for (let j = 0; j < dSae; j++) {
      let dot = 0, n = 0;
      for (let d = 0; d < D; d++) {
        dot += feats[f * D + d] * wDec[j * D + d];
        n += wDec[j * D + d] ** 2;
      }
      best = Math.max(best, dot / Math.sqrt(n));
    }
    if (best >= 0.9) found++;
  }
  return found / F;
}

// The CI budget on lavapipe (a few hundred steps of 256 rows); both find every direction with 600.
const CASES: [string, Partial<TrainSaeConfig>][] = [
  ["standard", { architecture: "standard", l1Coefficient: 0.3, lr: 1e-2, totalSteps: 300 }],
  ["topk", { architecture: "topk", k: 4, lr: 4e-3, totalSteps: 300 }],
];

for (const [name, extra] of CASES) {
  Deno.test(`training recovers sparse ground-truth directions: ${name}`, async () => {
    await initGpu();
    const feats = groundTruth(7);
    const res = await trainSaeOnActivations(cpuActivationSource(D, sampler(feats, 11)), {
      hookName: "synthetic",
      dSae: 128,
      batchSize: 256,
      storeRows: 256 * 8,
      logEvery: 100,
      bDecInit: "zeros",
      seed: 3,
      ...extra,
    });
    try {
      const frac = recovered(feats, res.weights.W_dec, 128);
      const m = res.metrics.at(-1)!;
      if (Deno.env.get("SHOW")) console.log(name, frac, m);
      assert.ok(frac >= 0.9, `${name}: ${(frac * 100).toFixed(0)}% of directions found`);
    } finally {
      res.sae.dispose();
    }
  });
}
