/**
 * The run context: what a component sees of the call it is part of. It is made once per call (a
 * forward pass, a generation step, a backward pass) and carries the hook function in effect
 * (plain hooks, or with SAEs spliced in by a {@link HookLayer}), whether a hook point may replace
 * its activation, the KV cache of a generation step, and whether the backward tape is recording.
 * Components read nothing else of the model's mutable state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { HookRegistry } from "../hooks.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 *
 * await initGpu();
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * const registry = new HookRegistry();
 * registry.add("blocks.0.hook_resid_pre", (a) => a.scale(2), {});
 * const ctx = contextFor(cfg, plainHookPoints(registry, null), null, null);
 * using x = Tensor.from([1, 2], [1, 1, 2]);
 * const resid = await ctx.hook("blocks.0.hook_resid_pre", x);
 * assert.deepEqual([...await resid.toArray()], [2, 4]);
 * ```
 * @module
 */
import { CallAbortedError, ShapeError } from "../../errors.ts";
import * as ops from "../../gpu/ops.ts";
import { Tensor } from "../../gpu/tensor.ts";
import type { ActivationCache } from "../cache.ts";
import type { HookedTransformerConfig } from "../config.ts";
import type { HookLookup } from "../hooks.ts";
import type { PadState } from "../padding.ts";
import { Tape } from "../tape.ts";

/** Which hooks a run caches and where (runWithCache). */
export interface CacheTarget {
  /** Where the cached activations go. */
  cache: ActivationCache;
  /** Which hook names are cached. */
  cacheFilter: (name: string) => boolean;
}

/** A KV cache: per layer keys (after rotary) and values [B, cap, Hkv, D]. */
export interface KvState {
  /** Keys per layer. */
  k: Tensor[];
  /** Values per layer. */
  v: Tensor[];
  /** Position of the first token of the current step. */
  offset: number;
  /** Positions the cache holds. */
  cap: number;
}

/** What firing hook points does: the hook function and whether it may replace an activation. */
export interface HookPoints {
  /** Fires the hook point `name` on `act`; resolves to the activation that goes on. */
  hook(name: string, act: Tensor): Promise<Tensor>;
  /** Whether `hook(name, ..)` may return another tensor than it is given. */
  mayReplace(name: string): boolean;
}

/**
 * A layer over the hook points (e.g. SAEs spliced in at some of them): given the hook points
 * beneath, returns the hook points the components fire.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { type HookLayer, plainHookPoints } from "./context.ts";
 *
 * const double: HookLayer = (inner) => ({
 *   hook: (n, t) => inner.hook(n, n === "hook_embed" ? t.scale(2) : t),
 *   mayReplace: (n) => n === "hook_embed" || inner.mayReplace(n),
 * });
 * await initGpu();
 * const points = double(plainHookPoints(new HookRegistry(), null));
 * using x = Tensor.from([1, 2], [1, 2]);
 * assert.deepEqual([...await (await points.hook("hook_embed", x)).toArray()], [2, 4]);
 * assert.equal(points.mayReplace("hook_pos_embed"), false);
 * ```
 */
export type HookLayer = (inner: HookPoints) => HookPoints;

/** What a component sees of the call in progress. */
export interface RunContext extends HookPoints {
  /** The model's configuration. */
  readonly cfg: HookedTransformerConfig;
  /** The KV cache of a generation step, or null. */
  readonly kv: KvState | null;
  /** A padded batch's key mask and row starts (null: every position is a real token). */
  readonly pad: PadState | null;
  /** Whether the backward tape records (a run with `inclBwd`, outside an untaped section). */
  readonly taping: boolean;
  /** Whether nothing reads the activation at `name`: no hook, no cache entry, no backward pass. */
  inert(name: string): boolean;
}

/**
 * The hook points of the bare model: the registry's forward hooks in order (a returned Tensor
 * replaces the activation), then caching, then the tape's mark. Every hook point of a call passes
 * through the one `hook` made here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { ActivationCache } from "../cache.ts";
 * import { HookRegistry } from "../hooks.ts";
 * import { plainHookPoints } from "./context.ts";
 *
 * await initGpu();
 * using cache = new ActivationCache();
 * const points = plainHookPoints(new HookRegistry(), { cache, cacheFilter: () => true });
 * using x = Tensor.from([1, 2], [1, 2]);
 * await points.hook("hook_embed", x);
 * assert.deepEqual(cache.keys(), ["hook_embed"]); // a kept copy
 * ```
 */
export function plainHookPoints(
  registry: HookLookup,
  target: CacheTarget | null,
  signal?: AbortSignal,
): HookPoints {
  return {
    mayReplace: (name) => registry.at(name).length > 0,
    async hook(name: string, act: Tensor): Promise<Tensor> {
      if (signal?.aborted) throw abortedError(signal, name);
      for (const e of registry.at(name)) {
        const r = await e.fn(act, { name });
        if (r !== undefined && r !== null) {
          if (!(r instanceof Tensor)) {
            throw new ShapeError(
              `Hook at ${name} returned ${typeof r}; return a Tensor or nothing.`,
            );
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
      if (target && target.cacheFilter(name)) target.cache.set(name, act.clone().keep());
      Tape.hook(name, act);
      return act;
    },
  };
}

/**
 * The typed error of a call ended through its `signal` (at hook point `where`, if known).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallAbortedError } from "../../errors.ts";
 * import { abortedError } from "./context.ts";
 *
 * const ac = new AbortController();
 * ac.abort(new Error("user pressed stop"));
 * const e = abortedError(ac.signal, "blocks.0.hook_resid_pre");
 * assert.ok(e instanceof CallAbortedError);
 * assert.match(e.message, /user pressed stop\) at blocks\.0\.hook_resid_pre/);
 * ```
 */
export function abortedError(signal: AbortSignal, where?: string): CallAbortedError {
  const r = signal.reason;
  const why = r instanceof Error ? r.message : r === undefined ? "aborted" : String(r);
  return new CallAbortedError(
    `The model call was aborted through its signal (${why})${where ? ` at ${where}` : ""}: ` +
      "its hooks no longer run and its outputs are not returned; the model's next call runs.",
  );
}

/**
 * The run context of one call: the hook points (with `layer` over them when given), the cache
 * target, the KV state and the padding.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { HookRegistry } from "../hooks.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 *
 * await initGpu();
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * assert.equal(ctx.cfg, cfg);
 * assert.equal(ctx.mayReplace("hook_embed"), false); // no hooks there
 * ```
 */
export function contextFor(
  cfg: HookedTransformerConfig,
  points: HookPoints,
  target: CacheTarget | null,
  kv: KvState | null,
  pad: PadState | null = null,
): RunContext {
  return {
    cfg,
    kv,
    pad,
    hook: points.hook,
    mayReplace: points.mayReplace,
    get taping(): boolean {
      return Tape.active !== null;
    },
    inert(name: string): boolean {
      return !points.mayReplace(name) && !(target && target.cacheFilter(name)) && !Tape.active;
    },
  };
}

/**
 * The same context with a padding (found once the input is tokenized).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { HookRegistry } from "../hooks.ts";
 * import { paddingOf, padState } from "../padding.ts";
 * import { contextFor, plainHookPoints, withPad } from "./context.ts";
 *
 * await initGpu();
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * const pad = padState(paddingOf([2, 3], 3, "left"));
 * const padded = withPad(ctx, pad);
 * assert.equal(padded.pad, pad);
 * assert.equal(padded.cfg, ctx.cfg); // everything else as before
 * ```
 */
export function withPad(ctx: RunContext, pad: PadState | null): RunContext {
  return Object.create(ctx, { pad: { value: pad, enumerable: true } });
}

/**
 * x [.., K] · W [K, N] + b into a tensor of `shape`, with its backward rule.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { linear } from "./context.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 1, 2]); // [B, P, K]
 * using w = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]); // [K, N]
 * using y = linear(x, w, undefined, [1, 1, 3]);
 * assert.deepEqual([...await y.toArray()], [1, 2, 3]);
 * ```
 */
export function linear(x: Tensor, w: Tensor, b: Tensor | undefined, shape: number[]): Tensor {
  const [y0] = ops.linear(x, w, b);
  const y = y0.moveTo(shape);
  Tape.record([y], [x], ([g]) => [
    ops.linearBack(g!.reshape([...x.shape.slice(0, -1), w.shape[1]]), w).moveTo([...x.shape]),
  ]);
  return y;
}

/**
 * A residual add a + b, with its backward rule (the gradient passes to both).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { addResidual } from "./context.ts";
 *
 * await initGpu();
 * using resid = Tensor.from([1, 2], [1, 2]);
 * using attnOut = Tensor.from([10, 20], [1, 2]);
 * using mid = addResidual(resid, attnOut);
 * assert.deepEqual([...await mid.toArray()], [11, 22]);
 * ```
 */
export function addResidual(a: Tensor, b: Tensor): Tensor {
  const y = a.add(b);
  Tape.record([y], [a, b], ([g]) => [g, g]);
  return y;
}
