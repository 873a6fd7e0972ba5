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
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
 * {
 *   using withSae = model.withSaes([sae]);
 *   using logits = await withSae.forward([[1, 2, 3]]); // through the SAE, whatever else runs
 *   assert.deepEqual(logits.shape, [1, 3, 1000]);
 *   assert.deepEqual([...withSae.saes.keys()], ["blocks.1.hook_resid_pre"]);
 * }
 * assert.equal(model.attachedSaes.size, 0); // the scope's end detached it
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
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using view = model.hooks([["hook_embed", (a) => a.scale(2)]]);
   * assert.equal(view.closed, false);
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
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using view = model.hooks([["hook_embed", (a) => a.scale(0)]]);
   * using logits = await view.forward([[1, 2, 3]]);
   * assert.deepEqual(logits.shape, [1, 3, 1000]);
   * ```
   */
  forward(input: Input, opts: ForwardOptions & { returnType: "both" }): Promise<LogitsAndLoss>;
  /** Logits [batch, pos, d_vocab], or with `returnType: "loss"` the loss (a scalar, shape []). */
  forward(input: Input, opts?: ForwardOptions): Promise<Tensor>;
  forward(input: Input, opts: ForwardOptions = {}): Promise<ForwardOutput> {
    return this.#async(() => this.#host.forward(input, opts));
  }

  /**
   * The model's `runWithHooks`, with this view's hooks and SAEs under the call's own hooks.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * const order: string[] = [];
   * using view = model.hooks([["hook_embed", () => void order.push("view")]]);
   * using out = await view.runWithHooks([[1, 2, 3]], {
   *   fwdHooks: [["hook_embed", () => void order.push("call")]],
   * }) as Tensor;
   * assert.deepEqual(order, ["view", "call"]); // the call's hooks run after the view's
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
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using view = model.hooks([["hook_embed", (a) => a.scale(2)]]);
   * const [logits, cache] = await view.runWithCache([[1, 2, 3]], { namesFilter: "hook_embed" });
   * using _cache = cache;
   * using _logits = logits as Tensor;
   * assert.deepEqual(cache.keys(), ["hook_embed"]); // the cache holds the hooked value
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
   * import assert from "node:assert/strict";
   * import { HookedTransformer, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using view = model.hooks([]);
   * const [loss, cache] = await view.runWithBackward([[1, 2, 3]], { namesFilter: "hook_embed" });
   * using _cache = cache;
   * using _loss = loss as Tensor;
   * assert.deepEqual(cache.get("hook_embed_grad").shape, [1, 3, 64]); // d loss / d hook_embed
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
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using view = model.hooks([]);
   * const [ids] = await view.generate([[1, 2, 3]], { maxNewTokens: 4, doSample: false });
   * assert.equal(ids.length, 3 + 4);
   * ```
   */
  generate(input: string, opts?: GenerateOptions): Promise<string>;
  /** One completion per prompt text. */
  generate(input: string[], opts?: GenerateOptions): Promise<string[]>;
  /** Token ids in, token ids out: each row is its prompt followed by the new tokens. */
  generate(input: number[][] | number[] | Tensor, opts?: GenerateOptions): Promise<number[][]>;
  generate(input: Input, opts: GenerateOptions = {}): Promise<string | string[] | number[][]> {
    return this.#async(() => this.#host.generate(input, opts));
  }

  /**
   * The hook points of the model as this view sees it (its SAEs' hooks in place of theirs).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using view = model.withSaes([sae]);
   * assert.ok(view.hookNames().includes("blocks.1.hook_resid_pre.hook_sae_acts_post"));
   * assert.ok(!model.hookNames().includes("blocks.1.hook_resid_pre")); // open scope: model too
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
   * import assert from "node:assert/strict";
   * import { HookedTransformer } from "@hooklens/hooklens";
   *
   * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * let calls = 0;
   * using view = model.hooks([["hook_embed", () => void calls++]]);
   * using inner = view.hooks([["hook_embed", () => void calls++]]);
   * using _logits = await inner.forward([[1, 2]]);
   * assert.equal(calls, 2); // the outer view's hook and the inner one
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
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using other = await SAE.load("tests/reference/gpt2_tiny/saes/topk_mlp_out0");
   * using view = model.withSaes([sae]);
   * using both = view.withSaes([other]);
   * assert.equal(both.saes.size, 2);
   * assert.equal(view.saes.size, 1);
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
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * const view = model.withSaes([sae]);
   * view.close();
   * view.close(); // closing twice does nothing
   * assert.equal(model.attachedSaes.size, 0);
   * await assert.rejects(view.forward([[1, 2]])); // a closed view no longer runs
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
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using view = model.withSaes([sae]);
   * assert.match(String(view), /blocks\.1\.hook_resid_pre/);
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
