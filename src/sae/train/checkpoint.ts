/**
 * Saving trained SAEs in SAELens's layout ({@link saveTrainedSae}), and the training checkpoints
 * that `resumeFrom` continues from ({@link writeCheckpoint}, {@link readCheckpoint}).
 *
 * @example
 * Not run here: it needs a finished training run (`result`); tests/train_sae_test.ts saves and loads one.
 * ```
 * import { SAE } from "../sae.ts";
 * import { saveTrainedSae } from "./checkpoint.ts";
 * await saveTrainedSae("out/sae", result);
 * const sae = await SAE.load("out/sae");
 * ```
 * @module
 */
import { join } from "node:path";
import { TrainConfigError } from "../../errors.ts";
import { SafetensorsFile, writeSafetensors } from "../../io/safetensors.ts";
import { type ResolvedTrainConfig, saeConfigOf, type TrainResult } from "./config.ts";
import { readTrainState, type TrainState } from "./readback.ts";
import type { TrainArchitecture, TrainStep } from "./step.ts";

/**
 * Inference weights from training parameters, with the input scale folded in (as SAELens):
 * JumpReLU's log_threshold becomes threshold; W_enc × scale, W_dec and b_dec ÷ scale.
 *
 * @example
 * A fragment: it needs a training step (`st`); createTrainStep's example makes one.
 * ```
 * const weights = inferenceWeights("jumprelu", await readTrainParams(st), null);
 * weights.threshold; // exp(log_threshold)
 * ```
 */
export function inferenceWeights(
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

/**
 * Writes a checkpoint into `dir`: the SAE in SAELens's layout ({@link saveTrainedSae}) plus
 * `trainer_state.safetensors` (flat parameters, Adam's moments, latent counters) and
 * `trainer_state.json` (step, scale, sizes), which {@link readCheckpoint} reads back.
 *
 * @example
 * Not run here: it needs a training run's state and writes files; tests/train_resume_test.ts does.
 * ```
 * await writeCheckpoint("ckpt/500", r, 32, st, 500, null, { model_name: "demo" });
 * ```
 */
export async function writeCheckpoint(
  dir: string,
  r: ResolvedTrainConfig,
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

/**
 * Reads the checkpoint at `r.resumeFrom`, checked against this run's architecture, sizes, batch
 * and store (a TrainConfigError naming the checkpoint and the setting that differs).
 *
 * @example
 * Not run here: it needs a checkpoint on disk; tests/train_resume_test.ts writes and reads one.
 * ```
 * const { step, scale, state } = await readCheckpoint(resolveConfig({ ...cfg, resumeFrom: "ckpt/500" }), 32);
 * ```
 */
export async function readCheckpoint(
  r: ResolvedTrainConfig,
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
