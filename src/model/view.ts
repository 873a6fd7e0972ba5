/**
 * Scopes as views. `model.hooks([...])` and `model.withSaes([...])` return a {@link ModelView}: a
 * `Disposable` that is also the model bound to one set of hooks and SAEs. A model's state is
 * layered: its persistent hooks and SAEs (`addHook`, `addSae`), then the scopes open now, in
 * opening order. A view's calls run with the persistent layer plus the view's own layers (its
 * parents' and its own), whatever other tasks open or close meanwhile; plain `model.*` calls run
 * with every open scope (the single-task `with model.saes(...)` habit of SAELens). Closing a view
 * removes exactly its layer, in any order; closing twice does nothing; closing never brings back
 * anything. Views are cheap (no weights copied) and can be passed around.
 *
 * @example
 * ```ts
 * import { HookedSAETransformer, SAE } from "../../mod.ts";
 * const model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * const sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
 * {
 *   using withSae = model.withSaes([sae]);
 *   using logits = await withSae.forward([[1, 2, 3]]); // through the SAE, whatever else runs
 *   console.log(logits.shape, [...withSae.saes.keys()]);
 * }
 * ```
 * @module
 */
import { DisposedError, SaeAttachError } from "../errors.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { ActivationCache } from "./cache.ts";
import type { AddHookOptions, HookSpec } from "./hooks.ts";
import type { ScopeLayer, ScopeStack } from "./scopes.ts";
import type {
  ForwardOptions,
  ForwardOutput,
  GenerateOptions,
  Input,
  LogitsAndLoss,
  RunWithCacheOptions,
  RunWithHooksOptions,
} from "./options.ts";
import {
  describeProvenance,
  provenanceFor,
  type SaeAttachment,
  type SaeInfo,
} from "./provenance.ts";

/** What a view calls on its model (HookedTransformer's public API). */
export interface ViewHost {
  forward(input: Input, opts?: ForwardOptions): Promise<ForwardOutput>;
  runWithHooks(input: Input, opts?: RunWithHooksOptions): Promise<ForwardOutput>;
  runWithCache(input: Input, opts?: RunWithCacheOptions): Promise<[ForwardOutput, ActivationCache]>;
  generate(input: Input, opts?: GenerateOptions): Promise<string | string[] | number[][]>;
  hookNames(): string[];
  hooks(specs: HookSpec[], opts?: AddHookOptions): ModelView;
  withSaes?(saes: SaeInfo[], opts?: object): ModelView;
}

/** A scope that is also a bound view of its model. See the module docs. */
export class ModelView implements Disposable {
  readonly #host: ViewHost;
  readonly #stack: ScopeStack;
  readonly #chain: readonly ScopeLayer[];
  readonly #layer: ScopeLayer;
  #closed = false;

  /**
   * A view over `host` (whose layered state is `stack`) with the layers `chain` (the last is its
   * own). Made by `model.hooks()` and `model.withSaes()`, not by user code.
   *
   * @example
   * ```ts
   * const view = model.hooks([["hook_embed", (a) => a.scale(2)]]);
   * ```
   */
  constructor(host: ViewHost, stack: ScopeStack, chain: readonly ScopeLayer[]) {
    this.#host = host;
    this.#stack = stack;
    this.#chain = Object.freeze([...chain]);
    this.#layer = chain[chain.length - 1];
  }

  /** Whether the scope was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The SAEs this view's calls run with (the model's persistent ones and the view's), by hook. */
  get saes(): ReadonlyMap<string, SaeAttachment> {
    return this.#stack.saes(this.#chain);
  }

  #run<T>(fn: () => T): T {
    if (this.#closed) {
      throw new DisposedError(
        "This scope was closed (its `using` block ended or close() was called): open a new one " +
          "with model.withSaes(...) or model.hooks(...).",
      );
    }
    return this.#stack.withChain(this.#chain, fn);
  }

  #async<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return this.#run(fn);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * The model's `forward`, with this view's hooks and SAEs.
   *
   * @example
   * ```ts
   * using logits = await view.forward([[1, 2, 3]]);
   * ```
   */
  forward(input: Input, opts: ForwardOptions & { returnType: "both" }): Promise<LogitsAndLoss>;
  forward(input: Input, opts?: ForwardOptions): Promise<Tensor>;
  forward(input: Input, opts: ForwardOptions = {}): Promise<ForwardOutput> {
    return this.#async(() => this.#host.forward(input, opts));
  }

  /**
   * The model's `runWithHooks`, with this view's hooks and SAEs under the call's own hooks.
   *
   * @example
   * ```ts
   * const out = await view.runWithHooks(tokens, { fwdHooks: [["hook_embed", (a) => a.scale(0)]] });
   * ```
   */
  runWithHooks(input: Input, opts: RunWithHooksOptions = {}): Promise<ForwardOutput> {
    return this.#async(() => this.#host.runWithHooks(input, opts));
  }

  /**
   * The model's `runWithCache` (gradients too, with `inclBwd`), with this view's hooks and SAEs.
   *
   * @example
   * ```ts
   * const [logits, cache] = await view.runWithCache(tokens, { inclBwd: true });
   * ```
   */
  runWithCache(
    input: Input,
    opts: RunWithCacheOptions = {},
  ): Promise<[ForwardOutput, ActivationCache]> {
    return this.#async(() => this.#host.runWithCache(input, opts));
  }

  /**
   * The model's `runWithCache({ inclBwd: true })`: gradients at every cached hook point.
   *
   * @example
   * ```ts
   * const [loss, cache] = await view.runWithBackward(tokens, { namesFilter: "hook_embed" });
   * ```
   */
  runWithBackward(
    input: Input,
    opts: Omit<RunWithCacheOptions, "inclBwd"> = {},
  ): Promise<[ForwardOutput, ActivationCache]> {
    return this.runWithCache(input, { ...opts, inclBwd: true });
  }

  /**
   * The model's `generate`, with this view's hooks and SAEs.
   *
   * @example
   * ```ts
   * const [ids] = await view.generate([[1, 2, 3]], { maxNewTokens: 4, doSample: false });
   * ```
   */
  generate(input: string, opts?: GenerateOptions): Promise<string>;
  generate(input: string[], opts?: GenerateOptions): Promise<string[]>;
  generate(input: number[][] | number[] | Tensor, opts?: GenerateOptions): Promise<number[][]>;
  generate(input: Input, opts: GenerateOptions = {}): Promise<string | string[] | number[][]> {
    return this.#async(() => this.#host.generate(input, opts));
  }

  /**
   * The hook points of the model as this view sees it (its SAEs' hooks in place of theirs).
   *
   * @example
   * ```ts
   * view.hookNames().filter((n) => n.includes("hook_sae"));
   * ```
   */
  hookNames(): string[] {
    return this.#run(() => this.#host.hookNames());
  }

  /**
   * A nested scope: this view's hooks and SAEs plus these hooks.
   *
   * @example
   * ```ts
   * using inner = view.hooks([["hook_embed", (a) => a.scale(2)]]);
   * ```
   */
  hooks(specs: HookSpec[], opts: AddHookOptions = {}): ModelView {
    return this.#run(() => this.#host.hooks(specs, opts));
  }

  /**
   * A nested scope: this view's hooks and SAEs plus these SAEs (an SAE at a hook the parent
   * already has replaces it in the child).
   *
   * @example
   * ```ts
   * using both = view.withSaes([otherSae]);
   * ```
   */
  withSaes(
    saes: SaeInfo[],
    opts: { useErrorTerm?: boolean; allowOtherModel?: boolean } = {},
  ): ModelView {
    const host = this.#host;
    if (!host.withSaes) {
      throw new SaeAttachError(
        "This model is a HookedTransformer: load it with HookedSAETransformer to attach SAEs.",
      );
    }
    return this.#run(() => host.withSaes!(saes, opts));
  }

  /**
   * Closes the scope: its layer leaves the model (plain calls no longer see it) and this view
   * no longer runs. Closing twice does nothing.
   *
   * @example
   * ```ts
   * const view = model.withSaes([sae]);
   * view.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stack.close(this.#layer);
  }

  /** Same as {@link ModelView.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * The view's SAEs and hooks, one per line.
   *
   * @example
   * ```ts
   * console.log(String(view));
   * ```
   */
  toString(): string {
    const p = provenanceFor(
      this.#stack.saes(this.#chain),
      this.#stack.hooks(this.#chain),
    );
    return `ModelView${this.#closed ? " (closed)" : ""}\n${describeProvenance(p)}`;
  }

  /** What `Deno.inspect` and `console.log` print: the same as toString(). */
  [Symbol.for("Deno.customInspect")](): string {
    return this.toString();
  }
}
