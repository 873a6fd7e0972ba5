/**
 * Gemma Scope's on-disk SAE format: a directory with `params.npz` (`W_enc [d_in, d_sae]`,
 * `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`, `threshold`), a JumpReLU SAE that does not subtract
 * `b_dec` from its input. The file carries no hook name or model: they come from the caller
 * (`{ hookName, modelName }`), else from an optional sidecar `cfg.json` (`hook_name` or
 * `metadata.hook_name`, `model_name`), else from the release registry (`SAE.fromPretrained`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readGemmaScope } from "./gemma_scope.ts";
 *
 * const dir = "tests/reference/gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post";
 * const { cfg, weights } = await readGemmaScope(dir, { hookName: "blocks.1.hook_resid_post" });
 * assert.equal(cfg.architecture, "jumprelu");
 * assert.equal(weights.W_enc.length, 64 * 128); // [d_in, d_sae]
 * ```
 * @module
 */
import { join } from "node:path";
import { ConfigError, WeightsError } from "../errors.ts";
import { type Json, readJsonFile } from "../io/json.ts";
import { NpzFile } from "../io/npz.ts";
import type { SaeConfig } from "./config.ts";

/** The file name that marks a Gemma Scope SAE directory. */
export const GEMMA_SCOPE_FILE = "params.npz";

const ARRAYS = ["W_enc", "W_dec", "b_enc", "b_dec", "threshold"] as const;

/**
 * Reads a Gemma Scope SAE directory into a JumpReLU config and float32 weights (validated:
 * every array present, shapes consistent, values finite).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SAE } from "@hooklens/hooklens";
 * import { readGemmaScope } from "./gemma_scope.ts";
 *
 * const dir = "tests/reference/gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post";
 * const { cfg, weights } = await readGemmaScope(dir, { hookName: "blocks.1.hook_resid_post" });
 * using sae = await SAE.fromWeights(cfg, weights, { source: dir });
 * assert.equal(sae.cfg.dSae, 128);
 * ```
 */
export async function readGemmaScope(
  dir: string,
  opts: { hookName?: string; modelName?: string; embedding?: boolean } = {},
): Promise<{ cfg: SaeConfig; weights: Record<string, Float32Array> }> {
  const path = join(dir, GEMMA_SCOPE_FILE);
  const sidecarPath = join(dir, "cfg.json");
  let side: Record<string, Json> = {};
  if (await Deno.stat(sidecarPath).then((s) => s.isFile).catch(() => false)) {
    const j = await readJsonFile(sidecarPath);
    if (j === null || typeof j !== "object" || Array.isArray(j)) {
      throw new ConfigError(sidecarPath, "not a JSON object");
    }
    side = j as Record<string, Json>;
  }
  const meta = side.metadata && typeof side.metadata === "object" && !Array.isArray(side.metadata)
    ? side.metadata as Record<string, Json>
    : {};
  const hook = opts.hookName ?? side.hook_name ?? meta.hook_name ?? side.hook_point;
  if (typeof hook !== "string" || !hook) {
    throw new ConfigError(
      path,
      'Gemma Scope params.npz names no hook: pass { hookName: "blocks.N.hook_resid_post" } ' +
        "(the hook it was trained on), put a cfg.json with hook_name beside it, or load it by " +
        "release name with SAE.fromPretrained",
      "hook_name",
    );
  }
  const model = opts.modelName ?? side.model_name ?? meta.model_name;
  const npz = await NpzFile.open(path);
  // Some releases spell the matrices w_enc / w_dec (SAELens's loader renames them too).
  const stored = (
    n: string,
  ): string => (!npz.has(n) && npz.has(n.toLowerCase()) ? n.toLowerCase() : n);
  const missing = ARRAYS.filter((n) => !npz.has(stored(n)));
  if (missing.length) {
    throw new WeightsError(path, `missing ${missing.join(", ")} for a Gemma Scope SAE`, missing[0]);
  }
  const extra = npz.names().filter((n) => !ARRAYS.some((a) => stored(a) === n));
  if (extra.length) {
    throw new WeightsError(path, `unexpected arrays ${extra.join(", ")}`, extra[0]);
  }
  const encShape = (await npz.info(stored("W_enc"))).shape;
  if (encShape.length !== 2 || encShape[0] < 1 || encShape[1] < 1) {
    throw new WeightsError(path, `shape (${encShape.join(", ")}), expected (d_in, d_sae)`, "W_enc");
  }
  const [dIn, dSae] = encShape;
  const want: Record<string, number[]> = {
    W_enc: [dIn, dSae],
    W_dec: [dSae, dIn],
    b_enc: [dSae],
    b_dec: [dIn],
    threshold: [dSae],
  };
  for (const [field, v] of [["d_in", dIn], ["d_sae", dSae]] as const) {
    if (side[field] !== undefined && side[field] !== v) {
      throw new ConfigError(
        sidecarPath,
        `says ${JSON.stringify(side[field])}, but params.npz's W_enc has ${v}`,
        field,
      );
    }
  }
  const weights: Record<string, Float32Array> = {};
  for (const n of ARRAYS) {
    const shape = (await npz.info(stored(n))).shape;
    if (shape.length !== want[n].length || shape.some((d, i) => d !== want[n][i])) {
      throw new WeightsError(
        path,
        `shape (${shape.join(", ")}), expected (${
          want[n].join(", ")
        }) (d_in ${dIn}, d_sae ${dSae})`,
        n,
      );
    }
    const data = await npz.float32(stored(n));
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new WeightsError(path, `non-finite value ${data[bad]} at element ${bad}`, n);
    }
    weights[n] = data;
  }
  if (opts.embedding) {
    // SAELens rescales Gemma Scope's embedding SAEs on load (W_enc / sqrt(d_in), W_dec *
    // sqrt(d_in)) for the scale of TransformerLens's hook_embed; hooklens does the same.
    const s = Math.sqrt(dIn);
    weights.W_enc = weights.W_enc.map((v) => v / s);
    weights.W_dec = weights.W_dec.map((v) => v * s);
  }
  const cfg: SaeConfig = {
    dIn,
    dSae,
    architecture: "jumprelu",
    hookName: hook,
    applyBDecToInput: false,
    normalizeActivations: "none",
    reshapeActivations: hook.endsWith("hook_z") ? "hook_z" : "none",
    rescaleActsByDecoderNorm: false,
    modelName: typeof model === "string" && model ? model : undefined,
    dtype: "float32",
  };
  return { cfg, weights };
}
