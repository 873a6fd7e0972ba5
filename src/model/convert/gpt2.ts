/**
 * GPT-2 (`GPT2LMHeadModel`) checkpoints to TransformerLens's layout: Conv1D weights [in, out], the fused c_attn split into W_Q, W_K, W_V, W_U tied to W_E unless an lm_head is given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { convertGpt2 } from "./gpt2.ts";
 *
 * const dir = "tests/reference/gpt2_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await convertGpt2(ck, cfg);
 * assert.deepEqual(sd.get("blocks.0.attn.W_K")!.shape, [4, 64, 16]); // split out of c_attn
 * ```
 * @module
 */
import { type Checkpoint, readTensor, type StateDict } from "../checkpoint.ts";
import type { HookedTransformerConfig } from "../config.ts";
import {
  checkExtra,
  checkpointReader,
  slice1d,
  splitHeadsIn,
  transpose2d,
  zeros,
} from "./layout.ts";

/**
 * Converts a GPT-2 checkpoint (weights with or without the `transformer.` prefix).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { openCheckpoint } from "../checkpoint.ts";
 * import { configFromHf } from "../config.ts";
 * import { convertGpt2 } from "./gpt2.ts";
 *
 * const dir = "tests/reference/gpt2_tiny/hf";
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * using ck = await openCheckpoint(dir);
 * const sd = await convertGpt2(ck, cfg);
 * // No lm_head in the checkpoint: W_U is W_E transposed (tied).
 * assert.deepEqual(sd.get("unembed.W_U")!.shape, [64, 1000]);
 * ```
 */
export async function convertGpt2(
  ck: Checkpoint,
  cfg: HookedTransformerConfig,
): Promise<StateDict> {
  const p = ck.names().some((n) => n.startsWith("transformer.")) ? "transformer." : "";
  const { used, get } = checkpointReader(ck, p);
  const { dModel: D, nHeads: H, dHead: E, dMlp: F, dVocab: V, nCtx } = cfg;
  const sd: StateDict = new Map();
  sd.set("embed.W_E", await get("wte.weight", [V, D]));
  sd.set("pos_embed.W_pos", await get("wpe.weight", [nCtx, D]));
  for (let l = 0; l < cfg.nLayers; l++) {
    const b = `blocks.${l}.`;
    sd.set(b + "ln1.w", await get(`h.${l}.ln_1.weight`, [D]));
    sd.set(b + "ln1.b", await get(`h.${l}.ln_1.bias`, [D]));
    const w = await get(`h.${l}.attn.c_attn.weight`, [D, 3 * H * E]);
    const bias = await get(`h.${l}.attn.c_attn.bias`, [3 * H * E]);
    ["Q", "K", "V"].forEach((q, i) => {
      sd.set(b + `attn.W_${q}`, splitHeadsIn(w, i * H * E, H, E));
      sd.set(b + `attn.b_${q}`, slice1d(bias, i * H * E, H * E, [H, E]));
    });
    const wo = await get(`h.${l}.attn.c_proj.weight`, [H * E, D]);
    sd.set(b + "attn.W_O", { shape: [H, E, D], data: wo.data });
    sd.set(b + "attn.b_O", await get(`h.${l}.attn.c_proj.bias`, [D]));
    sd.set(b + "ln2.w", await get(`h.${l}.ln_2.weight`, [D]));
    sd.set(b + "ln2.b", await get(`h.${l}.ln_2.bias`, [D]));
    sd.set(b + "mlp.W_in", await get(`h.${l}.mlp.c_fc.weight`, [D, F]));
    sd.set(b + "mlp.b_in", await get(`h.${l}.mlp.c_fc.bias`, [F]));
    sd.set(b + "mlp.W_out", await get(`h.${l}.mlp.c_proj.weight`, [F, D]));
    sd.set(b + "mlp.b_out", await get(`h.${l}.mlp.c_proj.bias`, [D]));
  }
  sd.set("ln_final.w", await get("ln_f.weight", [D]));
  sd.set("ln_final.b", await get("ln_f.bias", [D]));
  const head = ck.names().includes("lm_head.weight");
  if (head) used.add("lm_head.weight");
  if (!cfg.tieWordEmbeddings && head) {
    sd.set("unembed.W_U", transpose2d(await readTensor(ck, "lm_head.weight", [V, D])));
  } else {
    sd.set("unembed.W_U", transpose2d(sd.get("embed.W_E")!));
  }
  sd.set("unembed.b_U", zeros([V]));
  checkExtra(ck, used, /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/);
  return sd;
}
