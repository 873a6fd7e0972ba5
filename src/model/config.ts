/**
 * HookedTransformerConfig: TransformerLens's config in camelCase, built from a Hugging Face
 * `config.json`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configFromHf } from "./config.ts";
 *
 * const cfg = configFromHf({
 *   architectures: ["GPT2LMHeadModel"],
 *   n_embd: 64,
 *   n_layer: 2,
 *   n_head: 4,
 *   vocab_size: 1000,
 *   n_positions: 64,
 * }, "config.json");
 * assert.equal(cfg.dHead, 16);
 * ```
 * @module
 */
import { ConfigError } from "../errors.ts";
import type { Json } from "../io/json.ts";
import { type RopeScaling, ropeScalingFromHf } from "./rope.ts";

/** Normalisation as TransformerLens names it (LNPre/RMSPre once weights are folded). */
export type NormalizationType = "LN" | "LNPre" | "RMS" | "RMSPre";

/** The model's hyperparameters, as TransformerLens's HookedTransformerConfig (camelCase). */
export interface HookedTransformerConfig {
  /** Residual stream width. */
  dModel: number;
  /** Number of blocks. */
  nLayers: number;
  /** Attention heads. */
  nHeads: number;
  /** Width of one head. */
  dHead: number;
  /** MLP hidden width. */
  dMlp: number;
  /** Vocabulary size (input). */
  dVocab: number;
  /** Vocabulary size (output). */
  dVocabOut: number;
  /** Context length. */
  nCtx: number;
  /** MLP activation: gelu_new, gelu, relu, silu, ... */
  actFn: string;
  /** Norm epsilon. */
  eps: number;
  /** Norm kind. */
  normalizationType: NormalizationType;
  /** Learned ("standard") or rotary positions. */
  positionalEmbeddingType: "standard" | "rotary";
  /** Rotary dimensions per head (rotary models). */
  rotaryDim: number | null;
  /** Rotary base (theta). */
  rotaryBase: number;
  /** Rope scaling (Llama-3.1's "llama3", "linear"), null when none. */
  ropeScaling: RopeScaling | null;
  /** Key/value heads (grouped-query attention), null when equal to nHeads. */
  nKeyValueHeads: number | null;
  /** Attention and MLP read the same residual (GPT-NeoX). */
  parallelAttnMlp: boolean;
  /** Gated MLP (Llama). */
  gatedMlp: boolean;
  /** Final norm is RMS. */
  finalRms: boolean;
  /** Divide attention scores by attnScale. */
  useAttnScale: boolean;
  /** sqrt(dHead). */
  attnScale: number;
  /** GPT-2 option: scores also divided by (layer + 1). */
  scaleAttnByInverseLayerIdx: boolean;
  /** HF architecture name, e.g. "GPT2LMHeadModel". */
  originalArchitecture: string;
  /** The model's name (hub id or config.json's `_name_or_path`), if known: SAEs name it too. */
  modelName: string | null;
  /** Unembedding shares the embedding matrix. */
  tieWordEmbeddings: boolean;
  /** Whether the tokenizer should prepend BOS by default. */
  defaultPrependBos: boolean;
  /** Where text batches are padded by default ("right", as TransformerLens). */
  defaultPaddingSide: "left" | "right";
  /** BOS token id, if known. */
  bosTokenId: number | null;
  /** EOS token id, if known. */
  eosTokenId: number | null;
  /** Attention has q/k/v/o biases (false for Llama). */
  attnBias: boolean;
  /** MLP has biases (false for Llama). */
  mlpBias: boolean;
  /**
   * A second RMSNorm (with its weight, never folded) on the attention and MLP outputs before they
   * are added to the residual stream: `ln1_post`, `ln2_post` (Gemma-2).
   */
  useNormalizationBeforeAndAfter: boolean;
  /** Attention scores become `c * tanh(scores / c)` before the causal mask; 0 is off (Gemma-2). */
  attnScoresSoftCap: number;
  /** Logits become `c * tanh(logits / c)` after `unembed.hook_out`; 0 is off (Gemma-2). */
  outputLogitsSoftCap: number;
  /** Some layers attend only to the last `windowSize` positions (see `attnTypes`). */
  useLocalAttn: boolean;
  /** Keys a local layer's query sees: itself and the `windowSize - 1` before it. */
  windowSize: number | null;
  /** Per layer, "local" (sliding window) or "global" attention; null when all are global. */
  attnTypes: ("global" | "local")[] | null;
}

/** HF architectures hooklens runs. */
export const SUPPORTED_ARCHITECTURES: readonly string[] = [
  "GPT2LMHeadModel",
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
  "GPTNeoXForCausalLM",
  "GemmaForCausalLM",
  "Gemma2ForCausalLM",
];

/**
 * Builds the config from a parsed HF `config.json`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError } from "../errors.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 *
 * const path = "tests/reference/rmsgqa_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * assert.equal(cfg.normalizationType, "RMS");
 * assert.throws(() => configFromHf({ architectures: ["NoSuchLM"] }, path), ConfigError);
 * ```
 */
export function configFromHf(hf: Json, file: string): HookedTransformerConfig {
  const c = validate(build(hf, file), file);
  const name = (hf as Record<string, Json>)._name_or_path;
  return { ...c, modelName: typeof name === "string" && name ? name : null };
}

/** Checks the relations between fields that a hostile or broken config could break. */
function validate(c: HookedTransformerConfig, file: string): HookedTransformerConfig {
  const fail = (field: string, msg: string): never => {
    throw new ConfigError(file, msg, field);
  };
  if (!Number.isInteger(c.dHead) || c.dHead < 1) {
    fail("num_attention_heads", `d_model ${c.dModel} is not a multiple of ${c.nHeads} heads`);
  }
  if (c.nLayers > 1024) {
    fail("num_hidden_layers", `${c.nLayers} layers is more than the 1024 supported`);
  }
  if (c.nKeyValueHeads !== null && (c.nKeyValueHeads < 1 || c.nHeads % c.nKeyValueHeads !== 0)) {
    fail(
      "num_key_value_heads",
      `${c.nHeads} heads are not a multiple of ${c.nKeyValueHeads} key/value heads`,
    );
  }
  if (c.rotaryDim !== null && (c.rotaryDim < 2 || c.rotaryDim % 2 || c.rotaryDim > c.dHead)) {
    fail(
      "rotary_pct",
      `rotary dimension ${c.rotaryDim} must be even and at most d_head ${c.dHead}`,
    );
  }
  if (c.rotaryDim !== null && c.nCtx * c.rotaryDim > 2 ** 25) {
    fail(
      "max_position_embeddings",
      `context ${c.nCtx} x rotary dimension ${c.rotaryDim} is too large a rotary table`,
    );
  }
  if (!(c.eps > 0 && c.eps < 1)) fail("layer_norm_epsilon", `epsilon ${c.eps} must be in (0, 1)`);
  if (!(c.rotaryBase > 1)) fail("rope_theta", `rotary base ${c.rotaryBase} must be > 1`);
  if (
    !(c.actFn in
      {
        gelu_new: 1,
        gelu_pytorch_tanh: 1,
        gelu: 1,
        relu: 1,
        silu: 1,
        swish: 1,
        gelu_fast: 1,
        quick_gelu: 1,
      })
  ) {
    fail("activation_function", `unsupported activation "${c.actFn}"`);
  }
  return c;
}

function build(hf: Json, file: string): HookedTransformerConfig {
  if (hf === null || typeof hf !== "object" || Array.isArray(hf)) {
    throw new ConfigError(file, "config is not a JSON object");
  }
  const o = hf as Record<string, Json>;
  const arch = Array.isArray(o.architectures) && typeof o.architectures[0] === "string"
    ? o.architectures[0]
    : o.model_type === "gpt2"
    ? "GPT2LMHeadModel"
    : String(o.model_type ?? "unknown");
  const int = (key: string, ...alts: string[]): number => {
    for (const k of [key, ...alts]) {
      const v = o[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== "number" || !Number.isInteger(v) || v <= 0 || v > 2 ** 24) {
        throw new ConfigError(
          file,
          `must be a positive integer up to 2^24, got ${JSON.stringify(v)}`,
          k,
        );
      }
      return v;
    }
    throw new ConfigError(file, "missing (needed for " + arch + ")", key);
  };
  const num = (key: string, dflt: number): number => {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new ConfigError(file, `must be a number, got ${JSON.stringify(v)}`, key);
    }
    return v;
  };
  const str = (key: string, dflt: string): string => {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "string") throw new ConfigError(file, `must be a string`, key);
    return v;
  };
  const optInt = (key: string): number | null => {
    const v = o[key];
    return typeof v === "number" && Number.isInteger(v) ? v : null;
  };
  const rope = (o.rope_parameters && typeof o.rope_parameters === "object" &&
      !Array.isArray(o.rope_parameters))
    ? o.rope_parameters as Record<string, Json>
    : {};
  const ropeTheta = typeof o.rope_theta === "number"
    ? o.rope_theta
    : typeof rope.rope_theta === "number"
    ? rope.rope_theta
    : 10000;

  // The fields every architecture derives the same way from its sizes and token ids.
  const common = (dModel: number, nHeads: number, dHead: number) => {
    const vocab = int("vocab_size");
    return {
      dModel,
      nHeads,
      dHead,
      dVocab: vocab,
      dVocabOut: vocab,
      useAttnScale: true,
      attnScale: Math.sqrt(dHead),
      originalArchitecture: arch,
      modelName: null,
      defaultPrependBos: true,
      defaultPaddingSide: "right" as const,
      bosTokenId: optInt("bos_token_id"),
      eosTokenId: optInt("eos_token_id"),
      useNormalizationBeforeAndAfter: false,
      attnScoresSoftCap: 0,
      outputLogitsSoftCap: 0,
      useLocalAttn: false,
      windowSize: null,
      attnTypes: null,
    }; // deno-fmt-ignore
  };

  // Llama's shape, which Gemma shares: sizes from the same keys, RMS norms, rotary over the whole
  // head, a gated MLP, grouped K/V heads where num_key_value_heads differs.
  const llamaShape = () => {
    const dModel = int("hidden_size");
    const nHeads = int("num_attention_heads");
    const dHead = optInt("head_dim") ?? dModel / nHeads;
    const kv = optInt("num_key_value_heads");
    return {
      ...common(dModel, nHeads, dHead),
      nLayers: int("num_hidden_layers"),
      dMlp: int("intermediate_size"),
      nCtx: int("max_position_embeddings"),
      eps: num("rms_norm_eps", 1e-6),
      normalizationType: "RMS" as const,
      positionalEmbeddingType: "rotary" as const,
      rotaryDim: dHead,
      rotaryBase: ropeTheta,
      ropeScaling: ropeScalingFromHf(o, file),
      nKeyValueHeads: kv !== null && kv !== nHeads ? kv : null,
      parallelAttnMlp: false,
      gatedMlp: true,
      finalRms: true,
      scaleAttnByInverseLayerIdx: false,
    }; // deno-fmt-ignore
  };

  if (arch === "GPT2LMHeadModel") {
    const dModel = int("n_embd", "hidden_size");
    const nHeads = int("n_head", "num_attention_heads");
    if (dModel % nHeads) {
      throw new ConfigError(file, `n_embd ${dModel} not divisible by n_head ${nHeads}`, "n_head");
    }
    const dHead = dModel / nHeads;
    return {
      ...common(dModel, nHeads, dHead),
      nLayers: int("n_layer", "num_hidden_layers"),
      dMlp: optInt("n_inner") ?? 4 * dModel,
      nCtx: int("n_ctx", "n_positions"),
      actFn: str("activation_function", "gelu_new"),
      eps: num("layer_norm_epsilon", 1e-5),
      normalizationType: "LN",
      positionalEmbeddingType: "standard",
      rotaryDim: null,
      rotaryBase: 10000,
      ropeScaling: null,
      nKeyValueHeads: null,
      parallelAttnMlp: false,
      gatedMlp: false,
      finalRms: false,
      scaleAttnByInverseLayerIdx: o.scale_attn_by_inverse_layer_idx === true,
      tieWordEmbeddings: o.tie_word_embeddings !== false,
      attnBias: true,
      mlpBias: true,
    }; // deno-fmt-ignore
  }
  if (["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"].includes(arch)) {
    return {
      ...llamaShape(),
      actFn: str("hidden_act", "silu"),
      tieWordEmbeddings: o.tie_word_embeddings === true,
      attnBias: arch === "Qwen2ForCausalLM" || o.attention_bias === true,
      mlpBias: o.mlp_bias === true,
    }; // deno-fmt-ignore
  }
  if (arch === "GemmaForCausalLM" || arch === "Gemma2ForCausalLM") {
    // As TransformerLens configures them: Llama's shape with gelu-tanh, tied embeddings and
    // `head_dim` free of d_model; Gemma-2 adds post-norms, soft caps, the attention scale
    // sqrt(query_pre_attn_scalar) and sliding-window layers.
    const v2 = arch === "Gemma2ForCausalLM";
    const shape = llamaShape();
    const { dHead, nLayers } = shape;
    const cap = (key: string): number => {
      const c = num(key, 0);
      if (c < 0 || c > 3e38) {
        throw new ConfigError(file, `must be a positive float32 number or null, got ${c}`, key);
      }
      return c;
    };
    const attnTypes = v2 ? slidingLayers(o.layer_types, nLayers, file) : null;
    const scalar = v2 ? num("query_pre_attn_scalar", dHead) : dHead;
    if (!(scalar > 0)) {
      throw new ConfigError(file, `must be positive, got ${scalar}`, "query_pre_attn_scalar");
    }
    return {
      ...shape,
      attnScale: Math.sqrt(scalar),
      // HF's Gemma reads hidden_activation (gelu-tanh when absent) and ignores hidden_act.
      actFn: str("hidden_activation", "gelu_pytorch_tanh"),
      tieWordEmbeddings: o.tie_word_embeddings !== false,
      attnBias: o.attention_bias === true,
      mlpBias: false,
      useNormalizationBeforeAndAfter: v2,
      attnScoresSoftCap: v2 ? cap("attn_logit_softcapping") : 0,
      outputLogitsSoftCap: v2 ? cap("final_logit_softcapping") : 0,
      useLocalAttn: attnTypes !== null,
      windowSize: attnTypes ? int("sliding_window") : null,
      attnTypes,
    }; // deno-fmt-ignore
  }
  if (arch === "GPTNeoXForCausalLM") {
    const dModel = int("hidden_size");
    const nHeads = int("num_attention_heads");
    const dHead = dModel / nHeads;
    const pct = typeof o.rotary_pct === "number"
      ? o.rotary_pct
      : typeof rope.partial_rotary_factor === "number"
      ? rope.partial_rotary_factor
      : 1;
    return {
      ...common(dModel, nHeads, dHead),
      nLayers: int("num_hidden_layers"),
      dMlp: int("intermediate_size"),
      nCtx: int("max_position_embeddings"),
      actFn: str("hidden_act", "gelu"),
      eps: num("layer_norm_eps", 1e-5),
      normalizationType: "LN",
      positionalEmbeddingType: "rotary",
      rotaryDim: Math.floor(dHead * pct),
      rotaryBase: ropeTheta,
      ropeScaling: ropeScalingFromHf(o, file),
      nKeyValueHeads: null,
      parallelAttnMlp: o.use_parallel_residual !== false,
      gatedMlp: false,
      finalRms: false,
      scaleAttnByInverseLayerIdx: false,
      tieWordEmbeddings: o.tie_word_embeddings === true,
      attnBias: true,
      mlpBias: true,
    }; // deno-fmt-ignore
  }
  throw new ConfigError(
    file,
    `unsupported architecture "${arch}"; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`,
    "architectures",
  );
}

/**
 * Gemma-2's attention kind per layer: from `layer_types` ("sliding_attention" is local,
 * "full_attention" global), else Hugging Face's rule (layer 0 slides, then they alternate); null
 * when no layer slides.
 */
function slidingLayers(
  lt: Json | undefined,
  nLayers: number,
  file: string,
): ("global" | "local")[] | null {
  let types: ("global" | "local")[];
  if (lt !== undefined && lt !== null) {
    if (
      !Array.isArray(lt) || lt.length !== nLayers ||
      lt.some((t) => t !== "sliding_attention" && t !== "full_attention")
    ) {
      throw new ConfigError(
        file,
        `must list "sliding_attention" or "full_attention" for each of the ${nLayers} layers`,
        "layer_types",
      );
    }
    types = lt.map((t) => t === "sliding_attention" ? "local" : "global");
  } else {
    types = Array.from({ length: nLayers }, (_, i) => (i + 1) % 2 ? "local" : "global");
  }
  return types.includes("local") ? types : null;
}
