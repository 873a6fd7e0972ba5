/**
 * Reading a Hugging Face checkpoint (`model.safetensors`, or `model.safetensors.index.json` plus
 * shards; F32/F16/BF16) and converting it to TransformerLens's state dict layout on the CPU
 * (W_Q [heads, d_model, d_head], W_O [heads, d_head, d_model], W_in [d_model, d_mlp], ...).
 *
 * @example
 * ```ts
 * import { loadStateDict } from "./weights.ts";
 * const sd = await loadStateDict("tests/reference/gpt2_tiny/hf", cfg);
 * console.log(sd.get("blocks.0.attn.W_Q")!.shape); // [4, 64, 16]
 * ```
 * @module
 */
import { join } from "node:path";
import { WeightsError } from "../errors.ts";
import { readJsonFile } from "../io/json.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import type { HookedTransformerConfig } from "./config.ts";

/** A CPU tensor: shape and float32 data. */
export interface CpuTensor {
  /** Dimensions. */
  shape: number[];
  /** Row-major data. */
  data: Float32Array;
}

/** A TransformerLens-layout state dict on the CPU. */
export type StateDict = Map<string, CpuTensor>;

/** Tensors of a (possibly sharded) checkpoint by name. */
export interface Checkpoint extends Disposable {
  /** Directory or file it came from. */
  readonly source: string;
  /** Every tensor name. */
  names(): string[];
  /** Shape of a tensor. */
  shape(name: string): readonly number[];
  /** A tensor as float32. */
  float32(name: string): Promise<Float32Array>;
  /** The file holding a tensor (the checkpoint's main file for absent ones). */
  file(name: string): string;
}

/**
 * Opens `dir/model.safetensors` or `dir/model.safetensors.index.json` with its shards.
 *
 * @example
 * ```ts
 * using ck = await openCheckpoint("model_dir");
 * ```
 */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const single = join(dir, "model.safetensors");
  const index = join(dir, "model.safetensors.index.json");
  const files = new Map<string, SafetensorsFile>();
  const where = new Map<string, SafetensorsFile>();
  const exists = async (p: string) => {
    try {
      return (await Deno.stat(p)).isFile;
    } catch {
      return false;
    }
  };
  try {
    if (await exists(single)) {
      const f = await SafetensorsFile.open(single);
      files.set(single, f);
      for (const n of f.names()) where.set(n, f);
    } else if (await exists(index)) {
      const idx = await readJsonFile(index);
      const map = idx && typeof idx === "object" && !Array.isArray(idx)
        ? (idx as Record<string, unknown>).weight_map
        : undefined;
      if (!map || typeof map !== "object" || Array.isArray(map)) {
        throw new WeightsError(index, "no weight_map object", "weight_map");
      }
      for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
        if (
          typeof shard !== "string" || !shard || shard.includes("/") || shard.includes("\\") ||
          shard.startsWith(".")
        ) {
          throw new WeightsError(
            index,
            `shard ${JSON.stringify(shard)} is not a file name in the directory`,
            name,
          );
        }
        const path = join(dir, shard);
        let f = files.get(path);
        if (!f) {
          f = await SafetensorsFile.open(path);
          files.set(path, f);
        }
        if (!f.has(name)) {
          throw new WeightsError(path, "listed in the index but not in the shard", name);
        }
        where.set(name, f);
      }
    } else {
      throw new WeightsError(
        dir,
        "no model.safetensors or model.safetensors.index.json in the directory",
      );
    }
  } catch (e) {
    for (const f of files.values()) f.close();
    throw e;
  }
  return {
    source: dir,
    names: () => [...where.keys()],
    shape: (n) => where.get(n)!.info(n).shape,
    float32: (n) => where.get(n)!.float32(n),
    file: (n) =>
      where.get(n)?.path ??
        (files.size === 1 ? [...files.keys()][0] : join(dir, "model.safetensors.index.json")),
    [Symbol.dispose]: () => {
      for (const f of files.values()) f.close();
    },
  };
}

/** Reads a tensor, checking shape and finiteness. */
async function read(ck: Checkpoint, name: string, shape: number[]): Promise<CpuTensor> {
  if (!ck.names().includes(name)) {
    throw new WeightsError(
      ck.file(name),
      "missing tensor; is config.json for the same model?",
      name,
    );
  }
  const got = ck.shape(name);
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new WeightsError(
      ck.file(name),
      `shape [${got.join(", ")}], expected [${shape.join(", ")}]`,
      name,
    );
  }
  const data = await ck.float32(name);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new WeightsError(ck.file(name), `non-finite value ${data[i]} at element ${i}`, name);
    }
  }
  return { shape, data };
}

/** [rows, cols] -> [cols, rows]. */
export function transpose2d(t: CpuTensor): CpuTensor {
  const [r, c] = t.shape;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = t.data[i * c + j];
  return { shape: [c, r], data: out };
}

/** Columns [c0, c0 + n) of a [rows, cols] matrix, as [heads, rows, dHead] ("m (h d) -> h m d"). */
function splitHeadsIn(t: CpuTensor, c0: number, heads: number, dHead: number): CpuTensor {
  const [rows, cols] = t.shape;
  const out = new Float32Array(heads * rows * dHead);
  for (let h = 0; h < heads; h++) {
    for (let m = 0; m < rows; m++) {
      for (let d = 0; d < dHead; d++) {
        out[(h * rows + m) * dHead + d] = t.data[m * cols + c0 + h * dHead + d];
      }
    }
  }
  return { shape: [heads, rows, dHead], data: out };
}

function slice1d(t: CpuTensor, start: number, n: number, shape: number[]): CpuTensor {
  return { shape, data: t.data.slice(start, start + n) };
}

function zeros(shape: number[]): CpuTensor {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}

/** Fails on tensors the converter did not use (a different model, or a corrupted file). */
function checkExtra(ck: Checkpoint, used: Set<string>, ignore: RegExp): void {
  const extra = ck.names().filter((n) => !used.has(n) && !ignore.test(n));
  if (extra.length) {
    throw new WeightsError(
      ck.file(extra[0]),
      `unexpected tensors for this architecture: ${extra.slice(0, 8).join(", ")}` +
        (extra.length > 8 ? ` and ${extra.length - 8} more` : "") +
        "; is config.json for the same model?",
      extra[0],
    );
  }
}

async function gpt2(ck: Checkpoint, cfg: HookedTransformerConfig): Promise<StateDict> {
  const p = ck.names().some((n) => n.startsWith("transformer.")) ? "transformer." : "";
  const used = new Set<string>();
  const get = (n: string, shape: number[]) => (used.add(p + n), read(ck, p + n, shape));
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
    sd.set("unembed.W_U", transpose2d(await read(ck, "lm_head.weight", [V, D])));
  } else {
    sd.set("unembed.W_U", transpose2d(sd.get("embed.W_E")!));
  }
  sd.set("unembed.b_U", zeros([V]));
  checkExtra(ck, used, /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/);
  return sd;
}

/** [rows = heads * dHead, cols] (a torch Linear weight) as [heads, cols, dHead] ("(n h) m -> n m h"). */
function linearToHeads(
  t: CpuTensor,
  heads: number,
  dHead: number,
  rowOffset = 0,
  rowStride = 1,
): CpuTensor {
  const cols = t.shape[1];
  const out = new Float32Array(heads * cols * dHead);
  for (let n = 0; n < heads; n++) {
    for (let h = 0; h < dHead; h++) {
      const row = rowOffset + (n * rowStride) * dHead + h;
      for (let m = 0; m < cols; m++) out[(n * cols + m) * dHead + h] = t.data[row * cols + m];
    }
  }
  return { shape: [heads, cols, dHead], data: out };
}

/** A torch Linear weight [out = D, in = heads * dHead] as W_O [heads, dHead, D] ("m (n h) -> n h m"). */
function linearToWO(t: CpuTensor, heads: number, dHead: number): CpuTensor {
  const [D, inner] = t.shape;
  const out = new Float32Array(heads * dHead * D);
  for (let m = 0; m < D; m++) {
    for (let i = 0; i < inner; i++) out[i * D + m] = t.data[m * inner + i];
  }
  return { shape: [heads, dHead, D], data: out };
}

async function llama(ck: Checkpoint, cfg: HookedTransformerConfig): Promise<StateDict> {
  const used = new Set<string>();
  const get = (n: string, shape: number[]) => (used.add(n), read(ck, n, shape));
  const has = (n: string) => ck.names().includes(n);
  const { dModel: D, nHeads: H, dHead: E, dMlp: F, dVocab: V } = cfg;
  const Hkv = cfg.nKeyValueHeads ?? H;
  const kv = cfg.nKeyValueHeads ? "_" : "";
  const sd: StateDict = new Map();
  sd.set("embed.W_E", await get("model.embed_tokens.weight", [V, D]));
  for (let l = 0; l < cfg.nLayers; l++) {
    const b = `blocks.${l}.`, a = `model.layers.${l}.self_attn.`, m = `model.layers.${l}.mlp.`;
    sd.set(b + "ln1.w", await get(`model.layers.${l}.input_layernorm.weight`, [D]));
    sd.set(b + "attn.W_Q", linearToHeads(await get(a + "q_proj.weight", [H * E, D]), H, E));
    sd.set(
      b + `attn.${kv}W_K`,
      linearToHeads(await get(a + "k_proj.weight", [Hkv * E, D]), Hkv, E),
    );
    sd.set(
      b + `attn.${kv}W_V`,
      linearToHeads(await get(a + "v_proj.weight", [Hkv * E, D]), Hkv, E),
    );
    const bias = async (n: string, heads: number) =>
      has(a + n)
        ? { shape: [heads, E], data: (await get(a + n, [heads * E])).data }
        : zeros([heads, E]);
    sd.set(b + "attn.b_Q", await bias("q_proj.bias", H));
    sd.set(b + `attn.${kv}b_K`, await bias("k_proj.bias", Hkv));
    sd.set(b + `attn.${kv}b_V`, await bias("v_proj.bias", Hkv));
    sd.set(b + "attn.W_O", linearToWO(await get(a + "o_proj.weight", [D, H * E]), H, E));
    sd.set(b + "attn.b_O", has(a + "o_proj.bias") ? await get(a + "o_proj.bias", [D]) : zeros([D]));
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

async function neox(ck: Checkpoint, cfg: HookedTransformerConfig): Promise<StateDict> {
  const used = new Set<string>();
  const get = (n: string, shape: number[]) => (used.add(n), read(ck, n, shape));
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

/**
 * Loads a checkpoint directory into a TransformerLens-layout state dict (unprocessed).
 *
 * @example
 * ```ts
 * const sd = await loadStateDict(dir, cfg);
 * ```
 */
export async function loadStateDict(dir: string, cfg: HookedTransformerConfig): Promise<StateDict> {
  using ck = await openCheckpoint(dir);
  switch (cfg.originalArchitecture) {
    case "GPT2LMHeadModel":
      return await gpt2(ck, cfg);
    case "GPTNeoXForCausalLM":
      return await neox(ck, cfg);
    default:
      return await llama(ck, cfg);
  }
}
