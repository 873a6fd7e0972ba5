/**
 * ActivationCache: the activations `runWithCache` recorded, on the GPU, keyed by hook name, with
 * TransformerLens's shorthand names (`cache.get("resid_pre", 0)`).
 *
 * @example
 * ```ts
 * const [logits, cache] = await model.runWithCache([[1, 2, 3]]);
 * using _c = cache;
 * const resid = await cache.get("resid_pre", 1).toArray();
 * ```
 * @module
 */
import { HookNameError } from "../errors.ts";
import type { Tensor } from "../gpu/tensor.ts";

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
 * actName("resid_pre", 0);        // "blocks.0.hook_resid_pre"
 * actName("scale", 0, "ln1");     // "blocks.0.ln1.hook_scale"
 * actName("pattern", 1);          // "blocks.1.attn.hook_pattern"
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

/** Cached activations by hook name. Disposing frees every cached buffer. */
export class ActivationCache implements Disposable {
  #store: Map<string, Tensor>;

  /** @param store tensors by hook name (the cache takes ownership). */
  constructor(store: Map<string, Tensor> = new Map()) {
    this.#store = store;
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
   * cache.get("blocks.0.attn.hook_pattern"); cache.get("pattern", 0);
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
