/**
 * Hook registry: the JS functions attached to hook points, in the order they fire.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookRegistry } from "./hooks.ts";
 *
 * const reg = new HookRegistry();
 * const e = reg.add("blocks.0.hook_resid_pre", (act) => act.scale(2), {});
 * assert.deepEqual(reg.names(), ["blocks.0.hook_resid_pre"]);
 * reg.remove([e]);
 * assert.equal(reg.size, 0);
 * ```
 * @module
 */
import { HookNameError } from "../errors.ts";
import type { Tensor } from "../gpu/tensor.ts";

/** Information passed to a hook. */
export interface HookPoint {
  /** Full hook name, e.g. "blocks.0.hook_resid_pre". */
  readonly name: string;
}

/** A hook: return a Tensor to replace the activation, or nothing to leave it. */
export type HookFn = (act: Tensor, hook: HookPoint) => Tensor | void | Promise<Tensor | void>;

/** A hook and where it goes: a hook name or a predicate over hook names. */
export type HookSpec = [name: string | ((name: string) => boolean), fn: HookFn];

/** Options of `addHook`. */
export interface AddHookOptions {
  /** Survives `resetHooks()` (but not `resetHooks({ includingPermanent: true })`). */
  isPermanent?: boolean;
  /** Run before the hooks already at this point. */
  prepend?: boolean;
  /** "fwd" (default), or "bwd": the hook sees (and may replace) the gradient at this point. */
  dir?: "fwd" | "bwd";
}

/** One attached hook. */
export interface HookEntry {
  /** The hook point. */
  readonly name: string;
  /** The function. */
  readonly fn: HookFn;
  /** Permanent hooks survive resetHooks(). */
  readonly permanent: boolean;
  /** Forward or backward. */
  readonly dir: "fwd" | "bwd";
  /** Added with `prepend`: fires before the hooks of earlier layers too. */
  readonly prepend: boolean;
}

/** Hooks by hook name, as a call sees them (one registry, or several layered). */
export interface HookLookup {
  /** Hooks at `name` (forward, or backward with dir "bwd"), in firing order. */
  at(name: string, dir?: "fwd" | "bwd"): readonly HookEntry[];
}

/** Hooks by hook name, in firing order. */
export class HookRegistry {
  readonly #byName = new Map<string, HookEntry[]>();

  /** Attaches `fn` at `name`; returns the entry (for removal). */
  add(name: string, fn: HookFn, o: AddHookOptions): HookEntry {
    const dir = o.dir ?? "fwd";
    const entry: HookEntry = {
      name,
      fn,
      permanent: Boolean(o.isPermanent),
      dir,
      prepend: Boolean(o.prepend),
    };
    const key = dir === "fwd" ? name : `${name}\u0000bwd`;
    const list = this.#byName.get(key) ?? [];
    if (o.prepend) list.unshift(entry);
    else list.push(entry);
    this.#byName.set(key, list);
    return entry;
  }

  /** Removes exactly these entries. */
  remove(entries: Iterable<HookEntry>): void {
    for (const e of entries) {
      const key = e.dir === "fwd" ? e.name : `${e.name}\u0000bwd`;
      const list = this.#byName.get(key);
      if (!list) continue;
      const i = list.indexOf(e);
      if (i >= 0) list.splice(i, 1);
      if (!list.length) this.#byName.delete(key);
    }
  }

  /** Removes all non-permanent hooks (or all, with `includingPermanent`). */
  reset(includingPermanent = false): void {
    for (const [name, list] of this.#byName) {
      const keep = includingPermanent ? [] : list.filter((e) => e.permanent);
      if (keep.length) this.#byName.set(name, keep);
      else this.#byName.delete(name);
    }
  }

  /** Hooks at `name` (forward, or backward with dir "bwd"), in firing order (a copy). */
  at(name: string, dir: "fwd" | "bwd" = "fwd"): readonly HookEntry[] {
    return this.#byName.get(dir === "fwd" ? name : `${name}\u0000bwd`)?.slice() ?? [];
  }

  /** Every hook name with at least one hook. */
  names(): string[] {
    return [...this.#byName.keys()];
  }

  /** Every entry (for snapshots). */
  entries(): HookEntry[] {
    return [...this.#byName.values()].flat();
  }

  /** Total number of hooks. */
  get size(): number {
    let n = 0;
    for (const l of this.#byName.values()) n += l.length;
    return n;
  }
}

/**
 * Several registries seen as one, earliest first: at each hook point the hooks of every layer fire
 * in layer order, except that a layer's `prepend` hooks go before those of the earlier layers (as
 * they would had they been added to one registry).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookRegistry, layeredHooks } from "./hooks.ts";
 *
 * const persistent = new HookRegistry();
 * const scoped = new HookRegistry();
 * persistent.add("hook_embed", () => {}, {});
 * scoped.add("hook_embed", () => {}, { prepend: true });
 * const all = layeredHooks([persistent, scoped]);
 * // A prepended hook of a later layer still runs first, as in one registry.
 * assert.deepEqual(all.at("hook_embed").map((e) => e.prepend), [true, false]);
 * ```
 */
export function layeredHooks(layers: readonly HookRegistry[]): HookLookup {
  const used = layers.filter((l) => l.size > 0);
  if (used.length <= 1) return used[0] ?? layers[0] ?? new HookRegistry();
  return {
    at(name: string, dir: "fwd" | "bwd" = "fwd"): readonly HookEntry[] {
      let out: HookEntry[] = [];
      for (const l of used) {
        const here = l.at(name, dir);
        if (!here.length) continue;
        const first = here.filter((e) => e.prepend);
        out = [...first, ...out, ...here.filter((e) => !e.prepend)];
      }
      return out;
    },
  };
}

/**
 * Attaches hooks given by name or by a predicate over `names()` into `into`, resolving every name
 * first so that an invalid one (reported by `check`) attaches nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookNameError } from "../errors.ts";
 * import { attachHooks, HookRegistry } from "./hooks.ts";
 *
 * const registry = new HookRegistry();
 * const names = ["hook_embed", "hook_pos_embed"];
 * const checkName = (n: string) => {
 *   if (!names.includes(n)) throw new HookNameError(`no hook point ${n}`);
 * };
 * attachHooks([[(n) => n.startsWith("hook_"), () => {}]], {}, registry, () => names, checkName);
 * assert.deepEqual(registry.names(), ["hook_embed", "hook_pos_embed"]);
 * assert.throws(
 *   () => attachHooks([["hook_embed", () => {}], ["nope", () => {}]], {}, registry, () => names, checkName),
 *   HookNameError,
 * );
 * assert.equal(registry.size, 2); // the invalid name attached nothing
 * ```
 */
export function attachHooks(
  specs: readonly HookSpec[],
  opts: AddHookOptions,
  into: HookRegistry,
  names: () => readonly string[],
  check: (name: string) => void,
): HookEntry[] {
  if (opts.dir && opts.dir !== "fwd" && opts.dir !== "bwd") {
    throw new HookNameError(`Hook direction "${opts.dir}" is not supported; use "fwd" or "bwd".`);
  }
  const resolved: [string, HookFn][] = [];
  for (const [name, fn] of specs) {
    if (typeof name === "function") {
      for (const n of names()) if (name(n)) resolved.push([n, fn]);
    } else {
      check(name);
      resolved.push([name, fn]);
    }
  }
  return resolved.map(([n, fn]) => into.add(n, fn, opts));
}
