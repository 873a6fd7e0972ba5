/**
 * Rotary position frequencies, with the rope scalings the supported families use: none,
 * "linear" (positions divided by a factor) and "llama3" (Llama-3.1's NTK-by-parts: long
 * wavelengths divided by `factor`, short ones unchanged, a smooth blend between). Computed in
 * float32 step by step as TransformerLens computes its rotary buffers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ropeScalingFromHf, rotaryFrequencies } from "./rope.ts";
 *
 * const scaling = ropeScalingFromHf({
 *   rope_scaling: {
 *     rope_type: "llama3",
 *     factor: 8,
 *     low_freq_factor: 1,
 *     high_freq_factor: 4,
 *     original_max_position_embeddings: 8192,
 *   },
 * }, "config.json");
 * const freq = rotaryFrequencies(128, 500000, scaling); // angle at position p: p / freq[j]
 * assert.equal(freq.length, 64);
 * assert.equal(freq[0], 1); // the fastest pair is not scaled
 * ```
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { Json } from "../io/json.ts";

/** A rope scaling from a HF config (`rope_scaling` or `rope_parameters`); null means none. */
export type RopeScaling =
  | { ropeType: "linear"; factor: number }
  | {
    ropeType: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  };

/** Rope types hooklens computes ("default" and null mean no scaling). */
export const SUPPORTED_ROPE_TYPES: readonly string[] = ["default", "linear", "llama3"];

/**
 * Reads the rope scaling of a HF `config.json`: the hub's `rope_scaling` object (Llama-3.1's
 * form, `rope_type` or the older `type`) or transformers 5's `rope_parameters`. A rope type
 * hooklens does not compute is refused rather than ignored, since ignoring it gives wrong logits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError } from "../errors.ts";
 * import { ropeScalingFromHf } from "./rope.ts";
 *
 * const linear = ropeScalingFromHf({ rope_scaling: { type: "linear", factor: 2 } }, "config.json");
 * assert.deepEqual(linear, { ropeType: "linear", factor: 2 });
 * assert.equal(ropeScalingFromHf({}, "config.json"), null);
 * // A scaling hooklens does not compute is refused, not ignored.
 * assert.throws(
 *   () => ropeScalingFromHf({ rope_scaling: { rope_type: "yarn", factor: 4 } }, "config.json"),
 *   ConfigError,
 * );
 * ```
 */
export function ropeScalingFromHf(hf: Record<string, Json>, file: string): RopeScaling | null {
  const key = isObject(hf.rope_scaling)
    ? "rope_scaling"
    : isObject(hf.rope_parameters)
    ? "rope_parameters"
    : null;
  if (key === null) {
    if (hf.rope_scaling !== undefined && hf.rope_scaling !== null) {
      throw new ConfigError(file, "must be an object or null", "rope_scaling");
    }
    return null;
  }
  const o = hf[key] as Record<string, Json>;
  const typeKey = o.rope_type !== undefined ? "rope_type" : "type";
  const type = o[typeKey] ?? "default";
  if (typeof type !== "string" || !SUPPORTED_ROPE_TYPES.includes(type)) {
    throw new ConfigError(
      file,
      `unsupported rope type ${JSON.stringify(type)}; hooklens computes ${
        SUPPORTED_ROPE_TYPES.join(", ")
      }, and a model run without its scaling would give wrong results`,
      `${key}.${typeKey}`,
    );
  }
  const num = (field: string, min: number): number => {
    const v = o[field];
    if (typeof v !== "number" || !Number.isFinite(v) || !(v >= min)) {
      throw new ConfigError(
        file,
        `must be a number >= ${min} for rope type "${type}", got ${JSON.stringify(v ?? null)}`,
        `${key}.${field}`,
      );
    }
    return v;
  };
  if (type === "default") return null;
  if (type === "linear") return { ropeType: "linear", factor: num("factor", 1) };
  const s: RopeScaling = {
    ropeType: "llama3",
    factor: num("factor", 1),
    lowFreqFactor: num("low_freq_factor", 0),
    highFreqFactor: num("high_freq_factor", 0),
    originalMaxPositionEmbeddings: num("original_max_position_embeddings", 1),
  };
  if (!(s.highFreqFactor > s.lowFreqFactor) || !(s.lowFreqFactor > 0)) {
    throw new ConfigError(
      file,
      `high_freq_factor ${s.highFreqFactor} must exceed low_freq_factor ${s.lowFreqFactor} > 0`,
      `${key}.high_freq_factor`,
    );
  }
  return s;
}

function isObject(v: Json | undefined): boolean {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * The wavelength divisor of each rotary pair (the angle at position p is `p / freq[j]`), for
 * `rotaryDim / 2` pairs, rounded to float32 at each step as TransformerLens's buffers are.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rotaryFrequencies } from "./rope.ts";
 *
 * const freq = rotaryFrequencies(16, 10000, null); // freq[j] = 10000^(j / 8)
 * assert.equal(freq.length, 8);
 * assert.ok(Math.abs(freq[4] - 100) < 1e-3);
 * ```
 */
export function rotaryFrequencies(
  rotaryDim: number,
  base: number,
  scaling: RopeScaling | null,
): Float64Array {
  const f = Math.fround;
  const half = rotaryDim / 2;
  const freq = new Float64Array(half);
  if (scaling === null) {
    for (let j = 0; j < half; j++) freq[j] = f(base ** f(j / half));
    return freq;
  }
  if (scaling.ropeType === "linear") {
    for (let j = 0; j < half; j++) freq[j] = f(f(base ** f(j / half)) * f(scaling.factor));
    return freq;
  }
  // Llama-3.1 (NTK by parts): inverse frequencies as HF's _compute_llama3_parameters.
  const { factor, lowFreqFactor: lo, highFreqFactor: hi } = scaling;
  const ctx = scaling.originalMaxPositionEmbeddings;
  const lowWavelen = ctx / lo, highWavelen = ctx / hi;
  for (let j = 0; j < half; j++) {
    const inv = f(1 / f(base ** f((2 * j) / rotaryDim)));
    const wavelen = f(f(1 / inv) * f(2 * Math.PI));
    let scaled: number;
    if (wavelen < highWavelen) scaled = inv;
    else if (wavelen > lowWavelen) scaled = f(inv / f(factor));
    else {
      const smooth = f(f(f(f(1 / wavelen) * f(ctx)) - f(lo)) / f(hi - lo));
      scaled = f(f(f(f(1 - smooth) * inv) / f(factor)) + f(smooth * inv));
    }
    freq[j] = f(1 / scaled);
  }
  return freq;
}
