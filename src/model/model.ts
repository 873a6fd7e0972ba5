/**
 * HookedTransformer: a transformer whose forward pass runs in our WGSL kernels and exposes
 * TransformerLens's hook points, with the same names, shapes and firing order. The forward maths
 * and backward rules live in `components/` (each hook point fires in exactly one place there);
 * this class holds the weights and the hooks, makes each call's run context, and keeps the public
 * API. Weight conversion is in `convert/`, tokens in `tokens.ts`, generation in `generate.ts`, the
 * backward pass in `backward.ts`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
 *
 * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * const [logits, cache] = await model.runWithCache([[1, 2, 3]], {
 *   namesFilter: (n) => n.endsWith("resid_pre"),
 * });
 * using _cache = cache;
 * assert.deepEqual((logits as Tensor).shape, [1, 3, 1000]); // [batch, pos, d_vocab]
 * assert.deepEqual(cache.keys(), ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]);
 * (logits as Tensor).dispose();
 * ```
 * @module
 */
import { DisposedError, GpuUnavailableError, HookNameError } from "../errors.ts";
import * as ops from "../gpu/ops.ts";
import { lostError, type Runtime, runtime } from "../gpu/runtime.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { HfTokenizer } from "../io/tokenizer.ts";
import type { ActivationCache } from "./cache.ts";
import type { StateDict } from "./checkpoint.ts";
import type { HookedTransformerConfig } from "./config.ts";
import {
  type AddHookOptions,
  attachHooks,
  type HookEntry,
  type HookFn,
  HookRegistry,
  type HookSpec,
} from "./hooks.ts";
import { describeProvenance, provenanceFor, type SaeAttachment, tagOutput } from "./provenance.ts";
import { ModelView } from "./view.ts";
import { type ScopeLayer, ScopeStack } from "./scopes.ts";
import {
  type HookLayer,
  hookNamesFor,
  modelTensors,
  type ModelWeights,
} from "./components/index.ts";
import { uploadWeights, weightData } from "./upload.ts";
import { type CallQueue, type CallSpec, newCallQueue, startCall } from "./calls.ts";
import { loadPretrained } from "./load.ts";
import { runCached, runForward, runGenerate, type RunHost } from "./run.ts";
import {
  decodeTokens,
  encodeBatch,
  encodeTexts,
  singleToken,
  strTokens,
  tokensTensor,
} from "./tokens.ts";
import { type AttentionMask, checkMask, paddingOf, tokenPositions } from "./padding.ts";
import type {
  ForwardOptions,
  ForwardOutput,
  GenerateOptions,
  Input,
  LoadOptions,
  LogitsAndLoss,
  RunWithCacheOptions,
  RunWithHooksOptions,
  TokensWithMask,
  ToTokensOptions,
} from "./options.ts";

export type {
  BackwardMetric,
  ForwardOptions,
  ForwardOutput,
  GenerateOptions,
  Input,
  LoadOptions,
  LogitsAndLoss,
  RunWithCacheOptions,
  RunWithHooksOptions,
  TokensWithMask,
  ToTokensOptions,
} from "./options.ts";
export type { AttentionMask, PaddingSide } from "./padding.ts";
export { hookNamesFor } from "./components/index.ts";
export { resolveSource } from "./load.ts";
export type { CacheTarget, HookLayer, HookPoints } from "./components/index.ts";
export { ModelView } from "./view.ts";
export type { CallSpec } from "./calls.ts";
export type { ScopeLayer } from "./scopes.ts";

/**
 * A transformer with TransformerLens's hook points. See the module docs.
 */
export class HookedTransformer {
  /** The model's configuration (after weight processing). */
  readonly cfg: HookedTransformerConfig;
  /** Storage type of the dense-layer weights and W_E ("float16": half the bytes, f32 arithmetic). */
  readonly dtype: "float32" | "float16";
  /** The tokenizer from the model directory's tokenizer.json, if it has one. */
  readonly tokenizer: HfTokenizer | null;
  readonly #w: ModelWeights;
  /** What the bodies of its calls need (run.ts). */
  readonly #host: RunHost;
  readonly #baseHookNames: readonly string[];
  readonly #baseHookSet: ReadonlySet<string>;
  /** Persistent hooks (addHook); scoped hooks live in their scope's layer. */
  protected readonly registry: HookRegistry = new HookRegistry();
  #disposed = false;
  readonly #rt: Runtime;
  /** The persistent layer and the open scopes (scopes.ts). */
  readonly #scopes: ScopeStack = new ScopeStack(this.registry, () => this.persistentSaes());
  /** This model's calls run one after another (a call from inside a hook runs nested). */
  readonly #queue: CallQueue = newCallQueue();

  /**
   * Use {@link HookedTransformer.fromPretrained}; this wraps already-uploaded weights.
   *
   * @param cfg configuration.
   * @param sd processed TransformerLens-layout state dict (uploaded here, then dropped).
   */
  constructor(
    cfg: HookedTransformerConfig,
    sd: StateDict,
    tokenizer: HfTokenizer | null = null,
    dtype: "float32" | "float16" = "float32",
  ) {
    if (dtype === "float16" && !runtime().gpu.hasF16) {
      throw new GpuUnavailableError(
        "dtype float16 needs the adapter's shader-f16 feature, which this one lacks: load with dtype float32.",
      );
    }
    this.dtype = dtype;
    this.cfg = Object.freeze({ ...cfg });
    this.tokenizer = tokenizer;
    this.#rt = runtime();
    this.#w = uploadWeights(sd, cfg, dtype);
    this.#host = {
      cfg: this.cfg,
      tokenizer,
      dtype,
      weights: this.#w,
      cacheModel: this,
      checkUsable: () => this.#checkUsable(),
    };
    this.#baseHookNames = Object.freeze(hookNamesFor(cfg));
    this.#baseHookSet = new Set(this.#baseHookNames);
  }

  /**
   * Loads an HF model directory and applies TransformerLens's default weight processing
   * (fold_ln, center_writing_weights, center_unembed, fold_value_biases).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * // An HF model folder (config.json + model.safetensors), or a hub id such as "gpt2".
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * assert.equal(model.cfg.dModel, 64);
   * ```
   */
  static async fromPretrained(source: string, opts: LoadOptions = {}): Promise<HookedTransformer> {
    const { cfg, sd, tokenizer } = await loadPretrained(source, opts);
    return new this(cfg, sd, tokenizer, opts.dtype ?? "float32");
  }

  /**
   * Loads an HF model directory without weight processing (TransformerLens's
   * `from_pretrained_no_processing`).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using raw = await HookedTransformer.fromPretrainedNoProcessing("tests/reference/gpt2_tiny/hf");
   * using processed = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * // fold_ln and center_unembed change W_U; without processing it is the checkpoint's.
   * const rawWU = (await raw.weightData("unembed.W_U")).data;
   * assert.notDeepEqual(rawWU, (await processed.weightData("unembed.W_U")).data);
   * ```
   */
  static fromPretrainedNoProcessing(
    source: string,
    opts: LoadOptions = {},
  ): Promise<HookedTransformer> {
    return this.fromPretrained(source, {
      ...opts,
      foldLn: false,
      centerWritingWeights: false,
      centerUnembed: false,
      foldValueBiases: false,
    });
  }

  /** Every hook point, in firing order. */
  hookNames(): string[] {
    return [...this.#baseHookNames];
  }

  // ---------------------------------------------------------------- layers and calls

  /**
   * Opens a scope with `layer` and returns it as a view (see view.ts); `register` makes plain
   * model calls see it too until it closes (runWithSaes's private views do not).
   *
   * @ignore For this class and its subclasses, not user API.
   */
  protected openScope(layer: ScopeLayer, register = true): ModelView {
    return new ModelView(this, this.#scopes, this.#scopes.open(layer, register));
  }

  /**
   * The persistent SAEs (HookedSAETransformer's addSae); none for a plain model.
   *
   * @ignore For this class and its subclasses, not user API.
   */
  protected persistentSaes(): ReadonlyMap<string, SaeAttachment> {
    return new Map();
  }

  /**
   * The SAEs a call starting now runs with (a view's while its call starts, else plain calls').
   *
   * @ignore For this class and its subclasses, not user API.
   */
  protected effectiveSaes(): ReadonlyMap<string, SaeAttachment> {
    return this.#scopes.saes();
  }

  /**
   * The layer that splices these SAEs into the hook points (null: none). Throws a typed error for
   * an SAE that cannot run (disposed).
   *
   * @ignore An extension point between this class and its subclass, not user API.
   */
  protected saeLayer(_saes: ReadonlyMap<string, SaeAttachment>): HookLayer | null {
    return null;
  }

  /** What a call starting now runs with, plus `own` hooks for this call only. */
  #spec(own: HookRegistry | null = null): CallSpec {
    this.#checkUsable();
    return this.#scopes.spec(own, (saes) => this.saeLayer(saes));
  }

  /** Starts a call (see calls.ts) with this model's hooks and SAEs plus `own` hooks. */
  #call<T>(
    signal: AbortSignal | undefined,
    own: HookRegistry | null,
    body: (spec: CallSpec) => Promise<T>,
  ): Promise<T> {
    return startCall(this, this.#queue, signal, () => this.#spec(own), body);
  }

  /** Hooks for one call (runWithHooks' fwdHooks), validated like `hooks()`. */
  #ownHooks(specs: readonly HookSpec[] | undefined): HookRegistry | null {
    if (!specs || !specs.length) return null;
    const reg = new HookRegistry();
    this.#attach(specs, {}, reg);
    return reg;
  }

  /** Whether `name` is a hook point of the model as it is now (SAEs included). */
  hasHook(name: string): boolean {
    return this.hookNames().includes(name);
  }

  /** Whether `name` is a hook point of the bare model (no SAEs). */
  hasBaseHook(name: string): boolean {
    return this.#baseHookSet.has(name);
  }

  /** Throws a {@link HookNameError} listing the valid names if `name` is not a hook point. */
  protected checkHookName(name: string): void {
    if (!this.hasHook(name)) {
      throw new HookNameError(
        `Unknown hook name "${name}". Valid hook names: ${this.hookNames().join(", ")}.`,
      );
    }
  }

  // ---------------------------------------------------------------- hooks

  /**
   * Attaches a forward hook (stateful, like TransformerLens's `add_hook`). A predicate attaches
   * to every current hook point it accepts.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using clean = await model.forward([[1, 2, 3]]);
   * model.addHook("blocks.0.hook_resid_pre", (act) => act.scale(0.5));
   * using halved = await model.forward([[1, 2, 3]]);
   * assert.notDeepEqual(await halved.toArray(), await clean.toArray());
   * model.resetHooks();
   * ```
   */
  addHook(name: string | ((name: string) => boolean), fn: HookFn, opts: AddHookOptions = {}): void {
    this.#attach([[name, fn]], opts, this.registry);
  }

  /** Attaches `specs` into `into` (a name or predicate over this model's current hook names). */
  #attach(specs: readonly HookSpec[], opts: AddHookOptions, into: HookRegistry): HookEntry[] {
    return attachHooks(specs, opts, into, () => this.hookNames(), (n) => this.checkHookName(n));
  }

  /**
   * Removes hooks: the non-permanent ones, or all with `includingPermanent`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const seen: string[] = [];
   * model.addHook("blocks.0.hook_resid_pre", (_a, h) => void seen.push(h.name), {
   *   isPermanent: true,
   * });
   * model.resetHooks(); // keeps the permanent hook
   * using _a = await model.forward([[1, 2]]);
   * model.resetHooks({ includingPermanent: true });
   * using _b = await model.forward([[1, 2]]);
   * assert.deepEqual(seen, ["blocks.0.hook_resid_pre"]); // fired once, before the reset
   * ```
   */
  resetHooks(opts: { includingPermanent?: boolean } = {}): void {
    this.registry.reset(Boolean(opts.includingPermanent));
  }

  /**
   * Attaches hooks for a scope and returns it as a view (see {@link ModelView}): plain model
   * calls see the hooks until the scope closes; the view's calls always do. `using` closes it at
   * the block's end, also when it throws; closing removes exactly these hooks.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * let calls = 0;
   * {
   *   using scope = model.hooks([["blocks.0.hook_resid_pre", () => void calls++]]);
   *   using _a = await scope.forward([[1, 2]]); // or model.forward while the scope is open
   * } // the hook is removed here, also when the block throws
   * using _b = await model.forward([[1, 2]]);
   * assert.equal(calls, 1);
   * ```
   */
  hooks(specs: HookSpec[], opts: AddHookOptions = {}): ModelView {
    const reg = new HookRegistry();
    this.#attach(specs, opts, reg);
    return this.openScope({ hooks: reg, saes: null });
  }

  /** Number of hooks plain calls run with (persistent and open scopes'). */
  get hookCount(): number {
    return this.#scopes.hooks(this.#scopes.openLayers).reduce((n, r) => n + r.size, 0);
  }

  // ---------------------------------------------------------------- inputs

  /** Validates and uploads token ids: int32 [batch, pos]. */
  protected tokensTensor(input: Input): Tensor {
    return tokensTensor(this.cfg, this.tokenizer, input);
  }

  /** Throws if the model was disposed or its GPU device was lost. */
  #checkUsable(): void {
    if (this.#disposed) {
      throw new DisposedError("This model was disposed: load it again to use it.");
    }
    if (this.#rt.gpu.lost) throw lostError(this.#rt);
  }

  // ---------------------------------------------------------------- text

  /**
   * Tokenizes text as TransformerLens's `to_tokens`: int32 [batch, pos], BOS prepended by
   * default, padded with the pad (or EOS) token on `paddingSide` (default the model's
   * `cfg.defaultPaddingSide`, "right"). Run such a batch with its mask: see
   * {@link HookedTransformer.toTokensWithMask}.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf"); // has a tokenizer
   * using tokens = model.toTokens("def f(x):");
   * assert.deepEqual(tokens.shape, [1, 6]); // BOS, "def", " f", "(", "x", "):"
   * assert.equal(tokens.dtype, "int32");
   * ```
   */
  toTokens(text: string | string[], opts: ToTokensOptions = {}): Tensor {
    return this.tokensTensor(encodeTexts(this.cfg, this.tokenizer, text, opts));
  }

  /**
   * Tokenizes text as {@link HookedTransformer.toTokens} and returns the attention mask too (1:
   * a real token, 0: a pad), for the run methods' `attentionMask`. `paddingSide` per call, else
   * the model's `cfg.defaultPaddingSide`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf"); // has a tokenizer
   * const { tokens, attentionMask } = model.toTokensWithMask(["a b", "a b c d"], {
   *   paddingSide: "left",
   * });
   * using _tokens = tokens;
   * assert.deepEqual(attentionMask, [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]); // BOS, then the words
   * using logits = await model.forward(tokens, { attentionMask });
   * assert.deepEqual(logits.shape, [2, 5, 50257]);
   * ```
   */
  toTokensWithMask(text: string | string[], opts: ToTokensOptions = {}): TokensWithMask {
    const { rows, padding } = encodeBatch(this.cfg, this.tokenizer, text, opts);
    return { tokens: this.tokensTensor(rows), attentionMask: padding.mask };
  }

  /**
   * Where `token` (an id, or a string that is one token) occurs in `input` (TransformerLens's
   * `get_token_position`): the index of its first (default) or last occurrence among each row's
   * real tokens, in the padded row's coordinates. One number for one sequence, one per row for a
   * batch.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf"); // has a tokenizer
   * const at = model.getTokenPosition(" Mary", ["When Mary and John", "Then Mary"], {
   *   paddingSide: "left",
   * });
   * assert.deepEqual(at, [2, 4]); // the second row is left-padded by two
   * ```
   */
  getTokenPosition(
    token: string | number,
    input: string | string[] | number[] | number[][],
    opts: ToTokensOptions & { mode?: "first" | "last"; attentionMask?: AttentionMask } = {},
  ): number | number[] {
    const id = typeof token === "string" ? this.toSingleToken(token) : token;
    const isText = typeof input === "string" || typeof input[0] === "string";
    let rows: number[][];
    let padding;
    if (isText) {
      ({ rows, padding } = encodeBatch(this.cfg, this.tokenizer, input as string | string[], opts));
    } else {
      rows = Array.isArray(input[0]) ? input as number[][] : [input as number[]];
      const P = rows[0]?.length ?? 0;
      padding = opts.attentionMask
        ? checkMask(opts.attentionMask, rows.length, P)
        : paddingOf(rows.map(() => P), P, "right");
    }
    const at = tokenPositions(id, rows, padding, opts.mode ?? "first");
    return typeof input === "string" || (!isText && !Array.isArray(input[0])) ? at[0] : at;
  }

  /**
   * Token ids as CPU arrays (what `toTokens` uploads).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf"); // has a tokenizer
   * const [ids] = model.toTokenIds("def f(x):", { prependBos: false });
   * assert.deepEqual(model.toStrTokens(ids), ["def", " f", "(", "x", "):"]);
   * ```
   */
  toTokenIds(text: string | string[], opts: ToTokensOptions = {}): number[][] {
    return encodeTexts(this.cfg, this.tokenizer, text, opts);
  }

  /**
   * Text of token ids (TransformerLens's `to_string`): one string per row.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf"); // has a tokenizer
   * assert.equal(model.toString([50256, 4299]), "<|endoftext|>def");
   * assert.deepEqual(model.toString([[4299], [50256]]), ["def", "<|endoftext|>"]);
   * ```
   */
  toString(): string;
  /** Text of one row of token ids. */
  toString(tokens: number[]): string;
  /** Text of each row of token ids. */
  toString(tokens: number[][]): string[];
  toString(tokens?: number[] | number[][]): string | string[] {
    if (tokens === undefined) return this.#describe();
    return decodeTokens(this.tokenizer, tokens);
  }

  /** The model, and what its plain calls run with now (SAEs by hook, hooks). */
  #describe(): string {
    const c = this.cfg;
    const head = `${this.constructor.name} ${c.modelName || c.originalArchitecture} ` +
      `(${c.nLayers} layers, d_model ${c.dModel}${this.#disposed ? ", disposed" : ""})`;
    const open = this.#scopes.openLayers;
    const p = provenanceFor(this.#scopes.saes(open), this.#scopes.hooks(open));
    return `${head}\n${describeProvenance(p)}`;
  }

  /** What `Deno.inspect` and `console.log` print: the model and its attached SAEs and hooks. */
  [Symbol.for("Deno.customInspect")](): string {
    return this.#describe();
  }

  /**
   * Each token as a string (TransformerLens's `to_str_tokens`); text is tokenized first (with
   * BOS by default).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf"); // has a tokenizer
   * assert.deepEqual(model.toStrTokens("def f"), ["<|endoftext|>", "def", " f"]);
   * ```
   */
  toStrTokens(
    input: string | string[] | number[] | number[][],
    opts: ToTokensOptions = {},
  ): string[] | string[][] {
    return strTokens(this.cfg, this.tokenizer, input, opts);
  }

  /**
   * The id of a string that is exactly one token (TransformerLens's `to_single_token`).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf"); // has a tokenizer
   * assert.equal(model.toStrTokens([model.toSingleToken(" return")])[0], " return");
   * ```
   */
  toSingleToken(text: string): number {
    return singleToken(this.tokenizer, text);
  }

  // ---------------------------------------------------------------- forward

  /**
   * Runs the model. Returns logits [batch, pos, d_vocab] by default; see {@link ForwardOptions}.
   * Nothing is read back to the CPU; with no JS hooks this records one submission's worth of work.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using logits = await model.forward([[1, 2, 3]]);
   * assert.deepEqual(logits.shape, [1, 3, 1000]);
   * using loss = await model.forward([[1, 2, 3]], { returnType: "loss" });
   * assert.ok((await loss.toArray())[0] > 0); // mean next-token cross-entropy
   * ```
   */
  forward(input: Input, opts: ForwardOptions & { returnType: "both" }): Promise<LogitsAndLoss>;
  /** Logits [batch, pos, d_vocab], or with `returnType: "loss"` the loss (a scalar, shape []). */
  forward(input: Input, opts?: ForwardOptions): Promise<Tensor>;
  forward(input: Input, opts: ForwardOptions = {}): Promise<ForwardOutput> {
    return this.#call(opts.signal, null, (spec) => runForward(this.#host, input, opts, null, spec));
  }

  /**
   * Runs with hooks attached for this call only (TransformerLens's `run_with_hooks`).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using logits = await model.runWithHooks([[1, 2, 3]], {
   *   fwdHooks: [["blocks.0.hook_resid_pre", (a) => a.scale(0)]],
   * }) as Tensor;
   * using clean = await model.forward([[1, 2, 3]]); // the hook was for that call only
   * assert.notDeepEqual(await logits.toArray(), await clean.toArray());
   * ```
   */
  runWithHooks(input: Input, opts: RunWithHooksOptions = {}): Promise<ForwardOutput> {
    let own: HookRegistry | null;
    try {
      own = this.#ownHooks(opts.fwdHooks);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#call(opts.signal, own, (spec) => runForward(this.#host, input, opts, null, spec));
  }

  /**
   * Runs and caches activations on the GPU (TransformerLens's `run_with_cache`). The caller owns
   * the cache: dispose it (or `using`) to free its buffers.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const [logits, cache] = await model.runWithCache([[1, 2, 3]], {
   *   namesFilter: (n) => n.includes("resid"),
   * });
   * using _cache = cache;
   * using _logits = logits as Tensor;
   * assert.deepEqual(cache.get("resid_post", 1).shape, [1, 3, 64]); // blocks.1.hook_resid_post
   * ```
   */
  runWithCache(
    input: Input,
    opts: RunWithCacheOptions = {},
  ): Promise<[ForwardOutput, ActivationCache]> {
    let own: HookRegistry | null;
    try {
      own = this.#ownHooks(opts.fwdHooks);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#call(opts.signal, own, async (spec) => {
      const [out, cache] = await runCached(this.#host, input, opts, spec);
      tagOutput(cache, spec.provenance);
      return [out, cache];
    });
  }

  /**
   * Generates tokens (TransformerLens's `generate`): greedy or sampled (temperature, topK, topP,
   * seeded), with a KV cache by default, with hooks and attached SAEs active at every step. The
   * choice of each token happens on the GPU, which writes it where the next step reads it; token
   * ids are read back at the end (and, with `stopAtEos`, every 4 steps without waiting, later
   * steps going on meanwhile). Prompts of different lengths (texts, or token ids with an
   * `attentionMask`) are left-padded: each row has its own positions and KV-cache mask and stops
   * at its own EOS or `stopTokens`. Returns the full sequences without the left padding, text for
   * text input (each row's ending at its own stop token), token ids otherwise; with `stopAtEos`
   * they end at the step where the last row made EOS, rows that made it earlier padded with it, as
   * TransformerLens's.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf"); // has a tokenizer
   * const text = await model.generate("def add(a, b):", { maxNewTokens: 4, doSample: false });
   * assert.ok(text.startsWith("def add(a, b):"));
   * const [row] = await model.generate([[50256, 4299]], { maxNewTokens: 2, doSample: false });
   * assert.equal(row.length, 4); // the prompt and two new tokens
   * ```
   */
  generate(input: string, opts?: GenerateOptions): Promise<string>;
  /** One completion per prompt text. */
  generate(input: string[], opts?: GenerateOptions): Promise<string[]>;
  /** Token ids in, token ids out: each row is its prompt followed by the new tokens. */
  generate(input: number[][] | number[] | Tensor, opts?: GenerateOptions): Promise<number[][]>;
  generate(input: Input, opts: GenerateOptions = {}): Promise<string | string[] | number[][]> {
    return this.#call(opts.signal, null, (spec) => runGenerate(this.#host, input, opts, spec));
  }

  /**
   * The logits a residual-stream direction writes directly: v [.., d_model] · W_U (no final norm,
   * no bias). The "logit lens" of, e.g., an SAE latent's decoder direction.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using dir = sae.decoderDirection(42);
   * using logits = model.unembedDirection(dir); // the tokens latent 42 pushes up
   * assert.deepEqual(logits.shape, [1000]);
   * ```
   */
  unembedDirection(v: Tensor): Tensor {
    this.#checkUsable();
    const [y] = ops.linear(v, this.#w.unembed.wU, undefined, {}, this.cfg.dVocabOut);
    return y;
  }

  /**
   * A processed weight read back to the CPU, in TransformerLens's layout: "embed.W_E"
   * [d_vocab, d_model], "blocks.L.attn.W_O" [heads, d_head, d_model] or "unembed.W_U"
   * [d_model, d_vocab].
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const { shape, data } = await model.weightData("unembed.W_U");
   * assert.deepEqual(shape, [64, 1000]); // [d_model, d_vocab]
   * assert.equal(data.length, 64 * 1000);
   * ```
   */
  weightData(name: string): Promise<{ shape: number[]; data: Float32Array }> {
    try {
      this.#checkUsable();
    } catch (e) {
      return Promise.reject(e);
    }
    return weightData(this.#w, this.cfg, name);
  }

  /** Frees the model's GPU weights. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const t of modelTensors(this.#w)) t.dispose();
  }

  /** Same as {@link HookedTransformer.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
