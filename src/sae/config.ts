/**
 * SAE configuration: SAELens's `cfg.json`, v6 layout (`metadata.hook_name`, `architecture`) and
 * pre-6.0 flat layout (`hook_point`, `activation_fn_str`, `activation_fn_kwargs.k`, boolean
 * `normalize_activations`), in camelCase.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { saeConfigFromJson } from "./config.ts";
 *
 * const cfg = saeConfigFromJson({
 *   d_in: 64,
 *   d_sae: 256,
 *   architecture: "standard",
 *   metadata: { hook_name: "blocks.1.hook_resid_pre", sae_lens_version: "6.18.0" },
 * }, "cfg.json");
 * assert.equal(cfg.hookName, "blocks.1.hook_resid_pre");
 * assert.equal(cfg.dSae, 256);
 * ```
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { Json } from "../io/json.ts";

/** SAE architectures hooklens runs. */
export type SaeArchitecture = "standard" | "topk" | "jumprelu" | "gated";

/** Run-time input normalisation, as SAELens names it. */
export type NormalizeActivations =
  | "none"
  | "constant_norm_rescale"
  | "layer_norm"
  | "expected_average_only_in";

/** An SAE's configuration. */
export interface SaeConfig {
  /** Input width. */
  dIn: number;
  /** Number of latents. */
  dSae: number;
  /** Architecture. */
  architecture: SaeArchitecture;
  /** Hook point the SAE attaches to, e.g. "blocks.1.hook_resid_pre". */
  hookName: string;
  /** Subtract b_dec from the input before encoding. */
  applyBDecToInput: boolean;
  /** Run-time input normalisation. */
  normalizeActivations: NormalizeActivations;
  /** "hook_z": flatten [.., heads, d_head] to [.., heads * d_head] in, and back out. */
  reshapeActivations: "none" | "hook_z";
  /** Top-k: latents kept per token. */
  k?: number;
  /** Top-k: select on pre-activations scaled by the decoder row norms. */
  rescaleActsByDecoderNorm: boolean;
  /** Model the SAE was trained on (metadata.model_name), if given. */
  modelName?: string;
  /** Stored dtype. */
  dtype: string;
}

const ARCHS: readonly SaeArchitecture[] = ["standard", "topk", "jumprelu", "gated"];
const NORMS: readonly NormalizeActivations[] = [
  "none",
  "constant_norm_rescale",
  "layer_norm",
  "expected_average_only_in",
];

/**
 * Parses SAELens's cfg.json (v6 or pre-6.0).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError } from "../errors.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { saeConfigFromJson } from "./config.ts";
 *
 * const path = "tests/reference/gpt2_tiny/saes/topk_mlp_out0/cfg.json";
 * const cfg = saeConfigFromJson(await readJsonFile(path), path);
 * assert.equal(cfg.architecture, "topk");
 * // A field missing or of the wrong type names the file and the field.
 * assert.throws(() => saeConfigFromJson({ d_in: 64 }, "cfg.json"), ConfigError);
 * ```
 */
export function saeConfigFromJson(j: Json, file: string): SaeConfig {
  if (j === null || typeof j !== "object" || Array.isArray(j)) {
    throw new ConfigError(file, "not a JSON object");
  }
  const o = j as Record<string, Json>;
  const meta = (o.metadata && typeof o.metadata === "object" && !Array.isArray(o.metadata))
    ? o.metadata as Record<string, Json>
    : {};
  const pos = (k: string): number => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new ConfigError(file, `must be a positive integer, got ${JSON.stringify(v)}`, k);
    }
    return v;
  };
  if (typeof o.architecture === "string" && o.architecture.endsWith("transcoder")) {
    throw new ConfigError(
      file,
      `"${o.architecture}" is a transcoder, not an SAE: load it with Transcoder.load`,
      "architecture",
    );
  }
  const str = (v: Json | undefined): string | undefined => (typeof v === "string" ? v : undefined);
  const version = str(o.sae_lens_version) ?? str(meta.sae_lens_version) ?? "";
  const pre6 = !version || Number(version.split(".")[0]) < 6;
  const hook = o.hook_name ?? meta.hook_name ?? o.hook_point ?? meta.hook_point;
  if (typeof hook !== "string" || !hook) {
    throw new ConfigError(
      file,
      "missing hook name (metadata.hook_name, hook_name or hook_point)",
      "hook_name",
    );
  }
  const actFn = str(o.activation_fn) ?? str(o.activation_fn_str) ?? "relu";
  const kwargs = (o.activation_fn_kwargs && typeof o.activation_fn_kwargs === "object")
    ? o.activation_fn_kwargs as Record<string, Json>
    : {};
  if (o.architecture !== undefined && typeof o.architecture !== "string") {
    throw new ConfigError(
      file,
      `must be a string, got ${JSON.stringify(o.architecture)}`,
      "architecture",
    );
  }
  let arch = str(o.architecture) ?? (actFn === "topk" ? "topk" : "standard");
  if (arch === "standard" && actFn === "topk") arch = "topk";
  if (!ARCHS.includes(arch as SaeArchitecture)) {
    throw new ConfigError(
      file,
      `unsupported SAE architecture "${arch}"; supported: ${ARCHS.join(", ")}`,
      "architecture",
    );
  }
  let norm = o.normalize_activations ?? "none";
  if (typeof norm === "boolean") norm = norm ? "expected_average_only_in" : "none";
  if (!NORMS.includes(norm as NormalizeActivations)) {
    throw new ConfigError(
      file,
      `unsupported normalize_activations ${JSON.stringify(norm)}; supported: ${NORMS.join(", ")}`,
      "normalize_activations",
    );
  }
  const reshape = o.reshape_activations ?? (pre6 && hook.endsWith("hook_z") ? "hook_z" : "none");
  if (reshape !== "none" && reshape !== "hook_z") {
    throw new ConfigError(
      file,
      `unsupported reshape_activations ${JSON.stringify(reshape)}`,
      "reshape_activations",
    );
  }
  const kRaw = o.k ?? kwargs.k;
  let k: number | undefined;
  if (arch === "topk") {
    if (typeof kRaw !== "number" || !Number.isInteger(kRaw) || kRaw <= 0) {
      throw new ConfigError(
        file,
        `topk SAE needs a positive integer k, got ${JSON.stringify(kRaw)}`,
        "k",
      );
    }
    k = kRaw;
  }
  const dSae = pos("d_sae");
  if (k !== undefined && k > dSae) throw new ConfigError(file, `k ${k} exceeds d_sae ${dSae}`, "k");
  const modelName = o.model_name ?? meta.model_name;
  return {
    dIn: pos("d_in"),
    dSae,
    architecture: arch as SaeArchitecture,
    hookName: hook,
    applyBDecToInput: o.apply_b_dec_to_input !== false,
    normalizeActivations: norm as NormalizeActivations,
    reshapeActivations: reshape as "none" | "hook_z",
    k,
    rescaleActsByDecoderNorm: o.rescale_acts_by_decoder_norm === true,
    modelName: typeof modelName === "string" ? modelName : undefined,
    dtype: typeof o.dtype === "string" ? o.dtype : "float32",
  };
}
