/**
 * GPT-NeoX / Pythia (`GPTNeoXForCausalLM`) checkpoints to TransformerLens's layout: the fused per-head query_key_value split into W_Q, W_K, W_V, LayerNorms with biases, untied embed_out.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { convertNeox } from "./neox.ts";
 *
 * const dir = "tests/reference/neox_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await convertNeox(ck, cfg);
 * assert.ok(sd.has("blocks.0.ln1.b")); // LayerNorms with biases
 * ```
 * @module
 */
import type { Checkpoint, StateDict } from "../checkpoint.ts";
import type { HookedTransformerConfig } from "../config.ts";
import {
  checkExtra,
  checkpointReader,
  linearToHeads,
  linearToWO,
  transpose2d,
  zeros,
} from "./layout.ts";

/**
 * Converts a GPT-NeoX checkpoint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { convertNeox } from "./neox.ts";
 *
 * const dir = "tests/reference/neox_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await convertNeox(ck, cfg);
 * assert.deepEqual(sd.get("blocks.0.attn.W_V")!.shape, [cfg.nHeads, cfg.dModel, cfg.dHead]);
 * ```
 */
export async function convertNeox(
  ck: Checkpoint,
  cfg: HookedTransformerConfig,
): Promise<StateDict> {
  const { used, get } = checkpointReader(ck);
  const { dModel: D, nHeads: H, dHead: E, dMlp: F, dVocab: V } = cfg;
  const sd: StateDict = new Map();
  sd.set("embed.W_E", await get("gpt_neox.embed_in.weight", [V, D]));
  for (let l = 0; l < cfg.nLayers; l++) {
    const b = `blocks.${l}.`, p = `gpt_neox.layers.${l}.`;
    sd.set(b + "ln1.w", await get(p + "input_layernorm.weight", [D]));
    sd.set(b + "ln1.b", await get(p + "input_layernorm.bias", [D]));
    // Fused QKV, per head: rows (head, qkv, d_head) -> "(i qkv h) m -> qkv i m h".
    const w = await get(p + "attention.query_key_value.weight", [3 * H * E, D]);
    const bias = await get(p + "attention.query_key_value.bias", [3 * H * E]);
    ["Q", "K", "V"].forEach((q, j) => {
      sd.set(b + `attn.W_${q}`, linearToHeads(w, H, E, j * E, 3));
      const bq = new Float32Array(H * E);
      for (let i = 0; i < H; i++) {
        for (let h = 0; h < E; h++) bq[i * E + h] = bias.data[(i * 3 + j) * E + h];
      }
      sd.set(b + `attn.b_${q}`, { shape: [H, E], data: bq });
    });
    sd.set(b + "attn.W_O", linearToWO(await get(p + "attention.dense.weight", [D, H * E]), H, E));
    sd.set(b + "attn.b_O", await get(p + "attention.dense.bias", [D]));
    sd.set(b + "ln2.w", await get(p + "post_attention_layernorm.weight", [D]));
    sd.set(b + "ln2.b", await get(p + "post_attention_layernorm.bias", [D]));
    sd.set(b + "mlp.W_in", transpose2d(await get(p + "mlp.dense_h_to_4h.weight", [F, D])));
    sd.set(b + "mlp.b_in", await get(p + "mlp.dense_h_to_4h.bias", [F]));
    sd.set(b + "mlp.W_out", transpose2d(await get(p + "mlp.dense_4h_to_h.weight", [D, F])));
    sd.set(b + "mlp.b_out", await get(p + "mlp.dense_4h_to_h.bias", [D]));
  }
  sd.set("ln_final.w", await get("gpt_neox.final_layer_norm.weight", [D]));
  sd.set("ln_final.b", await get("gpt_neox.final_layer_norm.bias", [D]));
  sd.set("unembed.W_U", transpose2d(await get("embed_out.weight", [V, D])));
  sd.set("unembed.b_U", zeros([V]));
  checkExtra(ck, used, /attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/);
  return sd;
}
