// Checkpoints and resuming: a run resumed from its step-8 checkpoint (at a store refill, the data
// source continuing where it was) ends with exactly the parameters of the uninterrupted run; the
// checkpoint is an SAE directory SAE.load reads; a checkpoint of another shape is refused.
import assert from "node:assert/strict";
import { join } from "node:path";
import { initGpu, SAE, TrainConfigError } from "../mod.ts";
import {
  cpuActivationSource,
  type TrainSaeConfig,
  trainSaeOnActivations,
} from "../src/sae/train/trainer.ts";
import { rng } from "./_util.ts";

const D = 16;

/** Fill k of the store is rows from a generator seeded by k; `skip` fills are already consumed. */
function source(skip: number) {
  let fill = skip;
  return cpuActivationSource(D, (rows) => {
    const r = rng(1000 + fill++);
    return Float32Array.from({ length: rows * D }, () => (r() < 0.2 ? r() * 2 : 0) - 0.1);
  });
}

const CFG: TrainSaeConfig = {
  hookName: "synthetic",
  architecture: "topk",
  k: 3,
  dSae: 40,
  batchSize: 16,
  storeRows: 64, // 4 steps per fill
  totalSteps: 12,
  logEvery: 4,
  lr: 1e-2,
  lrWarmUpSteps: 3,
  deadFeatureWindow: 2,
  normalizeActivations: "expected_average_only_in",
  bDecInit: "mean",
};

Deno.test("a run resumed from a checkpoint ends as the uninterrupted run does", async () => {
  await initGpu();
  const dir = await Deno.makeTempDir();
  try {
    const full = await trainSaeOnActivations(source(0), {
      ...CFG,
      checkpointEvery: 8,
      checkpointDir: dir,
    });
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["12", "8"]);
    const ck = await SAE.load(join(dir, "8"));
    assert.equal(ck.cfg.architecture, "topk");
    ck.dispose();
    const resumed = await trainSaeOnActivations(source(2), { ...CFG, resumeFrom: join(dir, "8") });
    assert.deepEqual(resumed.metrics.map((m) => m.lr > 0), [true, true, true, true]);
    assert.equal(resumed.scalingFactor, full.scalingFactor);
    for (const [name, w] of Object.entries(full.weights)) {
      assert.deepEqual(resumed.weights[name], w, `${name} after resuming`);
    }
    assert.deepEqual(resumed.logSparsity, full.logSparsity);
    // The steps after the checkpoint logged the same metrics.
    assert.deepEqual(resumed.metrics, full.metrics.slice(8));
    full.sae.dispose();
    resumed.sae.dispose();
    await assert.rejects(
      trainSaeOnActivations(source(2), { ...CFG, dSae: 41, resumeFrom: join(dir, "8") }),
      (e: Error) => e instanceof TrainConfigError && /d_sae 40, this run 41/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
