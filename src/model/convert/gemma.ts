/**
 * Gemma checkpoints (`GemmaForCausalLM`, `Gemma2ForCausalLM`) to TransformerLens's layout, as its
 * `convert_gemma_weights`: W_E is the embedding times sqrt(d_model) (so `hook_embed` is after
 * the scaling), W_U the unscaled embedding transposed (tied; `lm_head.weight` when untied), every
 * RMSNorm weight stored as `w - 1` becomes `1 + w`, zero biases where the checkpoint has none.
 * Gemma-2's four norms per block are `ln1` (input_layernorm), `ln1_post`
 * (post_attention_layernorm), `ln2` (pre_feedforward_layernorm) and `ln2_post`
 * (post_feedforward_layernorm); Gemma-1's `post_attention_layernorm` is its `ln2`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { convertGemma } from "./gemma.ts";
 *
 * const dir = "tests/reference/gemma2_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await convertGemma(ck, cfg);
 * assert.ok(sd.has("blocks.0.ln1_post.w")); // Gemma-2's post-attention norm
 * ```
 * @module
 */
import type { Checkpoint, CpuTensor, StateDict } from "../checkpoint.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { checkExtra, checkpointReader, hfAttention, transpose2d, zeros } from "./layout.ts";

/** `1 + w` in float32 (Gemma's RMSNorm multiplies by 1 + w). */
function onePlus(t: CpuTensor): CpuTensor {
  return { shape: t.shape, data: t.data.map((x) => x + 1) };
}

/**
 * Converts a Gemma or Gemma-2 checkpoint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { convertGemma } from "./gemma.ts";
 *
 * const dir = "tests/reference/gemma2_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await convertGemma(ck, cfg);
 * // Tied: W_U is the (unscaled) embedding transposed.
 * assert.deepEqual(sd.get("unembed.W_U")!.shape, [cfg.dModel, cfg.dVocab]);
 * ```
 */
export async function convertGemma(
  ck: Checkpoint,
  cfg: HookedTransformerConfig,
): Promise<StateDict> {
  const { used, get, has } = checkpointReader(ck);
  const { dModel: D, dMlp: F, dVocab: V } = cfg;
  const v2 = cfg.useNormalizationBeforeAndAfter;
  const sd: StateDict = new Map();
  const embed = await get("model.embed_tokens.weight", [V, D]);
  // As TransformerLens: the float32 product with the float32 sqrt(d_model).
  const norm = Math.fround(Math.sqrt(D));
  sd.set("embed.W_E", { shape: [V, D], data: embed.data.map((x) => x * norm) });
  const normW = async (n: string) => onePlus(await get(n, [D]));
  for (let l = 0; l < cfg.nLayers; l++) {
    const b = `blocks.${l}.`, L = `model.layers.${l}.`;
    const a = L + "self_attn.", m = L + "mlp.";
    sd.set(b + "ln1.w", await normW(L + "input_layernorm.weight"));
    await hfAttention(sd, cfg, b, a, get, has);
    if (v2) {
      sd.set(b + "ln1_post.w", await normW(L + "post_attention_layernorm.weight"));
      sd.set(b + "ln2.w", await normW(L + "pre_feedforward_layernorm.weight"));
      sd.set(b + "ln2_post.w", await normW(L + "post_feedforward_layernorm.weight"));
    } else {
      sd.set(b + "ln2.w", await normW(L + "post_attention_layernorm.weight"));
    }
    sd.set(b + "mlp.W_in", transpose2d(await get(m + "up_proj.weight", [F, D])));
    sd.set(b + "mlp.W_gate", transpose2d(await get(m + "gate_proj.weight", [F, D])));
    sd.set(b + "mlp.b_in", zeros([F]));
    sd.set(b + "mlp.W_out", transpose2d(await get(m + "down_proj.weight", [D, F])));
    sd.set(b + "mlp.b_out", zeros([D]));
  }
  sd.set("ln_final.w", await normW("model.norm.weight"));
  const head = !cfg.tieWordEmbeddings && has("lm_head.weight")
    ? get("lm_head.weight", [V, D])
    : embed;
  sd.set("unembed.W_U", transpose2d(await head));
  sd.set("unembed.b_U", zeros([V]));
  checkExtra(ck, used, /rotary_emb\.inv_freq$|^lm_head\.weight$/);
  return sd;
}
