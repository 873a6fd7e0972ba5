/**
 * Reading a Hugging Face checkpoint (`model.safetensors`, or `model.safetensors.index.json` plus
 * shards; F32/F16/BF16) and converting it to TransformerLens's state dict layout on the CPU
 * (W_Q [heads, d_model, d_head], W_O [heads, d_head, d_model], W_in [d_model, d_mlp], ...).
 * Reading is in `checkpoint.ts`, the conversion of each family in `convert/`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { loadStateDict } from "./weights.ts";
 *
 * const dir = "tests/reference/gpt2_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * const sd = await loadStateDict(dir, cfg);
 * assert.deepEqual(sd.get("blocks.0.attn.W_Q")!.shape, [4, 64, 16]); // [heads, d_model, d_head]
 * ```
 * @module
 */
import { openCheckpoint, type StateDict } from "./checkpoint.ts";
import type { HookedTransformerConfig } from "./config.ts";
import { converterFor } from "./convert/index.ts";

export { openCheckpoint } from "./checkpoint.ts";
export type { Checkpoint, CpuTensor, StateDict } from "./checkpoint.ts";
export { transpose2d } from "./convert/layout.ts";

/**
 * Loads a checkpoint directory into a TransformerLens-layout state dict (unprocessed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { loadStateDict } from "./weights.ts";
 *
 * const dir = "tests/reference/gpt2_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * const sd = await loadStateDict(dir, cfg);
 * assert.deepEqual(sd.get("unembed.W_U")!.shape, [64, 1000]); // [d_model, d_vocab]
 * ```
 */
export async function loadStateDict(dir: string, cfg: HookedTransformerConfig): Promise<StateDict> {
  using ck = await openCheckpoint(dir);
  return await converterFor(cfg.originalArchitecture)(ck, cfg);
}
