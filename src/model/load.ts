/**
 * Loading a model's parts from a local HF directory or a hub id: config, TransformerLens-layout
 * state dict (processed as TransformerLens's defaults unless told otherwise) and tokenizer. The
 * GPU upload happens when the model is made from them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPretrained } from "./load.ts";
 *
 * const { cfg, sd, tokenizer } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * assert.deepEqual(sd.get("blocks.0.attn.W_Q")?.shape, [4, 64, 16]); // [heads, d_model, d_head]
 * assert.equal(cfg.nLayers, 2);
 * assert.equal(tokenizer, null); // this folder has no tokenizer.json
 * ```
 * @module
 */
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { initRuntime } from "../gpu/runtime.ts";
import { hubModelDir, isHubId } from "../io/hub.ts";
import { readJsonFile } from "../io/json.ts";
import { HfTokenizer } from "../io/tokenizer.ts";
import type { StateDict } from "./checkpoint.ts";
import { configFromHf, type HookedTransformerConfig } from "./config.ts";
import type { LoadOptions } from "./options.ts";
import { processWeights } from "./processing.ts";
import { loadStateDict } from "./weights.ts";

/**
 * A local directory as it is, or a hub id ("org/name") downloaded into the local cache.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError } from "../errors.ts";
 * import { resolveSource } from "./load.ts";
 *
 * assert.equal(await resolveSource("tests/reference/gpt2_tiny/hf"), "tests/reference/gpt2_tiny/hf");
 * await assert.rejects(resolveSource("no such dir"), ConfigError); // neither a folder nor org/name
 * ```
 *
 * @example A hub id (not run as a doc test: it needs the network)
 * ```
 * const dir = await resolveSource("openai-community/gpt2");
 * ```
 */
export async function resolveSource(source: string, revision?: string): Promise<string> {
  const local = await Deno.stat(source).then((s) => s.isDirectory).catch(() => false);
  if (local) return source;
  if (isHubId(source)) return await hubModelDir(source, { revision });
  throw new ConfigError(source, "no such model directory (and not a hub id: name or org/name)");
}

/** What a model is made from. */
export interface PretrainedParts {
  /** The configuration (after weight processing). */
  cfg: HookedTransformerConfig;
  /** The processed state dict. */
  sd: StateDict;
  /** The tokenizer, if the directory has one. */
  tokenizer: HfTokenizer | null;
}

/**
 * Reads config, weights and tokenizer, and applies the weight processing `opts` asks for
 * (default: TransformerLens's fold_ln, center_writing_weights, center_unembed,
 * fold_value_biases).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPretrained } from "./load.ts";
 *
 * const parts = await loadPretrained("tests/reference/gpt2_tiny/hf", { foldLn: false });
 * assert.equal(parts.cfg.normalizationType, "LN"); // not folded into "LNPre"
 * ```
 */
export async function loadPretrained(
  source: string,
  opts: LoadOptions,
): Promise<PretrainedParts> {
  await initRuntime();
  const id = source;
  source = await resolveSource(source, opts.revision);
  opts.onProgress?.(`reading ${source}`);
  const cfgFile = join(source, "config.json");
  let cfg = configFromHf(await readJsonFile(cfgFile), cfgFile);
  const name = opts.modelName ?? (source !== id ? id : cfg.modelName);
  cfg = { ...cfg, modelName: name };
  const sd = await loadStateDict(source, cfg);
  opts.onProgress?.("processing weights");
  cfg = processWeights(sd, cfg, {
    foldLn: opts.foldLn ?? true,
    centerWritingWeights: opts.centerWritingWeights ?? true,
    centerUnembed: opts.centerUnembed ?? true,
    foldValueBiases: opts.foldValueBiases ?? true,
  });
  opts.onProgress?.("uploading weights");
  const tokenizer = await HfTokenizer.load(source);
  return { cfg, sd, tokenizer };
}
