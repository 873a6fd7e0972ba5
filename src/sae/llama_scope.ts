/**
 * Llama Scope's on-disk SAE format (fnlp/Llama3_1-8B-Base-LX*): a folder with `hyperparams.json`
 * (`d_model`, `d_sae`, `hook_point_in`, a scalar `jump_relu_threshold`,
 * `dataset_average_activation_norm.in`) and `checkpoints/final.safetensors` (`encoder.weight`
 * [d_sae, d_model], `encoder.bias`, `decoder.weight` [d_model, d_sae], `decoder.bias`), read as
 * SAELens's llama_scope loader reads it: a JumpReLU SAE with one threshold for every latent,
 * scaled by sqrt(d_model) / the average input norm, no b_dec on the input. With the release's
 * `norm_scaling_factor` (SAE.fromPretrained passes it), the input scaling is folded into the
 * weights as SAELens does (W_enc * s, W_dec / s, b_dec / s); without it the config keeps
 * `expected_average_only_in`, as SAELens does when it has no factor.
 *
 * @example Not run as a doc test: no Llama Scope folder is vendored (tests/ builds a synthetic one)
 * ```
 * import { readLlamaScope } from "./llama_scope.ts";
 * const { cfg, weights } = await readLlamaScope("Llama3_1-8B-Base-L15R-8x", { normScalingFactor: 2.1 });
 * console.log(cfg.hookName, weights.threshold[0]);
 * ```
 * @module
 */
import { join } from "node:path";
import { ConfigError, WeightsError } from "../errors.ts";
import { type Json, readJsonFile } from "../io/json.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import type { SaeConfig } from "./config.ts";

/** The file that marks a Llama Scope SAE folder. */
export const LLAMA_SCOPE_FILE = "hyperparams.json";

/**
 * Reads a Llama Scope SAE folder into a JumpReLU config and float32 weights in SAELens's layout.
 *
 * @example Not run as a doc test: it needs a downloaded Llama Scope folder
 * ```
 * import { SAE } from "../../mod.ts";
 * import { readLlamaScope } from "./llama_scope.ts";
 * const dir = "Llama3_1-8B-Base-L15R-8x"; // hyperparams.json + checkpoints/final.safetensors
 * const { cfg, weights } = await readLlamaScope(dir);
 * const sae = await SAE.fromWeights(cfg, weights, { source: dir });
 * ```
 */
export async function readLlamaScope(
  dir: string,
  opts: { hookName?: string; modelName?: string; normScalingFactor?: number } = {},
): Promise<{ cfg: SaeConfig; weights: Record<string, Float32Array> }> {
  const hpPath = join(dir, LLAMA_SCOPE_FILE);
  const j = await readJsonFile(hpPath);
  if (j === null || typeof j !== "object" || Array.isArray(j)) {
    throw new ConfigError(hpPath, "not a JSON object");
  }
  const o = j as Record<string, Json>;
  const int = (k: string): number => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0 || v > 2 ** 24) {
      throw new ConfigError(hpPath, `must be a positive integer, got ${JSON.stringify(v)}`, k);
    }
    return v;
  };
  const dIn = int("d_model"), dSae = int("d_sae");
  const jrt = o.jump_relu_threshold;
  if (typeof jrt !== "number" || !Number.isFinite(jrt)) {
    throw new ConfigError(
      hpPath,
      `must be a number, got ${JSON.stringify(jrt)}`,
      "jump_relu_threshold",
    );
  }
  const avg = o.dataset_average_activation_norm;
  const avgIn = avg && typeof avg === "object" && !Array.isArray(avg)
    ? (avg as Record<string, Json>).in
    : undefined;
  if (typeof avgIn !== "number" || !(avgIn > 0) || !Number.isFinite(avgIn)) {
    throw new ConfigError(
      hpPath,
      `needs a positive "in" norm, got ${JSON.stringify(avg ?? null)}`,
      "dataset_average_activation_norm",
    );
  }
  const hook = opts.hookName ?? o.hook_point_in;
  if (typeof hook !== "string" || !hook) {
    throw new ConfigError(hpPath, "missing (the hook the SAE reads)", "hook_point_in");
  }
  const s = opts.normScalingFactor;
  if (s !== undefined && !(s > 0 && Number.isFinite(s))) {
    throw new ConfigError(hpPath, `norm scaling factor ${s} must be a positive number`);
  }

  const wPath = join(dir, "checkpoints", "final.safetensors");
  using f = await SafetensorsFile.open(wPath);
  const shapes: Record<string, number[]> = {
    "encoder.weight": [dSae, dIn],
    "encoder.bias": [dSae],
    "decoder.weight": [dIn, dSae],
    "decoder.bias": [dIn],
  };
  const raw: Record<string, Float32Array> = {};
  for (const [n, want] of Object.entries(shapes)) {
    if (!f.has(n)) throw new WeightsError(wPath, "missing for a Llama Scope SAE", n);
    const got = f.info(n).shape;
    if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
      throw new WeightsError(
        wPath,
        `shape [${got.join(", ")}], expected [${want.join(", ")}] (d_model ${dIn}, d_sae ${dSae})`,
        n,
      );
    }
    const data = await f.float32(n);
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new WeightsError(wPath, `non-finite value ${data[bad]} at element ${bad}`, n);
    }
    raw[n] = data;
  }
  // SAELens's layout: W_enc [d_in, d_sae] and W_dec [d_sae, d_in] (both stored transposed).
  const k = s ?? 1;
  const wEnc = new Float32Array(dIn * dSae), wDec = new Float32Array(dSae * dIn);
  const enc = raw["encoder.weight"], dec = raw["decoder.weight"];
  for (let j = 0; j < dSae; j++) {
    for (let i = 0; i < dIn; i++) {
      wEnc[i * dSae + j] = enc[j * dIn + i] * k;
      wDec[j * dIn + i] = dec[i * dSae + j] / k;
    }
  }
  const threshold = new Float32Array(dSae).fill(jrt * Math.sqrt(dIn) / avgIn);
  const cfg: SaeConfig = {
    dIn,
    dSae,
    architecture: "jumprelu",
    hookName: hook,
    applyBDecToInput: false,
    normalizeActivations: s === undefined ? "expected_average_only_in" : "none",
    reshapeActivations: "none",
    rescaleActsByDecoderNorm: false,
    modelName: opts.modelName ?? "meta-llama/Llama-3.1-8B",
    dtype: "float32",
  };
  return {
    cfg,
    weights: {
      W_enc: wEnc,
      b_enc: raw["encoder.bias"],
      W_dec: wDec,
      b_dec: raw["decoder.bias"].map((v) => v / k),
      threshold,
    },
  };
}
