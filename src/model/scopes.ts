/**
 * A model's layered hooks and SAEs: the persistent layer (addHook, addSae), then the scopes open
 * now in opening order, and what a call starting now runs with (a view's own layers while its call
 * starts, see {@link ScopeStack.withChain}). Closing removes exactly one layer; nothing is ever
 * restored from a snapshot. See view.ts for the rules as users see them.
 *
 * @example
 * ```ts
 * import { HookRegistry } from "./hooks.ts";
 * import { ScopeStack } from "./scopes.ts";
 * const stack = new ScopeStack(new HookRegistry(), () => new Map());
 * const layer = { hooks: new HookRegistry(), saes: null };
 * const chain = stack.open(layer, true); // plain calls see it now
 * stack.close(layer);
 * console.log(chain.length, stack.openLayers.length); // 1 0
 * ```
 * @module
 */
import type { CallSpec } from "./calls.ts";
import type { HookLayer } from "./components/index.ts";
import { type HookRegistry, layeredHooks } from "./hooks.ts";
import { provenanceFor, type SaeAttachment } from "./provenance.ts";

/** One layer of a model's hooks and SAEs: what one scope added. */
export interface ScopeLayer {
  /** Hooks of the scope, or null. */
  readonly hooks: HookRegistry | null;
  /** SAEs of the scope by hook name, or null. */
  readonly saes: ReadonlyMap<string, SaeAttachment> | null;
}

/** The layered state of one model. See the module docs. */
export class ScopeStack {
  /** The persistent hooks. */
  readonly registry: HookRegistry;
  readonly #persistentSaes: () => ReadonlyMap<string, SaeAttachment>;
  #open: ScopeLayer[] = [];
  #override: readonly ScopeLayer[] | null = null;

  /**
   * The stack over a model's persistent hooks and SAEs (read each time, as they change).
   *
   * @example Not run as a doc test: needs the scope stack a HookedTransformer owns (model.ts); use model.hooks / model.withSaes
   * ```
   * const stack = new ScopeStack(registry, () => persistentSaes);
   * ```
   */
  constructor(registry: HookRegistry, persistentSaes: () => ReadonlyMap<string, SaeAttachment>) {
    this.registry = registry;
    this.#persistentSaes = persistentSaes;
  }

  /** The open scopes, in opening order. */
  get openLayers(): readonly ScopeLayer[] {
    return this.#open;
  }

  /**
   * Runs `fn` synchronously as if the open scopes were `chain` (how a view's call sees its own
   * layers: a call reads them when it starts, before it awaits anything).
   *
   * @example Not run as a doc test: needs the scope stack a HookedTransformer owns (model.ts); use model.hooks / model.withSaes
   * ```
   * const names = stack.withChain(view.chain, () => model.hookNames());
   * ```
   */
  withChain<T>(chain: readonly ScopeLayer[], fn: () => T): T {
    const prev = this.#override;
    this.#override = chain;
    try {
      return fn();
    } finally {
      this.#override = prev;
    }
  }

  /**
   * The layers a call starting now runs with: a view's (inside withChain), else every open one.
   *
   * @example Not run as a doc test: needs the scope stack a HookedTransformer owns (model.ts); use model.hooks / model.withSaes
   * ```
   * const layers = stack.chain();
   * ```
   */
  chain(): readonly ScopeLayer[] {
    return this.#override ?? this.#open;
  }

  /**
   * Opens a scope with `layer` and returns the new view's layers: the parent view's then `layer`
   * when a view opens it (inside withChain), `layer` alone when the model does (other open scopes
   * are not the view's). `register` makes plain calls see it until it closes.
   *
   * @example Not run as a doc test: needs the scope stack a HookedTransformer owns (model.ts); use model.hooks / model.withSaes
   * ```
   * const chain = stack.open({ hooks: null, saes: new Map() }, false); // a private view
   * ```
   */
  open(layer: ScopeLayer, register: boolean): readonly ScopeLayer[] {
    if (register) this.#open = [...this.#open, layer];
    return [...(this.#override ?? []), layer];
  }

  /**
   * Removes `layer` from the open scopes (nothing if it is not open).
   *
   * @example Not run as a doc test: needs the scope stack a HookedTransformer owns (model.ts); use model.hooks / model.withSaes
   * ```
   * stack.close(layer);
   * ```
   */
  close(layer: ScopeLayer): void {
    this.#open = this.#open.filter((l) => l !== layer);
  }

  /**
   * The SAEs a call with these layers runs with: the persistent ones, then each layer's (a later
   * layer's SAE at the same hook wins).
   *
   * @example Not run as a doc test: needs the scope stack a HookedTransformer owns (model.ts); use model.hooks / model.withSaes
   * ```
   * const saes = stack.saes();
   * ```
   */
  saes(chain: readonly ScopeLayer[] = this.chain()): ReadonlyMap<string, SaeAttachment> {
    const out = new Map(this.#persistentSaes());
    for (const l of chain) for (const [h, a] of l.saes ?? []) out.set(h, a);
    return out;
  }

  /**
   * The hook registries a call with these layers runs with, persistent first.
   *
   * @example Not run as a doc test: needs the scope stack a HookedTransformer owns (model.ts); use model.hooks / model.withSaes
   * ```
   * const count = stack.hooks().reduce((n, r) => n + r.size, 0);
   * ```
   */
  hooks(chain: readonly ScopeLayer[] = this.chain()): HookRegistry[] {
    return [this.registry, ...chain.flatMap((l) => l.hooks ? [l.hooks] : [])];
  }

  /**
   * What a call starting now runs with, plus `own` hooks for that call only; `saeLayer` splices
   * the SAEs in (it may throw a typed error for an SAE that cannot run).
   *
   * @example Not run as a doc test: needs the scope stack a HookedTransformer owns (model.ts); use model.hooks / model.withSaes
   * ```
   * const spec = stack.spec(null, () => null);
   * ```
   */
  spec(
    own: HookRegistry | null,
    saeLayer: (saes: ReadonlyMap<string, SaeAttachment>) => HookLayer | null,
  ): CallSpec {
    const chain = this.chain();
    const regs = this.hooks(chain);
    if (own) regs.push(own);
    const saes = this.saes(chain);
    return {
      hooks: layeredHooks(regs),
      layer: saes.size ? saeLayer(saes) : null,
      provenance: provenanceFor(saes, regs),
    };
  }
}
