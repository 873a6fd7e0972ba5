/**
 * HookedTransformer: a transformer whose forward pass runs in our WGSL kernels and exposes
 * TransformerLens's hook points, with the same names, shapes and firing order. Each hook point
 * fires in exactly one place below (`this.hook(...)`), so the forward pass reads top to bottom as
 * the list of hook points.
 *
 * @example
 * ```ts
 * import { HookedTransformer } from "./model.ts";
 * const model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * const [logits, cache] = await model.runWithCache([[1, 2, 3]], { namesFilter: (n) => n.endsWith("resid_pre") });
 * console.log(logits.shape, cache.keys());
 * ```
 * @module
 */
import { join } from "node:path";
import {
  DisposedError,
  GpuLimitError,
  GpuUnavailableError,
  HookNameError,
  InputError,
  ShapeError,
} from "../errors.ts";
import { readJsonFile } from "../io/json.ts";
import * as ops from "../gpu/ops.ts";
import {
  copyBuffer,
  flush,
  initRuntime,
  lostError,
  type Runtime,
  runtime,
  trimPoolIfLarge,
} from "../gpu/runtime.ts";
import { closeArena, type DType, openArena, Tensor } from "../gpu/tensor.ts";
import { ActivationCache } from "./cache.ts";
import { Tape } from "./tape.ts";
import { configFromHf, type HookedTransformerConfig } from "./config.ts";
import { ConfigError } from "../errors.ts";
import {
  type AddHookOptions,
  type HookEntry,
  type HookFn,
  HookRegistry,
  type HookSpec,
} from "./hooks.ts";
import { type ProcessingOptions, processWeights, rotaryTables } from "./processing.ts";
import { loadStateDict, type StateDict } from "./weights.ts";
import { HfTokenizer } from "../io/tokenizer.ts";
import { hubModelDir, isHubId } from "../io/hub.ts";
import { seededUniform } from "./random.ts";

/**
 * What a model can be run on: text (tokenized with BOS prepended, as TransformerLens does), token
 * ids ([batch][pos] or one sequence), or an int32 [batch, pos] Tensor.
 */
export type Input = string | string[] | number[][] | number[] | Tensor;

/** Options of `toTokens`. */
export interface ToTokensOptions {
  /** Prepend the BOS token (default: the model's default, true for the supported models). */
  prependBos?: boolean;
  /** Where shorter texts of a batch are padded (default "right"). */
  paddingSide?: "left" | "right";
}

/**
 * A local directory as it is, or a hub id ("org/name") downloaded into the local cache.
 *
 * @example
 * ```ts
 * const dir = await resolveSource("openai-community/gpt2");
 * ```
 */
export async function resolveSource(source: string, revision?: string): Promise<string> {
  const local = await Deno.stat(source).then((s) => s.isDirectory).catch(() => false);
  if (local) return source;
  if (isHubId(source)) return await hubModelDir(source, { revision });
  throw new ConfigError(source, "no such model directory (and not a hub id of the form org/name)");
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
}

/**
 * What a backward pass differentiates: the mean next-token loss, or the logit difference of two
 * tokens at a position (per batch row), or any metric given by its gradient with respect to the
 * logits.
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

/** One model call at a time per process: GPU state, arenas and hooks are shared. */
let queue: Promise<unknown> = Promise.resolve();

/**
 * Runs `fn` after every model call queued before it (model calls never overlap).
 *
 * @example
 * ```ts
 * const out = await serial(() => model.runLocked(input, {}, null));
 * ```
 */
export function serial<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => {});
  return run;
}

/** State of the run in progress: which hooks to cache and where. */
interface RunState {
  cache: ActivationCache | null;
  cacheFilter: (name: string) => boolean;
}

/** A KV cache: per layer keys (after rotary) and values [batch, capacity, kv_heads, d_head]. */
interface KvState {
  k: Tensor[];
  v: Tensor[];
  /** Position of the first token of the current step. */
  offset: number;
  /** Positions the cache holds. */
  cap: number;
}

/** Options of `generate`. */
export interface GenerateOptions {
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
  /** Reuse keys and values of earlier positions (default true). */
  useKvCache?: boolean;
  /** Seed of the sampler (default: random). */
  seed?: number;
  /** Text input: prepend BOS (default: the model's default). */
  prependBos?: boolean;
}

/** The GPU weights of one block. */
interface BlockWeights {
  ln1w?: Tensor;
  ln1b?: Tensor;
  ln2w?: Tensor;
  ln2b?: Tensor;
  /**
   * W_Q, W_K and W_V side by side: [d_model, (heads + 2 kv_heads) * d_head], each head-major, so
   * that q, k and v come from one dispatch (held once; the separate products read column blocks).
   */
  wqkv: Tensor;
  /** b_Q, b_K, b_V side by side (zeros where one is missing), or none when all are. */
  bqkv?: Tensor;
  bq?: Tensor;
  bk?: Tensor;
  bv?: Tensor;
  /** [heads * d_head, d_model]. */
  wo: Tensor;
  bo?: Tensor;
  win: Tensor;
  bin?: Tensor;
  wgate?: Tensor;
  wout: Tensor;
  bout?: Tensor;
}

/** GPU weights of a model. */
interface Weights {
  wE: Tensor;
  wPos?: Tensor;
  blocks: BlockWeights[];
  lnfw?: Tensor;
  lnfb?: Tensor;
  wU: Tensor;
  bU: Tensor;
  /** Rotary models: cos then sin, each [n_ctx, rotary_dim]. */
  rot?: Tensor;
}

/** [heads, d_model, d_head] -> [d_model, heads * d_head]. */
function headsToColumns(data: Float32Array, H: number, D: number, E: number): Float32Array {
  const out = new Float32Array(D * H * E);
  for (let h = 0; h < H; h++) {
    for (let d = 0; d < D; d++) {
      for (let e = 0; e < E; e++) out[d * H * E + h * E + e] = data[(h * D + d) * E + e];
    }
  }
  return out;
}

function upload(
  sd: StateDict,
  cfg: HookedTransformerConfig,
  dtype: "float32" | "float16",
): Weights {
  const maxBind = runtime().gpu.limits.maxStorageBufferBindingSize;
  // Dense-layer matrices may be stored as f16 (the tiled kernels read them and compute in f32).
  const matrix = (name: string, data?: Float32Array, shape?: number[]): Tensor => {
    const sh = shape ?? sd.get(name)!.shape;
    const ok = dtype === "float16" && sh[0] % 4 === 0 && sh[1] % 4 === 0;
    return t(name, data, sh, ok ? "float16" : "float32");
  };
  const t = (
    name: string,
    data?: Float32Array,
    shape?: number[],
    dt: DType = "float32",
  ): Tensor => {
    const w = sd.get(name)!;
    const d = data ?? w.data;
    if (d.byteLength / (dt === "float16" ? 2 : 1) > maxBind) {
      throw new GpuLimitError(
        `Weight ${name} needs ${d.byteLength} bytes in one binding; this adapter allows ` +
          `${maxBind}. Use a GPU with a larger maxStorageBufferBindingSize or a smaller model.`,
      );
    }
    return Tensor.from(d, shape ?? w.shape, dt).keep();
  };
  const opt = (name: string) => (sd.has(name) ? t(name) : undefined);
  const { dModel: D, nHeads: H, dHead: E } = cfg;
  const Hkv = cfg.nKeyValueHeads ?? H;
  const kv = cfg.nKeyValueHeads ? "_" : ""; // TransformerLens's names for grouped-query K/V
  const blocks: BlockWeights[] = [];
  for (let l = 0; l < cfg.nLayers; l++) {
    const b = `blocks.${l}.`;
    const cols = (n: string, heads: number) => headsToColumns(sd.get(b + n)!.data, heads, D, E);
    const [nq, nkv] = [H * E, Hkv * E];
    const wqkv = new Float32Array(D * (nq + 2 * nkv));
    const parts = [cols("attn.W_Q", H), cols(`attn.${kv}W_K`, Hkv), cols(`attn.${kv}W_V`, Hkv)];
    for (let d = 0; d < D; d++) {
      let c = d * (nq + 2 * nkv);
      for (const [i, p] of parts.entries()) {
        const n = i === 0 ? nq : nkv;
        wqkv.set(p.subarray(d * n, (d + 1) * n), c);
        c += n;
      }
    }
    const biasNames = ["attn.b_Q", `attn.${kv}b_K`, `attn.${kv}b_V`];
    let bqkv: Tensor | undefined;
    if (biasNames.some((n) => sd.has(b + n))) {
      const data = new Float32Array(nq + 2 * nkv);
      let c = 0;
      for (const [i, n] of biasNames.entries()) {
        if (sd.has(b + n)) data.set(sd.get(b + n)!.data, c);
        c += i === 0 ? nq : nkv;
      }
      bqkv = t(b + "attn.b_Q", data, [nq + 2 * nkv]);
    }
    const flat = (
      n: string,
      heads: number,
    ) => (sd.has(b + n) ? t(b + n, undefined, [heads * E]) : undefined);
    blocks.push({
      ln1w: opt(b + "ln1.w"),
      ln1b: opt(b + "ln1.b"),
      ln2w: opt(b + "ln2.w"),
      ln2b: opt(b + "ln2.b"),
      wqkv: matrix(b + "attn.W_Q", wqkv, [D, nq + 2 * nkv]),
      bqkv,
      bq: flat("attn.b_Q", H),
      bk: flat(`attn.${kv}b_K`, Hkv),
      bv: flat(`attn.${kv}b_V`, Hkv),
      wo: matrix(b + "attn.W_O", undefined, [H * E, D]),
      bo: opt(b + "attn.b_O"),
      win: matrix(b + "mlp.W_in"),
      bin: opt(b + "mlp.b_in"),
      wgate: sd.has(b + "mlp.W_gate") ? matrix(b + "mlp.W_gate") : undefined,
      wout: matrix(b + "mlp.W_out"),
      bout: opt(b + "mlp.b_out"),
    }); // deno-fmt-ignore
  }
  return {
    // W_E follows the weights' dtype too: GPT-2's 147 MiB f32 table exceeds the 128 MiB binding
    // limit of some adapters (lavapipe); in f16 it fits.
    wE: t("embed.W_E", undefined, undefined, dtype === "float16" ? "float16" : "float32"),
    wPos: opt("pos_embed.W_pos"),
    blocks,
    lnfw: opt("ln_final.w"),
    lnfb: opt("ln_final.b"),
    wU: padColumns(matrix, sd.get("unembed.W_U")!, "unembed.W_U"),
    bU: t("unembed.b_U"),
    rot: cfg.rotaryDim ? rotaryTensor(cfg) : undefined,
  };
}

/** Uploads [rows, cols] with cols padded to a multiple of 4 (zeros), for the tiled kernel. */
function padColumns(
  t: (name: string, data?: Float32Array, shape?: number[]) => Tensor,
  w: { shape: number[]; data: Float32Array },
  name: string,
): Tensor {
  const [rows, cols] = w.shape;
  const padded = Math.ceil(cols / 4) * 4;
  if (padded === cols) return t(name);
  const data = new Float32Array(rows * padded);
  for (let r = 0; r < rows; r++) data.set(w.data.subarray(r * cols, (r + 1) * cols), r * padded);
  return t(name, data, [rows, padded]);
}

function rotaryTensor(cfg: HookedTransformerConfig): Tensor {
  const { cos, sin } = rotaryTables(cfg.nCtx, cfg.rotaryDim!, cfg.rotaryBase);
  const table = new Float32Array(cos.length * 2);
  table.set(cos);
  table.set(sin, cos.length);
  return Tensor.from(table, [2, cfg.nCtx, cfg.rotaryDim!]).keep();
}

/** Every hook point of a model with this config, in firing order. */
export function hookNamesFor(cfg: HookedTransformerConfig): string[] {
  const names = ["hook_embed"];
  if (cfg.positionalEmbeddingType === "standard") names.push("hook_pos_embed");
  const rotary = cfg.positionalEmbeddingType === "rotary";
  for (let l = 0; l < cfg.nLayers; l++) {
    const b = `blocks.${l}.`;
    names.push(b + "hook_resid_pre", b + "ln1.hook_scale", b + "ln1.hook_normalized");
    names.push(b + "attn.hook_q", b + "attn.hook_k", b + "attn.hook_v");
    if (rotary) names.push(b + "attn.hook_rot_q", b + "attn.hook_rot_k");
    names.push(
      b + "attn.hook_attn_scores",
      b + "attn.hook_pattern",
      b + "attn.hook_z",
      b + "hook_attn_out",
    );
    if (!cfg.parallelAttnMlp) names.push(b + "hook_resid_mid");
    names.push(
      b + "ln2.hook_scale",
      b + "ln2.hook_normalized",
      b + "mlp.hook_in",
      b + "mlp.hook_pre",
    );
    if (cfg.gatedMlp) names.push(b + "mlp.hook_pre_linear");
    names.push(b + "mlp.hook_post", b + "hook_mlp_out", b + "hook_resid_post");
  }
  names.push(
    "ln_final.hook_scale",
    "ln_final.hook_normalized",
    "unembed.hook_in",
    "unembed.hook_out",
  );
  return names;
}

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
  readonly #w: Weights;
  readonly #baseHookNames: readonly string[];
  readonly #baseHookSet: ReadonlySet<string>;
  /** Attached hooks. */
  protected readonly registry: HookRegistry = new HookRegistry();
  /** The run in progress, if any. */
  protected run: RunState | null = null;
  /** During generation with a KV cache: the cache and the position of the current tokens. */
  #kv: KvState | null = null;
  #disposed = false;
  readonly #rt: Runtime;

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
    this.#w = upload(sd, cfg, dtype);
    this.#baseHookNames = Object.freeze(hookNamesFor(cfg));
    this.#baseHookSet = new Set(this.#baseHookNames);
  }

  /**
   * Loads an HF model directory and applies TransformerLens's default weight processing
   * (fold_ln, center_writing_weights, center_unembed, fold_value_biases).
   *
   * @example
   * ```ts
   * const model = await HookedTransformer.fromPretrained("path/to/hf_dir");
   * ```
   */
  static async fromPretrained(source: string, opts: LoadOptions = {}): Promise<HookedTransformer> {
    await initRuntime();
    const id = source;
    source = await resolveSource(source, opts.revision);
    opts.onProgress?.(`reading ${source}`);
    const cfgFile = join(source, "config.json");
    let cfg = configFromHf(await readJsonFile(cfgFile), cfgFile);
    const name = opts.modelName ?? (source !== id ? id : cfg.modelName);
    cfg = { ...cfg, modelName: name };
    const sd = await loadStateDict(source, cfg);
    opts.onProgress?.("processing weights");
    cfg = processWeights(sd, cfg, {
      foldLn: opts.foldLn ?? true,
      centerWritingWeights: opts.centerWritingWeights ?? true,
      centerUnembed: opts.centerUnembed ?? true,
      foldValueBiases: opts.foldValueBiases ?? true,
    });
    opts.onProgress?.("uploading weights");
    const tokenizer = await HfTokenizer.load(source);
    return new this(cfg, sd, tokenizer, opts.dtype ?? "float32");
  }

  /**
   * Loads an HF model directory without weight processing (TransformerLens's
   * `from_pretrained_no_processing`).
   *
   * @example
   * ```ts
   * const raw = await HookedTransformer.fromPretrainedNoProcessing("path/to/hf_dir");
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
   * model.addHook("blocks.0.hook_resid_pre", (act) => act.scale(0.5));
   * ```
   */
  addHook(name: string | ((name: string) => boolean), fn: HookFn, opts: AddHookOptions = {}): void {
    this.#attach([[name, fn]], opts);
  }

  #attach(specs: readonly HookSpec[], opts: AddHookOptions = {}): HookEntry[] {
    if (opts.dir && opts.dir !== "fwd" && opts.dir !== "bwd") {
      throw new HookNameError(`Hook direction "${opts.dir}" is not supported; use "fwd" or "bwd".`);
    }
    // Resolve every name first so that an invalid one attaches nothing.
    const resolved: [string, HookFn][] = [];
    for (const [name, fn] of specs) {
      if (typeof name === "function") {
        for (const n of this.hookNames()) if (name(n)) resolved.push([n, fn]);
      } else {
        this.checkHookName(name);
        resolved.push([name, fn]);
      }
    }
    return resolved.map(([n, fn]) => this.registry.add(n, fn, opts));
  }

  /**
   * Removes hooks: the non-permanent ones, or all with `includingPermanent`.
   *
   * @example
   * ```ts
   * model.resetHooks({ includingPermanent: true });
   * ```
   */
  resetHooks(opts: { includingPermanent?: boolean } = {}): void {
    this.registry.reset(Boolean(opts.includingPermanent));
  }

  /**
   * Attaches hooks for a scope: `using _ = model.hooks([...])` removes exactly these hooks when
   * the scope ends, also when it throws.
   *
   * @example
   * ```ts
   * {
   *   using _h = model.hooks([["blocks.0.hook_resid_pre", (act) => act.scale(0)]]);
   *   await model.forward(tokens);
   * }
   * ```
   */
  hooks(specs: HookSpec[], opts: AddHookOptions = {}): Disposable {
    const entries = this.#attach(specs, opts);
    return { [Symbol.dispose]: () => this.registry.remove(entries) };
  }

  /** Number of attached hooks. */
  get hookCount(): number {
    return this.registry.size;
  }

  /** Whether {@link hook} at `name` may return another tensor than it is given (a hook is there). */
  protected hookMayReplace(name: string): boolean {
    return this.registry.at(name).length > 0;
  }

  /** Whether nothing reads the activation at `name`: no hook, no cache entry, no backward pass. */
  protected hookInert(name: string): boolean {
    const run = this.run;
    return !this.hookMayReplace(name) && !(run?.cache && run.cacheFilter(name)) && !Tape.active;
  }

  /**
   * Runs one hook point: the attached hooks in order (a returned Tensor replaces the activation),
   * then caching. This is the one place every hook point passes through.
   */
  protected async hook(name: string, act: Tensor): Promise<Tensor> {
    for (const e of this.registry.at(name)) {
      const r = await e.fn(act, { name });
      if (r !== undefined && r !== null) {
        if (!(r instanceof Tensor)) {
          throw new ShapeError(`Hook at ${name} returned ${typeof r}; return a Tensor or nothing.`);
        }
        if (r.shape.length !== act.shape.length || r.shape.some((d, i) => d !== act.shape[i])) {
          throw new ShapeError(
            `Hook at ${name} returned shape [${r.shape.join(", ")}]; the activation is ` +
              `[${act.shape.join(", ")}].`,
          );
        }
        act = r;
      }
    }
    const run = this.run;
    if (run?.cache && run.cacheFilter(name)) run.cache.set(name, act.clone().keep());
    Tape.hook(name, act);
    return act;
  }

  // ---------------------------------------------------------------- inputs

  /** Validates and uploads token ids: int32 [batch, pos]. */
  protected tokensTensor(input: Input): Tensor {
    if (input instanceof Tensor) {
      if (input.dtype !== "int32" || input.shape.length !== 2) {
        throw new InputError(
          `Token tensor must be int32 [batch, pos], got ${input.dtype} [${
            input.shape.join(", ")
          }].`,
        );
      }
      this.#checkLength(input.shape[1]);
      return input;
    }
    const rows = typeof input === "string" || (Array.isArray(input) && typeof input[0] === "string")
      ? this.#encode(input as string | string[], {})
      : (Array.isArray(input[0]) ? input : [input]) as number[][];
    if (!rows.length || !rows[0].length) {
      throw new InputError("Empty input: pass at least one token.");
    }
    const P = rows[0].length;
    this.#checkLength(P);
    const data = new Int32Array(rows.length * P);
    rows.forEach((r, b) => {
      if (!Array.isArray(r) || r.length !== P) {
        throw new InputError(
          `Input row ${b} has ${r?.length} tokens, row 0 has ${P}: pad them to one length.`,
        );
      }
      r.forEach((id, p) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.cfg.dVocab) {
          throw new InputError(
            `Token id ${id} at [${b}, ${p}] is outside the vocabulary (0..${this.cfg.dVocab - 1}).`,
          );
        }
        data[b * P + p] = id;
      });
    });
    return Tensor.from(data, [rows.length, P], "int32");
  }

  #checkLength(P: number): void {
    if (P > this.cfg.nCtx) {
      throw new InputError(
        `Sequence of ${P} tokens is longer than the model's context n_ctx = ${this.cfg.nCtx}.`,
      );
    }
    if (P < 1) throw new InputError("Empty input: pass at least one token.");
  }

  /** Throws if the model was disposed or its GPU device was lost. */
  #checkUsable(): void {
    if (this.#disposed) {
      throw new DisposedError("This model was disposed: load it again to use it.");
    }
    if (this.#rt.gpu.lost) throw lostError(this.#rt);
  }

  // ---------------------------------------------------------------- text

  #tok(): HfTokenizer {
    if (!this.tokenizer) {
      throw new InputError(
        "This model has no tokenizer (no tokenizer.json in its directory): pass token ids instead of text.",
      );
    }
    return this.tokenizer;
  }

  /** Token ids of texts, BOS-prefixed and padded as TransformerLens's `to_tokens`. */
  #encode(text: string | string[], o: ToTokensOptions): number[][] {
    const tok = this.#tok();
    const texts = typeof text === "string" ? [text] : text;
    if (!texts.length) throw new InputError("Empty input: pass at least one text.");
    const bos = o.prependBos ?? this.cfg.defaultPrependBos;
    const rows = texts.map((t) => {
      const ids = tok.encode(t);
      if (bos) {
        if (tok.bosTokenId === null) {
          throw new InputError("prependBos: this tokenizer has no BOS token.");
        }
        ids.unshift(tok.bosTokenId);
      }
      return ids;
    });
    const P = Math.max(...rows.map((r) => r.length));
    if (P === 0) throw new InputError("Empty input: the text has no tokens.");
    const pad = tok.padTokenId ?? 0;
    return rows.map((r) => {
      const fill = new Array(P - r.length).fill(pad);
      return o.paddingSide === "left" ? [...fill, ...r] : [...r, ...fill];
    });
  }

  /**
   * Tokenizes text as TransformerLens's `to_tokens`: int32 [batch, pos], BOS prepended by
   * default, right-padded with the pad (or EOS) token.
   *
   * @example
   * ```ts
   * const tokens = model.toTokens("def f(x):");
   * ```
   */
  toTokens(text: string | string[], opts: ToTokensOptions = {}): Tensor {
    return this.tokensTensor(this.#encode(text, opts));
  }

  /**
   * Token ids as CPU arrays (what `toTokens` uploads).
   *
   * @example
   * ```ts
   * const [ids] = model.toTokenIds("def f(x):");
   * ```
   */
  toTokenIds(text: string | string[], opts: ToTokensOptions = {}): number[][] {
    return this.#encode(text, opts);
  }

  /**
   * Text of token ids (TransformerLens's `to_string`): one string per row.
   *
   * @example
   * ```ts
   * model.toString([50256, 4299]); // "<|endoftext|>def"
   * ```
   */
  toString(tokens: number[] | number[][]): string | string[] {
    const tok = this.#tok();
    if (Array.isArray(tokens[0])) return (tokens as number[][]).map((r) => tok.decode(r));
    return tok.decode(tokens as number[]);
  }

  /**
   * Each token as a string (TransformerLens's `to_str_tokens`); text is tokenized first (with
   * BOS by default).
   *
   * @example
   * ```ts
   * model.toStrTokens("def f"); // ["<|endoftext|>", "def", " f"]
   * ```
   */
  toStrTokens(
    input: string | string[] | number[] | number[][],
    opts: ToTokensOptions = {},
  ): string[] | string[][] {
    const tok = this.#tok();
    if (typeof input === "string") return this.#encode(input, opts)[0].map((i) => tok.piece(i));
    if (Array.isArray(input) && typeof input[0] === "string") {
      return (input as string[]).map((t) => this.#encode(t, opts)[0].map((i) => tok.piece(i)));
    }
    if (Array.isArray(input[0])) {
      return (input as number[][]).map((r) => r.map((i) => tok.piece(i)));
    }
    return (input as number[]).map((i) => tok.piece(i));
  }

  /**
   * The id of a string that is exactly one token (TransformerLens's `to_single_token`).
   *
   * @example
   * ```ts
   * model.toSingleToken(" return");
   * ```
   */
  toSingleToken(text: string): number {
    const ids = this.#tok().encode(text);
    if (ids.length !== 1) {
      throw new InputError(
        `"${text}" is ${ids.length} tokens, not one: ${JSON.stringify(this.toStrTokens(ids))}.`,
      );
    }
    return ids[0];
  }

  // ---------------------------------------------------------------- forward

  /**
   * Runs the model. Returns logits [batch, pos, d_vocab] by default; see {@link ForwardOptions}.
   * Nothing is read back to the CPU; with no JS hooks this records one submission's worth of work.
   *
   * @example
   * ```ts
   * const logits = await model.forward([[1, 2, 3]]);
   * const loss = await model.forward([[1, 2, 3]], { returnType: "loss" });
   * ```
   */
  forward(input: Input, opts: ForwardOptions & { returnType: "both" }): Promise<LogitsAndLoss>;
  forward(input: Input, opts?: ForwardOptions): Promise<Tensor>;
  forward(input: Input, opts: ForwardOptions = {}): Promise<ForwardOutput> {
    return serial(() => this.runLocked(input, opts, null));
  }

  /**
   * Runs with hooks attached for this call only (TransformerLens's `run_with_hooks`).
   *
   * @example
   * ```ts
   * const logits = await model.runWithHooks(tokens, { fwdHooks: [["blocks.0.hook_resid_pre", (a) => a.scale(0)]] });
   * ```
   */
  runWithHooks(input: Input, opts: RunWithHooksOptions = {}): Promise<ForwardOutput> {
    return serial(() => this.runWithHooksLocked(input, opts));
  }

  /** {@link HookedTransformer.runWithHooks} while holding the model lock. */
  protected async runWithHooksLocked(
    input: Input,
    opts: RunWithHooksOptions,
  ): Promise<ForwardOutput> {
    using _h = this.hooks(opts.fwdHooks ?? []);
    return await this.runLocked(input, opts, null);
  }

  /**
   * Runs and caches activations on the GPU (TransformerLens's `run_with_cache`). The caller owns
   * the cache: dispose it (or `using`) to free its buffers.
   *
   * @example
   * ```ts
   * const [logits, cache] = await model.runWithCache(tokens, { namesFilter: (n) => n.includes("resid") });
   * ```
   */
  runWithCache(
    input: Input,
    opts: RunWithCacheOptions = {},
  ): Promise<[ForwardOutput, ActivationCache]> {
    return serial(() => this.runWithCacheLocked(input, opts));
  }

  /** {@link HookedTransformer.runWithCache} while holding the model lock. */
  protected async runWithCacheLocked(
    input: Input,
    opts: RunWithCacheOptions,
  ): Promise<[ForwardOutput, ActivationCache]> {
    const cache = new ActivationCache(new Map(), this);
    const f = opts.namesFilter;
    const filter = f === undefined
      ? () => true
      : typeof f === "string"
      ? (n: string) => n === f
      : Array.isArray(f)
      ? (n: string) => f.includes(n)
      : f;
    try {
      using _h = this.hooks(opts.fwdHooks ?? []);
      if (opts.inclBwd) {
        const out = await this.#runWithBackward(input, opts, { cache, cacheFilter: filter });
        if (opts.removeBatchDim) return [out, removeBatchDim(cache)];
        return [out, cache];
      }
      const out = await this.runLocked(input, opts as ForwardOptions, {
        cache,
        cacheFilter: filter,
      });
      if (opts.removeBatchDim) return [out, removeBatchDim(cache)];
      return [out, cache];
    } catch (e) {
      cache.dispose();
      throw e;
    }
  }

  /**
   * Generates tokens (TransformerLens's `generate`): greedy or sampled (temperature, topK, topP,
   * seeded), with a KV cache by default, with hooks and attached SAEs active at every step. The
   * choice of each token happens on the GPU, which writes it where the next step reads it; token
   * ids are read back at the end (and, with `stopAtEos`, every 4 steps without waiting, later
   * steps going on meanwhile). Returns the full sequences, text for text input, token ids
   * otherwise; with `stopAtEos` they end at the step where the last row made EOS, rows that made it
   * earlier padded with it, as TransformerLens's.
   *
   * @example
   * ```ts
   * const text = await model.generate("def add(a, b):", { maxNewTokens: 8, doSample: false });
   * ```
   */
  generate(input: string, opts?: GenerateOptions): Promise<string>;
  generate(input: string[], opts?: GenerateOptions): Promise<string[]>;
  generate(input: number[][] | number[] | Tensor, opts?: GenerateOptions): Promise<number[][]>;
  generate(input: Input, opts: GenerateOptions = {}): Promise<string | string[] | number[][]> {
    return serial(() => this.#generate(input, opts));
  }

  async #generate(input: Input, o: GenerateOptions): Promise<string | string[] | number[][]> {
    this.#checkUsable();
    const maxNew = o.maxNewTokens ?? 10;
    if (!Number.isInteger(maxNew) || maxNew < 0) {
      throw new InputError(`maxNewTokens ${maxNew} is not a non-negative integer.`);
    }
    const isText = typeof input === "string" ||
      (Array.isArray(input) && typeof input[0] === "string");
    const prompt = isText
      ? this.#encode(input as string | string[], { prependBos: o.prependBos })
      : null;
    const arena = openArena();
    try {
      const tokens = this.tokensTensor(prompt ?? input);
      const [B, P0] = tokens.shape;
      const total = P0 + maxNew;
      if (total > this.cfg.nCtx) {
        throw new InputError(
          `Prompt of ${P0} tokens + ${maxNew} new ones exceeds the context n_ctx = ${this.cfg.nCtx}.`,
        );
      }
      const eos = this.tokenizer?.eosTokenId ?? this.cfg.eosTokenId;
      const stopAtEos = (o.stopAtEos ?? true) && eos !== null;
      const seq = Tensor.empty([B, total], "int32");
      for (let b = 0; b < B; b++) {
        copyBuffer(tokens.buffer, seq.buffer, P0 * 4, b * P0 * 4, b * total * 4);
      }
      const { nLayers, dHead: E } = this.cfg;
      const Hkv = this.cfg.nKeyValueHeads ?? this.cfg.nHeads;
      const kv: KvState | null = (o.useKvCache ?? true)
        ? {
          k: Array.from({ length: nLayers }, () => Tensor.empty([B, total, Hkv, E])),
          v: Array.from({ length: nLayers }, () => Tensor.empty([B, total, Hkv, E])),
          offset: 0,
          cap: total,
        }
        : null;
      const rand = seededUniform(o.seed ?? Math.floor(Math.random() * 2 ** 31));
      const greedy = !(o.doSample ?? true);
      let done = P0;
      // Checking for EOS reads the token ids back, and a readback costs ~11 ms in Deno whatever
      // its size (bench/RESULTS.md). So a check starts every few steps without waiting: the ids
      // of positions < check.done are looked at once EOS_CHECK_LAG_MS have passed, steps made in
      // the meantime. When every row had ended by then, those steps are dropped: the output ends
      // where TransformerLens's (which checks every step) does, at the latest row's EOS.
      let check: { ids: Promise<Float32Array | Int32Array>; done: number; at: number } | null =
        null;
      let ended: { ids: Float32Array | Int32Array; end: number } | null = null;
      for (let step = 0; step < maxNew; step++) {
        const pos = P0 + step;
        const stepArena = openArena();
        try {
          let stepInput: Tensor;
          if (step === 0) stepInput = tokens;
          else if (kv) {
            stepInput = Tensor.empty([B, 1], "int32");
            for (let b = 0; b < B; b++) {
              copyBuffer(seq.buffer, stepInput.buffer, 4, (b * total + pos - 1) * 4, b * 4);
            }
          } else {
            stepInput = Tensor.empty([B, pos], "int32");
            for (let b = 0; b < B; b++) {
              copyBuffer(seq.buffer, stepInput.buffer, pos * 4, b * total * 4, b * pos * 4);
            }
          }
          if (kv) kv.offset = step === 0 ? 0 : pos - 1;
          this.#kv = kv;
          const logits = await this.#forward(stepInput, {}) as Tensor;
          ops.sampleNext(logits, seq, pos, {
            greedy,
            topK: o.topK,
            topP: o.topP,
            temperature: o.temperature,
            // Greedy decoding reads no random number: a constant keeps the step's uniform block
            // (and its bind group) the same from call to call.
            u: greedy ? 0 : rand(),
          });
        } finally {
          this.#kv = null;
          closeArena(stepArena);
        }
        flush();
        done = pos + 1;
        if (!stopAtEos || step === maxNew - 1) continue;
        if (check && performance.now() - check.at >= EOS_CHECK_LAG_MS) {
          const ids = await check.ids;
          const end = eosEnd(ids, B, total, P0, check.done, eos!);
          check = null;
          if (end !== null) {
            ended = { ids, end };
            break;
          }
        }
        if (!check && (step + 1) % EOS_CHECK_EVERY === 0) {
          check = { ids: seq.toArray(), done, at: performance.now() };
          // Left unread when generation ends first: never an unhandled rejection.
          check.ids.catch(() => {});
        }
      }
      const ids = ended?.ids ?? await seq.toArray();
      const end = ended?.end ?? (stopAtEos ? eosEnd(ids, B, total, P0, done, eos!) : null) ?? done;
      const rows = Array.from(
        { length: B },
        (_, b) => Array.from(ids.subarray(b * total, b * total + end)),
      );
      if (stopAtEos) {
        for (const r of rows) {
          const i = r.indexOf(eos!, P0);
          if (i >= 0) r.fill(eos!, i);
        }
      }
      if (!isText) return rows;
      // As TransformerLens: the text output leaves out the BOS token the prompt was given.
      const dropBos = o.prependBos ?? this.cfg.defaultPrependBos;
      const texts = rows.map((r) => this.tokenizer!.decode(dropBos ? r.slice(1) : r));
      return typeof input === "string" ? texts[0] : texts;
    } finally {
      closeArena(arena);
    }
  }

  /** Forward with the tape recording, then backward from the metric, in one arena. */
  async #runWithBackward(input: Input, opts: RunWithCacheOptions, run: RunState): Promise<Tensor> {
    this.#checkUsable();
    if (this.dtype !== "float32") {
      throw new InputError(
        'The backward pass needs float32 weights: load the model with dtype "float32".',
      );
    }
    const metric: BackwardMetric = typeof opts.returnType === "object" || opts.returnType === "loss"
      ? opts.returnType
      : "loss";
    const arena = openArena();
    const prev = this.run;
    this.run = run;
    const tape = Tape.begin();
    let value: Tensor | null = null;
    try {
      const { startAtLayer: _s, stopAtLayer: _e, ...rest } = opts;
      const out = await this.#forward(input, {
        ...rest,
        returnType: metric === "loss" ? "both" : "logits",
      });
      Tape.end(tape);
      const logits = out instanceof Tensor ? out : out.logits;
      let seed: Tensor;
      if (metric === "loss") {
        const tokens = this.tokensTensor(input);
        const [B, P] = tokens.shape;
        seed = ops.lossGrad(logits, tokens, 1 / (B * (P - 1)));
        value = (out as LogitsAndLoss).loss;
      } else if ("logitDiff" in metric) {
        const [B, P, V] = logits.shape;
        const { correct, incorrect } = metric.logitDiff;
        const at = metric.logitDiff.pos ?? -1;
        const pos = at < 0 ? P + at : at;
        if (correct.length !== B || (incorrect && incorrect.length !== B) || pos < 0 || pos >= P) {
          throw new InputError(
            `logitDiff needs one token per batch row (${B}) and a position in 0..${P - 1}.`,
          );
        }
        const g = new Float32Array(B * P * V);
        for (let b = 0; b < B; b++) {
          g[(b * P + pos) * V + correct[b]] += 1;
          if (incorrect) g[(b * P + pos) * V + incorrect[b]] -= 1;
        }
        seed = Tensor.from(g, [B, P, V]);
        const all = await logits.toArray();
        let v = 0;
        for (let b = 0; b < B; b++) {
          v += all[(b * P + pos) * V + correct[b]] -
            (incorrect ? all[(b * P + pos) * V + incorrect[b]] : 0);
        }
        value = Tensor.from([v], []);
      } else {
        seed = await metric.gradient(logits);
        value = logits;
      }
      await tape.backward(logits, seed, async (name, g) => {
        let grad = g;
        for (const e of this.registry.at(name, "bwd")) {
          const r = await e.fn(grad, { name });
          if (r instanceof Tensor) grad = r;
        }
        if (run.cacheFilter(name)) run.cache!.set(`${name}_grad`, grad.clone().keep());
        return grad;
      });
      if (value.isView) value = value.clone();
      return value;
    } finally {
      Tape.end(tape);
      this.run = prev;
      closeArena(arena, value ? [value] : []);
      value?.keep();
      flush();
    }
  }

  /** One forward pass while holding the model lock: arena, run state, outputs kept. */
  protected async runLocked(
    input: Input,
    opts: ForwardOptions,
    run: RunState | null,
  ): Promise<ForwardOutput> {
    this.#checkUsable();
    const arena = openArena();
    const prev = this.run;
    this.run = run;
    let keep: Tensor[] = [];
    try {
      let out = await this.#forward(input, opts);
      // A view's buffer belongs to a tensor of this pass: return a copy that owns its buffer.
      if (out instanceof Tensor && out.isView) out = out.clone();
      keep = out instanceof Tensor ? [out] : [out.logits, out.loss];
      return out;
    } finally {
      this.run = prev;
      closeArena(arena, keep);
      for (const t of keep) t.keep();
      flush(); // one submission per forward pass; nothing waits for it
      trimPoolIfLarge();
    }
  }

  async #forward(input: Input, o: ForwardOptions): Promise<ForwardOutput> {
    const cfg = this.cfg;
    const start = o.startAtLayer ?? 0;
    const stop = o.stopAtLayer ?? cfg.nLayers;
    const n = cfg.nLayers;
    const s = start < 0 ? start + n : start;
    const e = stop < 0 ? stop + n : stop;
    if (!(Number.isInteger(s) && Number.isInteger(e) && s >= 0 && e <= n && s <= e)) {
      throw new InputError(
        `startAtLayer ${start} / stopAtLayer ${stop} out of range for ${n} layers.`,
      );
    }
    let tokens: Tensor | null = null;
    let resid: Tensor;
    if (s > 0) {
      if (!(input instanceof Tensor) || input.dtype !== "float32" || input.shape.length !== 3) {
        throw new InputError(
          "With startAtLayer, pass the residual stream as a float32 [batch, pos, d_model] Tensor.",
        );
      }
      resid = input;
      if (o.tokens !== undefined) tokens = this.tokensTensor(o.tokens);
    } else {
      tokens = this.tokensTensor(input);
      resid = await this.embed(tokens);
    }
    for (let l = s; l < e; l++) {
      // Each block's intermediates go back to the pool when it ends (unless a backward pass needs
      // them): peak memory is one block's activations, not the whole pass's.
      const blockArena = Tape.active ? null : openArena();
      try {
        resid = await this.block(l, resid);
      } finally {
        if (blockArena) closeArena(blockArena, [resid]);
      }
    }
    if (e < n) return resid;

    const x = await this.norm("ln_final", resid, this.#w.lnfw, this.#w.lnfb);
    const logits = await this.unembed(x);
    const rt = o.returnType ?? "logits";
    if (rt === "logits") return logits;
    if (!tokens) throw new InputError("A loss needs tokens: pass `tokens` with startAtLayer.");
    if (tokens.shape[1] < 2) {
      throw new InputError("A next-token loss needs at least 2 tokens per row.");
    }
    const perTok = ops.lossPerToken(logits, tokens);
    const loss = o.lossPerToken ? perTok : ops.meanAll(perTok);
    return rt === "loss" ? loss : { logits, loss };
  }

  /** hook_embed, hook_pos_embed: the residual stream entering block 0. */
  protected async embed(tokens: Tensor): Promise<Tensor> {
    const [B, P] = tokens.shape;
    const embed = await this.hook("hook_embed", ops.embedTokens(this.#w.wE, tokens));
    if (!this.#w.wPos) return embed;
    const offset = this.#kv?.offset ?? 0;
    const pos = await this.hook("hook_pos_embed", ops.embedPositions(this.#w.wPos, B, P, offset));
    const sum = embed.add(pos);
    Tape.record([sum], [embed, pos], ([g]) => [g, g]);
    return sum;
  }

  /**
   * A LayerNorm / LNPre / RMSNorm / RMSPre: hook_scale, then hook_normalized (the normalised
   * input, before the weight and bias, as in TransformerLens), then `* w (+ b)`.
   */
  protected async norm(prefix: string, x: Tensor, w?: Tensor, b?: Tensor): Promise<Tensor> {
    const kind = this.cfg.normalizationType.startsWith("RMS") ? "RMS" : "LN";
    // When no hook can replace the scale or the normalised input, one dispatch makes all three
    // outputs; the hooks still fire (cache, backward pass) on the same tensors.
    const fused = this.hookMayReplace(`${prefix}.hook_scale`) ||
        this.hookMayReplace(`${prefix}.hook_normalized`)
      ? null
      : ops.normFused(x, kind, this.cfg.eps, w, b);
    const scale0 = fused?.[0] ?? ops.normScale(x, kind, this.cfg.eps);
    Tape.record([scale0], [x], ([g]) => [ops.normScaleGrad(g!, x, scale0, kind)]);
    const scale = await this.hook(`${prefix}.hook_scale`, scale0);
    const n0 = fused?.[1] ?? ops.normApply(x, scale, kind);
    Tape.record([n0], [x, scale], ([g]) => ops.normApplyGrad(g!, x, scale, kind));
    const normalized = await this.hook(`${prefix}.hook_normalized`, n0);
    this.#lastNorm = { x, scale0, scale, n0, normalized, kind };
    if (!w) return normalized;
    const y = fused?.[2] ?? (b ? ops.scaleShift(normalized, w, b) : normalized.mul(w));
    Tape.record([y], [normalized], ([g]) => [g!.mul(w)]);
    return y;
  }

  /** The last norm's tensors, for the q/k/v inputs of attention. */
  #lastNorm: {
    x: Tensor;
    scale0: Tensor;
    scale: Tensor;
    n0: Tensor;
    normalized: Tensor;
    kind: "LN" | "RMS";
  } | null = null;

  /**
   * The inputs of q, k and v from ln1's output. TransformerLens runs ln1 once per input; its
   * backward hooks fire for each call in reverse order, so the gradient it keeps at ln1's hooks is
   * the q input's. While recording a backward pass, k and v get their own copies of the norm in
   * the tape (same values, no recomputation) to match.
   */
  #qkvInputs(x: Tensor, w?: Tensor, b?: Tensor): [Tensor, Tensor, Tensor] {
    const ln = this.#lastNorm;
    if (!Tape.active || !ln || ln.scale !== ln.scale0 || ln.normalized !== ln.n0) return [x, x, x];
    const copy = (): Tensor => {
      const s2 = ln.scale0.reshape([...ln.scale0.shape]);
      Tape.record([s2], [ln.x], ([g]) => [ops.normScaleGrad(g!, ln.x, ln.scale0, ln.kind)]);
      const n2 = ln.n0.reshape([...ln.n0.shape]);
      Tape.record([n2], [ln.x, s2], ([g]) => ops.normApplyGrad(g!, ln.x, ln.scale0, ln.kind));
      if (!w) return n2;
      const y = b ? ops.scaleShift(n2, w, b) : n2.mul(w);
      Tape.record([y], [n2], ([g]) => [g!.mul(w)]);
      return y;
    };
    return [x, copy(), copy()];
  }

  /** Records a residual add for the backward pass and returns it. */
  #add(a: Tensor, b: Tensor): Tensor {
    const y = a.add(b);
    Tape.record([y], [a, b], ([g]) => [g, g]);
    return y;
  }

  /**
   * q [B, P, H, E], k and v [B, P, Hkv, E] from their inputs: one dispatch into three outputs when
   * the three inputs are one tensor (always, unless a backward pass is being recorded), else three
   * products reading column blocks of the joint weight.
   */
  #qkv(w: BlockWeights, [xq, xk, xv]: [Tensor, Tensor, Tensor], [B, P]: number[]): Tensor[] {
    const { nHeads: H, dHead: E, dModel: D } = this.cfg;
    const Hkv = this.cfg.nKeyValueHeads ?? H;
    const parts: [number, number, number] = [H * E, Hkv * E, Hkv * E];
    const offs = [0, parts[0], parts[0] + parts[1]];
    const shapes = [[B, P, H, E], [B, P, Hkv, E], [B, P, Hkv, E]];
    if (xq === xk && xk === xv && D % 4 === 0 && parts.every((n) => n % 4 === 0)) {
      const outs = ops.linearSplit(xq, w.wqkv, w.bqkv, parts);
      const ys = outs.map((o, i) => o.moveTo(shapes[i]));
      Tape.record(ys, [xq], (gs) => {
        let dx: Tensor | null = null;
        for (const [i, g] of gs.entries()) {
          if (!g) continue;
          const part = ops.linearBack(g.reshape([B * P, parts[i]]), w.wqkv, parts[i], offs[i]);
          dx = dx ? dx.add(part) : part;
        }
        return [dx?.moveTo([...xq.shape]) ?? null];
      });
      return ys;
    }
    const biases = [w.bq, w.bk, w.bv];
    return [xq, xk, xv].map((x, i) => {
      const y = ops.linearBlock(x, w.wqkv, offs[i], parts[i], biases[i]).moveTo(shapes[i]);
      Tape.record([y], [x], ([g]) => [
        ops.linearBack(g!.reshape([B * P, parts[i]]), w.wqkv, parts[i], offs[i]).moveTo([
          ...x.shape,
        ]),
      ]);
      return y;
    });
  }

  /** x [.., K] · W [K, N] + b into a tensor of `shape`. */
  protected linear(x: Tensor, w: Tensor, b: Tensor | undefined, shape: number[]): Tensor {
    const [y0] = ops.linear(x, w, b);
    const y = y0.moveTo(shape);
    Tape.record(
      [y],
      [x],
      (
        [g],
      ) => [
        ops.linearBack(g!.reshape([...x.shape.slice(0, -1), w.shape[1]]), w).moveTo([...x.shape]),
      ],
    );
    return y;
  }

  /**
   * One transformer block: attention then MLP, each added to the residual stream (in parallel
   * for NeoX). The residual adds are fused into the output projections; a hook that replaces
   * hook_attn_out or hook_mlp_out gets its own add.
   */
  protected async block(l: number, residIn: Tensor): Promise<Tensor> {
    const b = `blocks.${l}.`;
    const w = this.#w.blocks[l];
    const resid = await this.hook(b + "hook_resid_pre", residIn);
    const x = await this.norm(b + "ln1", resid, w.ln1w, w.ln1b);
    const parallel = this.cfg.parallelAttnMlp;
    const qkv = this.#qkvInputs(x, w.ln1w, w.ln1b);
    const [attnRaw, midFused] = await this.attention(l, qkv, parallel ? undefined : resid);
    const attnOut = await this.hook(b + "hook_attn_out", attnRaw);
    if (parallel) {
      const x2 = await this.norm(b + "ln2", resid, w.ln2w, w.ln2b);
      const [mlpOut0] = await this.mlp(l, x2);
      const mlpOut = await this.hook(b + "hook_mlp_out", mlpOut0);
      return await this.hook(b + "hook_resid_post", this.#add(this.#add(resid, attnOut), mlpOut));
    }
    const fusedMid = attnOut === attnRaw && midFused ? midFused : null;
    if (fusedMid) Tape.record([fusedMid], [resid, attnOut], ([g]) => [g, g]);
    const mid = await this.hook(b + "hook_resid_mid", fusedMid ?? this.#add(resid, attnOut));
    const x2 = await this.norm(b + "ln2", mid, w.ln2w, w.ln2b);
    const [mlpRaw, postFused] = await this.mlp(l, x2, mid);
    const mlpOut = await this.hook(b + "hook_mlp_out", mlpRaw);
    const fusedPost = mlpOut === mlpRaw && postFused ? postFused : null;
    if (fusedPost) Tape.record([fusedPost], [mid, mlpOut], ([g]) => [g, g]);
    return await this.hook(b + "hook_resid_post", fusedPost ?? this.#add(mid, mlpOut));
  }

  /**
   * Attention: hook_q/k/v (k/v with the KV-head count under grouped-query attention), hook_rot_q/k
   * (rotary models), hook_attn_scores (causal -inf), hook_pattern, hook_z, then W_O.
   */
  protected async attention(
    l: number,
    [xq, xk, x]: [Tensor, Tensor, Tensor],
    resid?: Tensor,
  ): Promise<[Tensor, Tensor | null]> {
    const cfg = this.cfg;
    const a = `blocks.${l}.attn.`;
    const w = this.#w.blocks[l];
    const [B, P] = x.shape;
    const H = cfg.nHeads, E = cfg.dHead, Hkv = cfg.nKeyValueHeads ?? H;
    const [q0, k0, v0] = this.#qkv(w, [xq, xk, x], [B, P]);
    let q = await this.hook(a + "hook_q", q0);
    let k = await this.hook(a + "hook_k", k0);
    const v = await this.hook(a + "hook_v", v0);
    const kv = this.#kv;
    const offset = kv?.offset ?? 0;
    if (this.#w.rot) {
      const rot = this.#w.rot, R = cfg.rotaryDim!;
      const rq = ops.rotary(q, rot, R, offset), rk = ops.rotary(k, rot, R, offset);
      Tape.record([rq], [q], ([g]) => [ops.rotary(g!, rot, R, offset, true)]);
      Tape.record([rk], [k], ([g]) => [ops.rotary(g!, rot, R, offset, true)]);
      q = await this.hook(a + "hook_rot_q", rq);
      k = await this.hook(a + "hook_rot_k", rk);
    }
    // With a KV cache, this step's keys/values are appended and attention reads the whole cache.
    let [kAll, vAll, Pk, kvStride] = [k, v, P, P * Hkv * E];
    if (kv) {
      ops.kvWrite(k, v, kv.k[l], kv.v[l], offset);
      [kAll, vAll, Pk, kvStride] = [kv.k[l], kv.v[l], offset + P, kv.cap * Hkv * E];
    }
    let scale = cfg.useAttnScale ? cfg.attnScale : 1;
    if (cfg.scaleAttnByInverseLayerIdx) scale *= l + 1;
    const group = H / Hkv;
    // hook_z, then W_O (plus the residual in the same pass).
    const finish = async (z: Tensor): Promise<[Tensor, Tensor | null]> => {
      const zh = await this.hook(a + "hook_z", z);
      const [out, sum] = ops.linear(zh.reshape([B, P, H * E]), w.wo, w.bo, { resid });
      Tape.record([out], [zh], ([g]) => [ops.linearBack(g!, w.wo).moveTo([B, P, H, E])]);
      return [out, sum];
    };
    if (
      ops.attentionConfig.fused && !Tape.active && ops.flashFits(E) &&
      this.hookInert(a + "hook_attn_scores") && this.hookInert(a + "hook_pattern")
    ) {
      // Nothing reads the scores or the pattern: one pass, neither is written.
      const alpha = 1 / scale;
      return await finish(
        ops.flashAttention(q, kAll, vAll, { B, P, Pk, H, Hkv, E, kvStride, alpha, offset }),
      );
    }
    const scores = Tensor.empty([B, H, P, Pk]);
    ops.gemm(
      { t: scores, b1: H * P * Pk, b2: P * Pk, row: Pk, col: 1 },
      { t: q, b1: P * H * E, b2: E, row: H * E, col: 1 },
      { t: kAll, b1: kvStride, b2: E, row: 1, col: Hkv * E },
      {
        M: P,
        N: Pk,
        K: E,
        nb1: B,
        nb2: H,
        alpha: 1 / scale,
        causal: true,
        causalOffset: offset,
        bGroup: group,
      },
    );
    if (!kv) {
      const [qq, kk] = [q, k];
      Tape.record([scores], [qq, kk], ([gS]) => {
        // dq = α gS · k (per head, k of the head's KV group); dk = α gSᵀ · q summed over the group.
        const gq = Tensor.empty([B, P, H, E]);
        ops.gemm(
          { t: gq, b1: P * H * E, b2: E, row: H * E, col: 1 },
          { t: gS!, b1: H * P * P, b2: P * P, row: P, col: 1 },
          { t: kk, b1: P * Hkv * E, b2: E, row: Hkv * E, col: 1 },
          { M: P, N: E, K: P, nb1: B, nb2: H, alpha: 1 / scale, bGroup: group },
        );
        const gk = Tensor.empty([B, P, Hkv, E]);
        for (let j = 0; j < group; j++) {
          ops.gemm(
            { t: gk, b1: P * Hkv * E, b2: E, row: Hkv * E, col: 1 },
            { t: gS!, off: j * P * P, b1: H * P * P, b2: group * P * P, row: 1, col: P },
            { t: qq, off: j * E, b1: P * H * E, b2: group * E, row: H * E, col: 1 },
            { M: P, N: E, K: P, nb1: B, nb2: Hkv, alpha: 1 / scale, accumulate: j > 0 },
          );
        }
        return [gq, gk];
      });
    }
    const hookedScores = await this.hook(a + "hook_attn_scores", scores);
    const pattern0 = ops.softmax(hookedScores);
    Tape.record([pattern0], [hookedScores], ([g]) => [ops.softmaxGrad(g!, pattern0)]);
    const pattern = await this.hook(a + "hook_pattern", pattern0);
    const z = Tensor.empty([B, P, H, E]);
    ops.gemm(
      { t: z, b1: P * H * E, b2: E, row: H * E, col: 1 },
      { t: pattern, b1: H * P * Pk, b2: P * Pk, row: Pk, col: 1 },
      { t: vAll, b1: kvStride, b2: E, row: Hkv * E, col: 1 },
      { M: P, N: E, K: Pk, nb1: B, nb2: H, bGroup: group },
    );
    if (!kv) {
      const vv = v;
      Tape.record([z], [pattern, vv], ([gz]) => {
        // dpattern = gz · vᵀ; dv = patternᵀ · gz summed over the KV group.
        const gp = Tensor.empty([B, H, P, P]);
        ops.gemm(
          { t: gp, b1: H * P * P, b2: P * P, row: P, col: 1 },
          { t: gz!, b1: P * H * E, b2: E, row: H * E, col: 1 },
          { t: vv, b1: P * Hkv * E, b2: E, row: 1, col: Hkv * E },
          { M: P, N: P, K: E, nb1: B, nb2: H, bGroup: group },
        );
        const gv = Tensor.empty([B, P, Hkv, E]);
        for (let j = 0; j < group; j++) {
          ops.gemm(
            { t: gv, b1: P * Hkv * E, b2: E, row: Hkv * E, col: 1 },
            { t: pattern, off: j * P * P, b1: H * P * P, b2: group * P * P, row: 1, col: P },
            { t: gz!, off: j * E, b1: P * H * E, b2: group * E, row: H * E, col: 1 },
            { M: P, N: E, K: P, nb1: B, nb2: Hkv, accumulate: j > 0 },
          );
        }
        return [gp, gv];
      });
    }
    return await finish(z);
  }

  /**
   * MLP: mlp.hook_in, hook_pre, (gated: hook_pre_linear), hook_post, then W_out (plus `resid`
   * in the same pass when given). The activation is fused into the W_in pass.
   */
  protected async mlp(l: number, x: Tensor, resid?: Tensor): Promise<[Tensor, Tensor | null]> {
    const m = `blocks.${l}.mlp.`;
    const w = this.#w.blocks[l];
    const [B, P] = x.shape;
    const F = this.cfg.dMlp;
    const xin = await this.hook(m + "hook_in", x);
    let post: Tensor;
    if (w.wgate) {
      // TransformerLens's GatedMLP: post = act(x W_gate) * (x W_in) + b_in.
      const pre = await this.hook(m + "hook_pre", this.linear(xin, w.wgate, undefined, [B, P, F]));
      const lin = await this.hook(
        m + "hook_pre_linear",
        this.linear(xin, w.win, undefined, [B, P, F]),
      );
      const gated = ops.activation(pre, this.cfg.actFn, lin);
      Tape.record([gated], [pre, lin], ([g]) => ops.gatedGrad(g!, pre, lin, this.cfg.actFn));
      const withBias = w.bin ? gated.add(w.bin) : gated;
      if (withBias !== gated) Tape.record([withBias], [gated], ([g]) => [g]);
      post = await this.hook(m + "hook_post", withBias);
    } else {
      const [pre0, post0] = ops.linear(xin, w.win, w.bin, { act: this.cfg.actFn });
      const fn = this.cfg.actFn;
      Tape.record([pre0], [xin], ([g]) => [ops.linearBack(g!, w.win)]);
      const pre = await this.hook(m + "hook_pre", pre0);
      const post1 = pre === pre0 ? post0! : ops.activation(pre, fn);
      Tape.record([post1], [pre], ([g]) => [ops.activationGrad(g!, pre, fn)]);
      post = await this.hook(m + "hook_post", post1);
    }
    const [out, sum] = ops.linear(post, w.wout, w.bout, { resid });
    const postIn = post;
    Tape.record([out], [postIn], ([g]) => [ops.linearBack(g!, w.wout)]);
    return [out, sum];
  }

  /** unembed.hook_in, then logits = x · W_U + b_U at unembed.hook_out. */
  protected async unembed(x: Tensor): Promise<Tensor> {
    const xin = await this.hook("unembed.hook_in", x);
    const [logits] = ops.linear(xin, this.#w.wU, this.#w.bU, {}, this.cfg.dVocabOut);
    const wU = this.#w.wU, V = this.cfg.dVocabOut;
    Tape.record([logits], [xin], ([g]) => [ops.linearBack(g!, wU, V)]);
    return await this.hook("unembed.hook_out", logits);
  }

  /**
   * The logits a residual-stream direction writes directly: v [.., d_model] · W_U (no final norm,
   * no bias). The "logit lens" of, e.g., an SAE latent's decoder direction.
   *
   * @example
   * ```ts
   * using logits = model.unembedDirection(sae.decoderDirection(42));
   * ```
   */
  unembedDirection(v: Tensor): Tensor {
    this.#checkUsable();
    const [y] = ops.linear(v, this.#w.wU, undefined, {}, this.cfg.dVocabOut);
    return y;
  }

  /**
   * A processed weight read back to the CPU, in TransformerLens's layout: "embed.W_E"
   * [d_vocab, d_model], "blocks.L.attn.W_O" [heads, d_head, d_model] or "unembed.W_U"
   * [d_model, d_vocab].
   *
   * @example
   * ```ts
   * const { shape, data } = await model.weightData("unembed.W_U");
   * ```
   */
  async weightData(name: string): Promise<{ shape: number[]; data: Float32Array }> {
    this.#checkUsable();
    const { nHeads: H, dHead: E, dModel: D, dVocabOut: V } = this.cfg;
    const m = /^blocks\.(\d+)\.attn\.W_O$/.exec(name);
    if (m && Number(m[1]) < this.cfg.nLayers) {
      return {
        shape: [H, E, D],
        data: await this.#w.blocks[Number(m[1])].wo.toArray() as Float32Array,
      };
    }
    if (name === "embed.W_E") {
      return { shape: [...this.#w.wE.shape], data: await this.#w.wE.toArray() as Float32Array };
    }
    if (name === "unembed.W_U") {
      const padded = await this.#w.wU.toArray() as Float32Array;
      const ld = this.#w.wU.shape[1];
      const data = new Float32Array(D * V);
      for (let d = 0; d < D; d++) data.set(padded.subarray(d * ld, d * ld + V), d * V);
      return { shape: [D, V], data };
    }
    throw new HookNameError(
      `weightData: "${name}" is not available; use embed.W_E, blocks.L.attn.W_O or unembed.W_U.`,
    );
  }

  /** Frees the model's GPU weights. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const w = this.#w;
    const all = [
      w.wE,
      w.wPos,
      w.lnfw,
      w.lnfb,
      w.wU,
      w.bU,
      w.rot,
      ...w.blocks.flatMap((b) => Object.values(b)),
    ];
    for (const t of all) (t as Tensor | undefined)?.dispose();
  }

  /** Same as {@link HookedTransformer.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Steps between the EOS checks of `generate` (each waits for the GPU to finish its queue). */
const EOS_CHECK_EVERY = 4;
/** How long `generate` lets an EOS check's readback (~11 ms in Deno) run before reading it. */
const EOS_CHECK_LAG_MS = 12;

/**
 * Where generation ends once every row has made an EOS token among its generated positions
 * [from, to): just past the latest row's first EOS (TransformerLens stops at that step). Null
 * while some row has none.
 */
function eosEnd(
  ids: Int32Array | Float32Array,
  B: number,
  total: number,
  from: number,
  to: number,
  eos: number,
): number | null {
  let end = from;
  for (let b = 0; b < B; b++) {
    let i = from;
    while (i < to && ids[b * total + i] !== eos) i++;
    if (i === to) return null;
    end = Math.max(end, i + 1);
  }
  return end;
}

/** Drops the leading batch dimension (of size 1) of every cached tensor. */
function removeBatchDim(cache: ActivationCache): ActivationCache {
  const out = new Map<string, Tensor>();
  for (const k of cache.keys()) {
    const t = cache.get(k);
    if (t.shape[0] !== 1) {
      cache.dispose();
      throw new InputError(
        `removeBatchDim needs batch size 1; ${k} has shape [${t.shape.join(", ")}].`,
      );
    }
    out.set(k, t.clone().moveTo(t.shape.slice(1)).keep());
  }
  cache.dispose();
  return new ActivationCache(out, cache.model, false);
}
