/**
 * The option and result types of HookedTransformer's calls (re-exported by `model.ts`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedTransformer } from "@hooklens/hooklens";
 * import type { ForwardOptions } from "./options.ts";
 *
 * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * const opts: ForwardOptions = { returnType: "loss" };
 * using loss = await model.forward([[1, 2, 3]], opts);
 * assert.deepEqual(loss.shape, []); // a scalar: the mean next-token cross-entropy
 * ```
 * @module
 */
import type { Tensor } from "../gpu/tensor.ts";
import type { HookSpec } from "./hooks.ts";
import type { AttentionMask, PaddingSide } from "./padding.ts";
import type { ProcessingOptions } from "./processing.ts";

/**
 * What a model can be run on: text (tokenized with BOS prepended, as TransformerLens does), token
 * ids ([batch][pos] or one sequence), or an int32 [batch, pos] Tensor.
 */
export type Input = string | string[] | number[][] | number[] | Tensor;

/** Options of `toTokens`. */
export interface ToTokensOptions {
  /** Prepend the BOS token (default: the model's default, true for the supported models). */
  prependBos?: boolean;
  /** Where shorter texts of a batch are padded (default the model's `cfg.defaultPaddingSide`). */
  paddingSide?: PaddingSide;
}

/** Token ids of a text batch and its attention mask (`toTokensWithMask`). */
export interface TokensWithMask {
  /** int32 [batch, pos]. */
  tokens: Tensor;
  /** 0/1 per position, [batch][pos]: 1 a real token, 0 a pad. */
  attentionMask: AttentionMask;
}

/** Options of `fromPretrained`. */
export interface LoadOptions extends Partial<ProcessingOptions> {
  /** Hub revision (branch, tag or commit) when `source` is a hub id; default "main". */
  revision?: string;
  /** The model's name, checked against SAEs' `model_name` (default: the hub id, if loaded by id). */
  modelName?: string;
  /**
   * "float32" (default), or "float16": dense-layer weights and the token embedding stored as f16
   * (half the memory and bandwidth; needs `shader-f16`), read into f32 arithmetic. The backward
   * pass needs float32. Also lets GPT-2's 147 MiB embedding fit an adapter that binds at most 128
   * MiB at once (lavapipe).
   */
  dtype?: "float32" | "float16";
  /** Progress callback: a message per loading stage. */
  onProgress?: (message: string) => void;
}

/** Options of a forward pass. */
export interface ForwardOptions {
  /**
   * Ends the call early: when it aborts, the call rejects with a CallAbortedError at once (also
   * while a hook has not settled), its remaining hook points throw, and the model's next call runs.
   */
  signal?: AbortSignal;
  /** "logits" (default), "loss", or "both" ({ logits, loss }). */
  returnType?: "logits" | "loss" | "both";
  /** With returnType "loss"/"both": the per-token loss [batch, pos - 1] instead of the mean. */
  lossPerToken?: boolean;
  /** Stop before this block and return the residual stream (blocks.N.hook_resid_pre's input). */
  stopAtLayer?: number;
  /** Start at this block; the input is then the residual stream [batch, pos, d_model]. */
  startAtLayer?: number;
  /** Tokens for the loss when starting from a residual stream. */
  tokens?: Input;
  /**
   * Token input: 0/1 per position, [batch][pos] (1: a real token, 0: a pad; one run of real
   * tokens per row, padded left or right). Pads get no attention, positions count real tokens
   * only, and the loss leaves pads out. Text input builds its own. A Tensor mask (int32 or
   * float32 [batch, pos]) is read back once to be checked.
   */
  attentionMask?: AttentionMask | Tensor;
  /** Text input: where shorter texts are padded (default the model's `cfg.defaultPaddingSide`). */
  paddingSide?: PaddingSide;
  /**
   * Which positions get logits: "all" (default), "last" (with an attention mask, each row's last
   * real token), or a list of positions, the same for every row (indices into the padded rows;
   * negative ones count from the end, as in Python). Only those rows go through the unembedding, on the device,
   * so a caller that reads the next-token prediction does not pay for (or read back) every
   * position's [d_vocab] row. The logits are then [batch, n, d_vocab] (n = 1 for "last"), and so
   * is `unembed.hook_out`; `unembed.hook_in` and everything before it keep every position. Not
   * with a loss (`returnType` "loss" or "both") or a backward pass (`inclBwd`), which need every
   * position's logits.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using all = await model.forward([[1, 2, 3]]);
   * using next = await model.forward([[1, 2, 3]], { logitsAt: "last" }); // [batch, 1, d_vocab]
   * assert.deepEqual(next.shape, [1, 1, 1000]);
   * assert.deepEqual(await next.toArray(), (await all.toArray()).subarray(2000)); // the same row
   * ```
   */
  logitsAt?: "all" | "last" | number[];
}

/**
 * What a backward pass differentiates: the mean next-token loss, or the logit difference of two
 * tokens at a position (per batch row; default the last position, in a padded batch each row's
 * last real token), or any metric given by its gradient with respect to the logits.
 */
export type BackwardMetric =
  | "loss"
  | { logitDiff: { pos?: number; correct: number[]; incorrect?: number[] } }
  | { gradient: (logits: Tensor) => Tensor | Promise<Tensor> };

/** Options of `runWithCache`. */
export interface RunWithCacheOptions extends Omit<ForwardOptions, "returnType"> {
  /** "logits" (default), "loss", "both", or with `inclBwd` the metric to differentiate. */
  returnType?: ForwardOptions["returnType"] | BackwardMetric;
  /**
   * Also run the backward pass: the cache gets `<hook>_grad` entries, the gradient of the metric
   * (`returnType`, default the mean loss) at every cached hook point, and "bwd" hooks fire.
   */
  inclBwd?: boolean;
  /** Hooks attached for this run only (before the caching, as with `hooks()`). */
  fwdHooks?: HookSpec[];
  /** Which hooks to cache: a name, a list of names, or a predicate (default: all). */
  namesFilter?: string | string[] | ((name: string) => boolean);
  /** Drop the batch dimension of every cached tensor (batch must be 1). */
  removeBatchDim?: boolean;
}

/** Options of `runWithHooks`. */
export interface RunWithHooksOptions extends ForwardOptions {
  /** Hooks attached for this run only. */
  fwdHooks?: HookSpec[];
}

/** Result of a forward pass with returnType "both". */
export interface LogitsAndLoss {
  /** [batch, pos, d_vocab]. */
  logits: Tensor;
  /** Scalar mean loss, or [batch, pos - 1] per token. */
  loss: Tensor;
}

/** What a forward returns, by return type. */
export type ForwardOutput = Tensor | LogitsAndLoss;

/** Options of `generate`. */
export interface GenerateOptions {
  /**
   * Ends the call early: when it aborts, the call rejects with a CallAbortedError at once (also
   * while a hook has not settled), its remaining hook points throw, and the model's next call runs.
   */
  signal?: AbortSignal;
  /** Tokens to add (default 10). */
  maxNewTokens?: number;
  /** Sample (default) or take the most likely token. */
  doSample?: boolean;
  /** Softmax temperature for sampling (default 1). */
  temperature?: number;
  /** Sample among the k most likely tokens only. */
  topK?: number;
  /** Sample among the most likely tokens holding this much probability. */
  topP?: number;
  /** Stop a sequence at the EOS token (default true): later positions are filled with EOS. */
  stopAtEos?: boolean;
  /** More token ids that end a row (as EOS does; they need no `stopAtEos`). */
  stopTokens?: number[];
  /**
   * Token input: 0/1 per position (see ForwardOptions.attentionMask). Prompts of different
   * lengths are left-padded: each row continues from its own last token.
   */
  attentionMask?: AttentionMask | Tensor;
  /** Reuse keys and values of earlier positions (default true). */
  useKvCache?: boolean;
  /** Seed of the sampler (default: random). */
  seed?: number;
  /** Text input: prepend BOS (default: the model's default). */
  prependBos?: boolean;
}
