/**
 * ActivationCache: the activations `runWithCache` recorded, on the GPU, keyed by hook name, with
 * TransformerLens's shorthand names (`cache.get("resid_pre", 0)`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
 *
 * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * const [logits, cache] = await model.runWithCache([[1, 2, 3]]);
 * (logits as Tensor).dispose();
 * using _cache = cache;
 * const resid = cache.get("resid_pre", 1); // blocks.1.hook_resid_pre, owned by the cache
 * assert.deepEqual(resid.shape, [1, 3, 64]); // [batch, pos, d_model]
 * assert.equal((await resid.toArray()).length, 3 * 64);
 * ```
 * @module
 */
import { type Provenance, provenanceOf } from "./provenance.ts";
import { HookNameError, InputError } from "../errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { checkMask } from "./padding.ts";

const ALIASES: Record<string, string> = {
  attn: "pattern",
  attn_logits: "attn_scores",
  key: "k",
  query: "q",
  value: "v",
  mlp_pre: "pre",
  mlp_mid: "mid",
  mlp_post: "post",
};
const ATTN = new Set(["k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores"]);
const MLP = new Set(["pre", "post", "mid", "pre_linear"]);

/**
 * TransformerLens's `utils.get_act_name`: expands a short name to a full hook name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { actName } from "@hooklens/hooklens";
 *
 * assert.equal(actName("resid_pre", 0), "blocks.0.hook_resid_pre");
 * assert.equal(actName("scale", 0, "ln1"), "blocks.0.ln1.hook_scale");
 * assert.equal(actName("pattern", 1), "blocks.1.attn.hook_pattern");
 * ```
 */
export function actName(name: string, layer?: number, layerType?: string): string {
  if (name.includes(".") || name.startsWith("hook_")) return name;
  const n = ALIASES[name] ?? name;
  if (n === "scale" || n === "normalized") {
    return layer === undefined
      ? `ln_final.hook_${n}`
      : `blocks.${layer}.${layerType ?? "ln1"}.hook_${n}`;
  }
  let full = layer === undefined ? "" : `blocks.${layer}.`;
  let type = layerType;
  if (ATTN.has(n)) type = "attn";
  else if (MLP.has(n)) type = "mlp";
  else if (type === "a") type = "attn";
  else if (type === "m") type = "mlp";
  if (type) full += `${type}.`;
  return `${full}hook_${n}`;
}

/** The model facts the residual-stream helpers need (a HookedTransformer provides them). */
export interface CacheModel {
  /** nLayers, normalizationType, positional embedding type. */
  readonly cfg: {
    nLayers: number;
    nHeads: number;
    eps: number;
    normalizationType: string;
    positionalEmbeddingType: string;
  };
  /** Processed weights in TransformerLens's layout. */
  weightData(name: string): Promise<{ shape: number[]; data: Float32Array }>;
}

/** A stack of residual-stream components: [components, ...batch/pos dims, d_model]. */
export interface LabeledStack {
  /** The stack. */
  stack: Tensor;
  /** One label per component, as TransformerLens names them. */
  labels: string[];
}

/** Options shared by the residual-stream helpers. */
export interface StackOptions {
  /** Layer whose input is decomposed (default: the unembedding, n_layers; -1 means the same). */
  layer?: number;
  /** Take the input of the layer's MLP rather than its attention. */
  mlpInput?: boolean;
  /** Divide by the cached norm scale of that input (after centring, for LayerNorm models). */
  applyLn?: boolean;
  /**
   * Keep one position (negative counts from the end), removing the position dimension. When the
   * cache has an attention mask (a padded batch), it counts each row's real tokens: -1 is each
   * row's last real token.
   */
  posSlice?: number;
}

/** A CPU array with a shape. */
interface Arr {
  shape: number[];
  data: Float64Array;
}

function stackArrs(parts: Arr[]): Arr {
  const n = parts[0]?.data.length ?? 0;
  const data = new Float64Array(parts.length * n);
  parts.forEach((p, i) => data.set(p.data, i * n));
  return { shape: [parts.length, ...(parts[0]?.shape ?? [])], data };
}

/**
 * x[..., pos, d] -> x[..., d] at one position (negative from the end). With the run's attention
 * mask (x [..., batch, pos, d]), the position counts each row's real tokens: `pos` >= 0 is a
 * row's pos-th real token, a negative one counts back from its last real token.
 */
function slicePos(a: Arr, pos: number | undefined, mask: number[][] | null): Arr {
  if (pos === undefined) return a;
  const [P, D] = a.shape.slice(-2);
  const outer = a.data.length / (P * D);
  let at: (o: number) => number;
  if (mask && a.shape.length >= 3 && a.shape.at(-3) === mask.length) {
    const B = mask.length;
    const { starts, ends } = checkMask(mask, B, P);
    const rows = starts.map((s, b) => {
      const p = pos < 0 ? ends[b] + pos : s + pos;
      if (p < s || p >= ends[b]) {
        throw new InputError(
          `posSlice ${pos} is outside row ${b}'s ${ends[b] - s} real tokens (the cache's ` +
            "attentionMask: posSlice counts each row's real tokens).",
        );
      }
      return p;
    });
    at = (o) => rows[o % B];
  } else {
    const p = pos < 0 ? pos + P : pos;
    if (p < 0 || p >= P) throw new InputError(`posSlice ${pos} is outside 0..${P - 1}.`);
    at = () => p;
  }
  const data = new Float64Array(outer * D);
  for (let o = 0; o < outer; o++) {
    const p = at(o);
    data.set(a.data.subarray((o * P + p) * D, (o * P + p + 1) * D), o * D);
  }
  return { shape: [...a.shape.slice(0, -2), D], data };
}

/** Cached activations by hook name. Disposing frees every cached buffer. */
export class ActivationCache implements Disposable {
  #store: Map<string, Tensor>;
  /** The model that filled the cache (for the residual-stream helpers), if known. */
  readonly model: CacheModel | null;
  /** Whether tensors keep their batch dimension. */
  readonly hasBatchDim: boolean;
  /**
   * The run's attention mask, [batch][pos] (1: a real token, 0: a pad), or null when every
   * position was real: the cached activations at pad positions are not the model's output for
   * any prompt. With a mask, the helpers' `posSlice` counts each row's real tokens.
   */
  attentionMask: number[][] | null = null;

  /**
   * A cache over these tensors (model calls make them; build one by hand to use the helpers on
   * tensors of your own).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ActivationCache, initGpu, Tensor } from "@hooklens/hooklens";
   *
   * await initGpu(); // tensors need the device (loading a model or SAE also starts it)
   * using cache = new ActivationCache(new Map([["hook_embed", Tensor.from([1, 2], [1, 1, 2])]]));
   * assert.deepEqual(cache.keys(), ["hook_embed"]);
   * ```
   *
   * @param store tensors by hook name (the cache takes ownership).
   * @param model the model that filled it (needed by stackHeadResults and logitAttrs).
   * @param hasBatchDim whether the tensors have a leading batch dimension.
   */
  constructor(
    store: Map<string, Tensor> = new Map(),
    model: CacheModel | null = null,
    hasBatchDim = true,
  ) {
    this.#store = store;
    this.model = model;
    this.hasBatchDim = hasBatchDim;
  }

  /**
   * What ran to fill this cache (the SAEs by hook and the user hooks), for a cache a model call
   * returned; undefined for one built by hand.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ActivationCache, HookedSAETransformer, SAE, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using view = model.withSaes([sae]);
   * const [logits, cache] = await view.runWithCache([[1, 2, 3]], { namesFilter: "hook_embed" });
   * (logits as Tensor).dispose();
   * using _cache = cache;
   * assert.deepEqual(cache.provenance?.saes.map((s) => s.hookName), ["blocks.1.hook_resid_pre"]);
   * assert.equal(new ActivationCache().provenance, undefined); // built by hand
   * ```
   */
  get provenance(): Provenance | undefined {
    return provenanceOf(this);
  }

  #model(): CacheModel {
    if (!this.model) {
      throw new InputError("This cache has no model: make it with model.runWithCache.");
    }
    return this.model;
  }

  async #arr(name: string): Promise<Arr> {
    const t = this.get(name);
    return { shape: [...t.shape], data: Float64Array.from(await t.toArray()) };
  }

  #layerArg(layer: number | undefined): number {
    const n = this.#model().cfg.nLayers;
    const l = layer === undefined || layer === -1 ? n : layer;
    if (!Number.isInteger(l) || l < 0 || l > n) {
      throw new InputError(`layer ${layer} is outside 0..${n}.`);
    }
    return l;
  }

  /**
   * TransformerLens's apply_ln_to_stack on CPU arrays: centre (LayerNorm models), then divide by
   * the cached scale of `layer`'s input, or, with `recompute` (accumulated_resid into the
   * unembedding), by each component's own norm, as if it were the whole residual stream.
   */
  async #applyLn(
    stack: Arr,
    layer: number,
    mlpInput: boolean,
    pos: number | undefined,
    recompute = false,
  ): Promise<Arr> {
    const cfg = this.#model().cfg;
    const norm = cfg.normalizationType;
    const D = stack.shape.at(-1)!;
    const out = Float64Array.from(stack.data);
    if (norm === "LN" || norm === "LNPre") {
      for (let o = 0; o < out.length; o += D) {
        let m = 0;
        for (let d = 0; d < D; d++) m += out[o + d];
        m /= D;
        for (let d = 0; d < D; d++) out[o + d] -= m;
      }
    }
    if (recompute && layer === cfg.nLayers) {
      for (let o = 0; o < out.length; o += D) {
        let ss = 0;
        for (let d = 0; d < D; d++) ss += out[o + d] * out[o + d];
        const sc = Math.sqrt(ss / D + cfg.eps);
        for (let d = 0; d < D; d++) out[o + d] /= sc;
      }
      return { shape: stack.shape, data: out };
    }
    const scaleName = layer === cfg.nLayers
      ? "ln_final.hook_scale"
      : `blocks.${layer}.ln${mlpInput ? 2 : 1}.hook_scale`;
    const scale = slicePos(await this.#arr(scaleName), pos, this.attentionMask); // [..., 1]
    const per = scale.data.length;
    for (let i = 0; i < out.length; i++) out[i] /= scale.data[Math.floor(i / D) % per];
    return { shape: stack.shape, data: out };
  }

  #result(a: Arr, labels: string[], returnLabels: boolean | undefined): Tensor | LabeledStack {
    const t = Tensor.from(Float32Array.from(a.data), a.shape);
    return returnLabels ? { stack: t, labels } : t;
  }

  /**
   * The residual stream accumulated up to each layer (TransformerLens's `accumulated_resid`):
   * resid_pre of every layer below `layer` (and resid_mid with `inclMid`), plus the final
   * resid_post when `layer` is n_layers. Labels "0_pre", "0_mid", ..., "final_post". With
   * `applyLn` into the unembedding, each component is normalised by its own norm (as
   * TransformerLens does there), elsewhere by the cached scale.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type LabeledStack, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const [logits, cache] = await model.runWithCache([[1, 2, 3]]);
   * (logits as Tensor).dispose();
   * using _cache = cache;
   * const { stack, labels } = await cache.accumulatedResid({
   *   applyLn: true,
   *   returnLabels: true,
   * }) as LabeledStack;
   * using _stack = stack;
   * assert.deepEqual(labels, ["0_pre", "1_pre", "final_post"]);
   * assert.deepEqual(stack.shape, [3, 1, 3, 64]); // [components, batch, pos, d_model]
   * ```
   */
  async accumulatedResid(
    o: StackOptions & { inclMid?: boolean; returnLabels?: boolean } = {},
  ): Promise<Tensor | LabeledStack> {
    const layer = this.#layerArg(o.layer);
    const n = this.#model().cfg.nLayers;
    const parts: Arr[] = [], labels: string[] = [];
    for (let l = 0; l <= layer; l++) {
      if (l === n) {
        parts.push(
          slicePos(await this.#arr(actName("resid_post", n - 1)), o.posSlice, this.attentionMask),
        );
        labels.push("final_post");
        continue;
      }
      parts.push(
        slicePos(await this.#arr(actName("resid_pre", l)), o.posSlice, this.attentionMask),
      );
      labels.push(`${l}_pre`);
      if ((o.inclMid && l < layer) || (o.mlpInput && l === layer)) {
        parts.push(
          slicePos(await this.#arr(actName("resid_mid", l)), o.posSlice, this.attentionMask),
        );
        labels.push(`${l}_mid`);
      }
    }
    let a = stackArrs(parts);
    if (o.applyLn) a = await this.#applyLn(a, layer, Boolean(o.mlpInput), o.posSlice, true);
    return this.#result(a, labels, o.returnLabels);
  }

  /**
   * The residual stream into `layer` split by what wrote it (TransformerLens's
   * `decompose_resid`): embed, pos_embed, then each layer's attn_out and mlp_out.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const [logits, cache] = await model.runWithCache([[1, 2, 3]]);
   * (logits as Tensor).dispose();
   * using _cache = cache;
   * using stack = await cache.decomposeResid() as Tensor;
   * // embed, pos_embed, then attn_out and mlp_out of each of the 2 layers
   * assert.deepEqual(stack.shape, [6, 1, 3, 64]); // [components, batch, pos, d_model]
   * ```
   */
  async decomposeResid(
    o: StackOptions & {
      mode?: "all" | "attn" | "mlp";
      inclEmbeds?: boolean;
      returnLabels?: boolean;
    } = {},
  ): Promise<Tensor | LabeledStack> {
    const layer = this.#layerArg(o.layer);
    const cfg = this.#model().cfg;
    const mode = o.mode ?? "all";
    const parts: Arr[] = [], labels: string[] = [];
    const add = async (name: string, label: string) => {
      parts.push(slicePos(await this.#arr(name), o.posSlice, this.attentionMask));
      labels.push(label);
    };
    if (o.inclEmbeds ?? true) {
      await add("hook_embed", "embed");
      if (cfg.positionalEmbeddingType === "standard") await add("hook_pos_embed", "pos_embed");
    }
    for (let l = 0; l < layer; l++) {
      if (mode !== "mlp") await add(actName("attn_out", l), `${l}_attn_out`);
      if (mode !== "attn") await add(actName("mlp_out", l), `${l}_mlp_out`);
    }
    if (o.mlpInput && mode !== "mlp") await add(actName("attn_out", layer), `${layer}_attn_out`);
    let a = stackArrs(parts);
    if (o.applyLn) a = await this.#applyLn(a, layer, Boolean(o.mlpInput), o.posSlice);
    return this.#result(a, labels, o.returnLabels);
  }

  /**
   * Each attention head's output in the residual stream, z · W_O per head without b_O
   * (TransformerLens's `stack_head_results`), for the layers below `layer`; labels "L0H0", ...
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type LabeledStack, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const [logits, cache] = await model.runWithCache([[1, 2, 3]]);
   * (logits as Tensor).dispose();
   * using _cache = cache;
   * const { stack, labels } = await cache.stackHeadResults({
   *   applyLn: true,
   *   returnLabels: true,
   * }) as LabeledStack;
   * using _stack = stack;
   * assert.equal(labels.length, 2 * 4); // 2 layers x 4 heads
   * assert.equal(labels[5], "L1H1");
   * assert.deepEqual(stack.shape, [8, 1, 3, 64]);
   * ```
   */
  async stackHeadResults(
    o: StackOptions & { returnLabels?: boolean } = {},
  ): Promise<Tensor | LabeledStack> {
    const model = this.#model();
    const layer = this.#layerArg(o.layer);
    const parts: Arr[] = [], labels: string[] = [];
    for (let l = 0; l < layer; l++) {
      const z = await this.#arr(actName("z", l)); // [..., pos, H, E]
      const { shape: [H, E, D], data: wo } = await model.weightData(`blocks.${l}.attn.W_O`);
      const rows = z.data.length / (H * E);
      for (let h = 0; h < H; h++) {
        const out = new Float64Array(rows * D);
        for (let r = 0; r < rows; r++) {
          for (let e = 0; e < E; e++) {
            const zv = z.data[(r * H + h) * E + e];
            if (zv === 0) continue;
            const w = (h * E + e) * D;
            for (let d = 0; d < D; d++) out[r * D + d] += zv * wo[w + d];
          }
        }
        parts.push(
          slicePos(
            { shape: [...z.shape.slice(0, -2), D], data: out },
            o.posSlice,
            this.attentionMask,
          ),
        );
        labels.push(`L${l}H${h}`);
      }
    }
    let a = stackArrs(parts);
    if (o.applyLn) a = await this.#applyLn(a, layer, Boolean(o.mlpInput), o.posSlice);
    return this.#result(a, labels, o.returnLabels);
  }

  /**
   * TransformerLens's `apply_ln_to_stack`: centres each component (LayerNorm models) and divides
   * by the cached norm scale of `layer`'s input (the final norm by default).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const [logits, cache] = await model.runWithCache([[1, 2, 3]]);
   * (logits as Tensor).dispose();
   * using _cache = cache;
   * // A stack at the last position, scaled by the final norm's scale there (as TransformerLens).
   * using stack = await cache.decomposeResid({ posSlice: -1 }) as Tensor;
   * using scaled = await cache.applyLnToStack(stack, { posSlice: -1 });
   * assert.deepEqual(scaled.shape, [6, 1, 64]);
   * ```
   */
  async applyLnToStack(stack: Tensor, o: StackOptions = {}): Promise<Tensor> {
    const a: Arr = { shape: [...stack.shape], data: Float64Array.from(await stack.toArray()) };
    const r = await this.#applyLn(a, this.#layerArg(o.layer), Boolean(o.mlpInput), o.posSlice);
    return Tensor.from(Float32Array.from(r.data), r.shape);
  }

  /**
   * Direct logit attribution (TransformerLens's `logit_attrs`): each component's contribution to
   * the logit of `tokens` (minus `incorrectTokens`), after the final norm's cached scale.
   * `stack` is [components, batch, (pos,) d_model]; `tokens` one id per batch row (and position).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const [logits, cache] = await model.runWithCache([[1, 2, 3]]);
   * (logits as Tensor).dispose();
   * using _cache = cache;
   * using stack = await cache.decomposeResid({ posSlice: -1 }) as Tensor; // [6, batch, d_model]
   * using attrs = await cache.logitAttrs(stack, { tokens: [42], incorrectTokens: [7] });
   * assert.deepEqual(attrs.shape, [6, 1]); // each component's share of logit 42 minus logit 7
   * ```
   */
  async logitAttrs(
    stack: Tensor,
    o: { tokens: number[]; incorrectTokens?: number[]; posSlice?: number },
  ): Promise<Tensor> {
    const model = this.#model();
    const { shape: [D, V], data: wu } = await model.weightData("unembed.W_U");
    const scaled = await this.#applyLn(
      { shape: [...stack.shape], data: Float64Array.from(await stack.toArray()) },
      model.cfg.nLayers,
      false,
      o.posSlice,
    );
    const C = scaled.shape[0];
    const rows = scaled.data.length / (C * D);
    if (o.tokens.length !== rows) {
      throw new InputError(`logitAttrs: ${o.tokens.length} tokens for ${rows} rows of the stack.`);
    }
    const out = new Float64Array(C * rows);
    for (let c = 0; c < C; c++) {
      for (let r = 0; r < rows; r++) {
        let s = 0;
        const t = o.tokens[r], u = o.incorrectTokens?.[r];
        for (let d = 0; d < D; d++) {
          const dir = wu[d * V + t] - (u === undefined ? 0 : wu[d * V + u]);
          s += scaled.data[(c * rows + r) * D + d] * dir;
        }
        out[c * rows + r] = s;
      }
    }
    return Tensor.from(Float32Array.from(out), scaled.shape.slice(0, -1));
  }

  /** Hook names in firing order. */
  keys(): string[] {
    return [...this.#store.keys()];
  }

  /** Whether a (full or short) name is cached. */
  has(name: string, layer?: number, layerType?: string): boolean {
    return this.#store.has(actName(name, layer, layerType));
  }

  /**
   * The activation at a hook: a full name or a TransformerLens shorthand.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const [logits, cache] = await model.runWithCache([[1, 2, 3]]);
   * (logits as Tensor).dispose();
   * using _cache = cache;
   * assert.equal(cache.get("pattern", 0), cache.get("blocks.0.attn.hook_pattern"));
   * assert.deepEqual(cache.get("pattern", 0).shape, [1, 4, 3, 3]); // [batch, head, query, key]
   * ```
   */
  get(name: string, layer?: number, layerType?: string): Tensor {
    const full = actName(name, layer, layerType);
    const t = this.#store.get(full);
    if (!t) {
      throw new HookNameError(
        `"${full}" is not in the cache; cached hooks: ${this.keys().join(", ") || "(none)"}.`,
      );
    }
    return t;
  }

  /** Number of cached tensors. */
  get size(): number {
    return this.#store.size;
  }

  /** Adds an entry (used by the model while running). */
  set(name: string, t: Tensor): void {
    this.#store.get(name)?.dispose();
    this.#store.set(name, t);
  }

  /** Reads every cached tensor back to the CPU in one sync. */
  async toArrays(): Promise<Map<string, Float32Array | Int32Array>> {
    const out = new Map<string, Float32Array | Int32Array>();
    const entries = [...this.#store.entries()];
    const arrays = await Promise.all(entries.map(([, t]) => t.toArray()));
    entries.forEach(([k], i) => out.set(k, arrays[i]));
    return out;
  }

  /** Frees every cached buffer. */
  dispose(): void {
    for (const t of this.#store.values()) t.dispose();
    this.#store.clear();
  }

  /** Same as {@link ActivationCache.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * A `namesFilter` option as a predicate: a name, a list of names, or a predicate (default: all).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { namesFilterFn } from "./cache.ts";
 *
 * assert.equal(namesFilterFn(["hook_embed"])("hook_embed"), true);
 * assert.equal(namesFilterFn("hook_embed")("hook_pos_embed"), false);
 * assert.equal(namesFilterFn(undefined)("anything"), true);
 * ```
 */
export function namesFilterFn(
  f: string | string[] | ((name: string) => boolean) | undefined,
): (name: string) => boolean {
  return f === undefined
    ? () => true
    : typeof f === "string"
    ? (n: string) => n === f
    : Array.isArray(f)
    ? (n: string) => f.includes(n)
    : f;
}

/**
 * Drops the leading batch dimension (of size 1) of every cached tensor: a new cache; `cache` is
 * disposed (also when it throws).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
 * import { removeBatchDim } from "./cache.ts";
 *
 * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * const [logits, cache] = await model.runWithCache([[1, 2, 3]], { namesFilter: "hook_embed" });
 * (logits as Tensor).dispose();
 * using single = removeBatchDim(cache); // `cache` is disposed
 * assert.deepEqual(single.get("hook_embed").shape, [3, 64]);
 * ```
 */
export function removeBatchDim(cache: ActivationCache): ActivationCache {
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
