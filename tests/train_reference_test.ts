// SAE training against SAELens 6.18's own trainer (tests/reference/sae_training): 10 steps of each
// architecture from the same initial parameters on the same batches; every loss component per
// step, the dead-latent count each step's loss used, the forward pass of steps 1 and 10, and the
// parameters after steps 1 and 10.
import assert from "node:assert/strict";
import { initGpu } from "../mod.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import {
  createTrainStep,
  disposeTrainStep,
  readStepForward,
  readStepMetrics,
  readTrainParams,
  recordTrainStep,
  TRAIN_PARAMS,
  type TrainArchitecture,
} from "../src/sae/train/kernels.ts";
import { coefficientAt } from "../src/sae/train/schedule.ts";
import { maxRelErr } from "./_util.ts";

const DIR = new URL("./reference/sae_training/", import.meta.url).pathname;
const manifest = JSON.parse(await Deno.readTextFile(DIR + "manifest.json"));

// Losses are scalars of order 1-30 summed in another order than torch's: 1e-5 relative. Parameters
// after Adam steps land within 7e-6 of each tensor's max here; an update is lr · m / (√v + ε), so a
// gradient near 0 moves its element by up to lr (3e-4, on weights ~0.1) with its last bits, and an
// update of the wrong sign or size shows as ~3e-3: 5e-5 tells them apart.
const LOSS_TOL = 1e-5;
const PARAM_TOL = 5e-5;

const LOSS_KEYS: Record<TrainArchitecture, [string, "sparsityLoss" | "auxLoss"][]> = {
  standard: [["l1_loss", "sparsityLoss"]],
  topk: [["auxiliary_reconstruction_loss", "auxLoss"]],
  jumprelu: [["l0_loss", "sparsityLoss"]],
  gated: [["l1_loss", "sparsityLoss"], ["auxiliary_reconstruction_loss", "auxLoss"]],
};

for (const arch of ["standard", "topk", "jumprelu", "gated"] as TrainArchitecture[]) {
  Deno.test(`training matches SAELens step by step: ${arch}`, async () => {
    await initGpu();
    const m = manifest.train[arch];
    const c = m.sae_cfg, tc = m.trainer_cfg;
    using f = await SafetensorsFile.open(DIR + m.file);
    const init: Record<string, Float32Array> = {};
    for (const name of TRAIN_PARAMS[arch]) init[name] = await f.float32(`init.${name}`);
    const batches = await f.float32("batches");
    const B = tc.train_batch_size_samples, D = c.d_in, S = c.d_sae;
    const st = createTrainStep({
      architecture: arch,
      batch: B,
      dIn: D,
      dSae: S,
      k: c.k,
      applyBDecToInput: c.apply_b_dec_to_input,
      rescaleActsByDecoderNorm: c.rescale_acts_by_decoder_norm ?? false,
      deadFeatureWindow: tc.dead_feature_window,
      jumpreluBandwidth: c.jumprelu_bandwidth,
      auxLossCoefficient: c.aux_loss_coefficient,
      adamBeta1: tc.adam_beta1,
      adamBeta2: tc.adam_beta2,
      metricSlots: 10,
    }, init);
    try {
      const coefName = arch === "jumprelu" ? "l0" : "l1";
      const final = c[`${coefName}_coefficient`] ?? 0;
      const warm = c[`${coefName}_warm_up_steps`] ?? 0;
      for (let s = 0; s < 10; s++) {
        const coefficient = coefficientAt(s, final, warm);
        const want = m.per_step.coefficients[s][coefName];
        if (want !== undefined) assert.ok(Math.abs(coefficient - want) < 1e-12, `coef step ${s}`);
        const lr = m.per_step.lr[s];
        recordTrainStep(st, batches.slice(s * B * D, (s + 1) * B * D), {
          lr,
          coefficient,
          step: s + 1,
        });
        if (s === 0 || s === 9) {
          const tag = `step${String(s + 1).padStart(2, "0")}`;
          const fw = await readStepForward(st);
          assert.ok(maxRelErr(fw.hiddenPre, await f.float32(`${tag}.hidden_pre`)) < 1e-5, "pre");
          assert.ok(maxRelErr(fw.featureActs, await f.float32(`${tag}.feature_acts`)) < 1e-5);
          assert.ok(maxRelErr(fw.saeOut, await f.float32(`${tag}.sae_out`)) < 1e-5, "out");
          const p = await readTrainParams(st);
          const after = s === 0 ? "after_step01" : "after_step10";
          for (const name of TRAIN_PARAMS[arch]) {
            const key = name === "log_threshold" && !f.has(`${after}.${name}`)
              ? null
              : `${after}.${name}`;
            if (!key) continue;
            const err = maxRelErr(p[name], await f.float32(key));
            assert.ok(err < PARAM_TOL, `${arch} ${after}.${name}: max rel err ${err}`);
          }
        }
      }
      const got = await readStepMetrics(st, 10);
      for (let s = 0; s < 10; s++) {
        const want = m.per_step.losses[s];
        const close = (a: number, b: number) =>
          Math.abs(a - b) <= LOSS_TOL * Math.max(1, Math.abs(b));
        assert.ok(
          close(got[s].overallLoss, want.overall_loss),
          `${arch} step ${s + 1} overall: ${got[s].overallLoss} vs ${want.overall_loss}`,
        );
        assert.ok(
          close(got[s].mseLoss, want.mse_loss),
          `${arch} step ${s + 1} mse: ${got[s].mseLoss} vs ${want.mse_loss}`,
        );
        for (const [k, ours] of LOSS_KEYS[arch]) {
          assert.ok(
            close(got[s][ours], want[k]),
            `${arch} step ${s + 1} ${k}: ${got[s][ours]} vs ${want[k]}`,
          );
        }
        assert.equal(got[s].deadLatents, m.per_step.dead_count[s], `${arch} step ${s + 1} dead`);
      }
    } finally {
      disposeTrainStep(st);
    }
  });
}
