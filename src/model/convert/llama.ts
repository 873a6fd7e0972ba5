/**
 * Llama-style checkpoints (`LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`) to TransformerLens's layout: separate q/k/v projections (grouped-query K/V as `_W_K`/`_W_V`), optional biases (Qwen2), gated MLP, RMSNorm weights.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { convertLlama } from "./llama.ts";
 *
 * const dir = "tests/reference/rmsgqa_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await convertLlama(ck, cfg);
 * assert.ok(sd.has("blocks.0.attn._W_K")); // grouped-query K/V keep their own heads
 * assert.ok(sd.has("blocks.0.mlp.W_gate"));
 * ```
 * @module
 */
import type { Checkpoint, StateDict } from "../checkpoint.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { checkExtra, checkpointReader, hfAttention, transpose2d, zeros } from "./layout.ts";

/**
 * Converts a Llama, Mistral or Qwen2 checkpoint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { convertLlama } from "./llama.ts";
 *
 * const dir = "tests/reference/rmsgqa_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await convertLlama(ck, cfg);
 * assert.equal(sd.get("blocks.0.attn.W_Q")!.shape[0], cfg.nHeads);
 * ```
 */
export async function convertLlama(
  ck: Checkpoint,
  cfg: HookedTransformerConfig,
): Promise<StateDict> {
  const { used, get, has } = checkpointReader(ck);
  const { dModel: D, dMlp: F, dVocab: V } = cfg;
  const sd: StateDict = new Map();
  sd.set("embed.W_E", await get("model.embed_tokens.weight", [V, D]));
  for (let l = 0; l < cfg.nLayers; l++) {
    const b = `blocks.${l}.`, a = `model.layers.${l}.self_attn.`, m = `model.layers.${l}.mlp.`;
    sd.set(b + "ln1.w", await get(`model.layers.${l}.input_layernorm.weight`, [D]));
    await hfAttention(sd, cfg, b, a, get, has);
    sd.set(b + "ln2.w", await get(`model.layers.${l}.post_attention_layernorm.weight`, [D]));
    sd.set(b + "mlp.W_in", transpose2d(await get(m + "up_proj.weight", [F, D])));
    sd.set(b + "mlp.W_gate", transpose2d(await get(m + "gate_proj.weight", [F, D])));
    sd.set(
      b + "mlp.b_in",
      has(m + "up_proj.bias") ? await get(m + "up_proj.bias", [F]) : zeros([F]),
    );
    sd.set(b + "mlp.W_out", transpose2d(await get(m + "down_proj.weight", [D, F])));
    sd.set(
      b + "mlp.b_out",
      has(m + "down_proj.bias") ? await get(m + "down_proj.bias", [D]) : zeros([D]),
    );
  }
  sd.set("ln_final.w", await get("model.norm.weight", [D]));
  const head = !cfg.tieWordEmbeddings && has("lm_head.weight")
    ? "lm_head.weight"
    : "model.embed_tokens.weight";
  sd.set("unembed.W_U", transpose2d(await get(head, [V, D])));
  sd.set("unembed.b_U", zeros([V]));
  checkExtra(ck, used, /rotary_emb\.inv_freq$|^lm_head\.weight$/);
  return sd;
}
