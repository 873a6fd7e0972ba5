/**
 * Weight conversion per model family: an HF checkpoint to TransformerLens's state dict layout
 * (W_Q [heads, d_model, d_head], W_O [heads, d_head, d_model], W_in [d_model, d_mlp], ...). A new
 * family is one new file here and one entry in {@link CONVERTERS}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { converterFor } from "./index.ts";
 *
 * const dir = "tests/reference/neox_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await converterFor(cfg.originalArchitecture)(ck, cfg); // GPTNeoXForCausalLM
 * assert.ok(sd.has("embed.W_E"));
 * ```
 * @module
 */
import type { Checkpoint, StateDict } from "../checkpoint.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { convertGemma } from "./gemma.ts";
import { convertGpt2 } from "./gpt2.ts";
import { convertLlama } from "./llama.ts";
import { convertNeox } from "./neox.ts";

/** Reads a checkpoint of one family into a TransformerLens-layout state dict. */
export type Converter = (ck: Checkpoint, cfg: HookedTransformerConfig) => Promise<StateDict>;

/**
 * The converter of each supported HF architecture.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { convertGpt2 } from "./gpt2.ts";
 * import { CONVERTERS } from "./index.ts";
 *
 * assert.equal(CONVERTERS["GPT2LMHeadModel"], convertGpt2);
 * ```
 */
export const CONVERTERS: Readonly<Record<string, Converter>> = {
  GPT2LMHeadModel: convertGpt2,
  LlamaForCausalLM: convertLlama,
  MistralForCausalLM: convertLlama,
  Qwen2ForCausalLM: convertLlama,
  GPTNeoXForCausalLM: convertNeox,
  GemmaForCausalLM: convertGemma,
  Gemma2ForCausalLM: convertGemma,
};

/**
 * The converter for an architecture. (The config check has already refused unsupported ones;
 * anything else is read as Llama-style, as before the split.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { converterFor } from "./index.ts";
 * import { convertLlama } from "./llama.ts";
 *
 * assert.equal(converterFor("LlamaForCausalLM"), convertLlama);
 * assert.equal(converterFor("Qwen2ForCausalLM"), convertLlama);
 * ```
 */
export function converterFor(architecture: string): Converter {
  return CONVERTERS[architecture] ?? convertLlama;
}
