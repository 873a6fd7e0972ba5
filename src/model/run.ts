/**
 * The bodies of a model's calls, once `calls.ts` has started them: one forward pass (its arena,
 * its run context, its outputs kept and one submission), a cached run (with a backward pass when
 * asked), and generation. The model class keeps the API and what each call runs with; these hold
 * what a call does.
 *
 * @example Not run as a doc test: internal to HookedTransformer, whose private state is the host (model.ts); use the model's methods
 * ```
 * import { runForward } from "./run.ts";
 * const logits = await runForward(host, [[1, 2, 3]], {}, null, spec);
 * ```
 * @module
 */
import { currentCall } from "../gpu/call.ts";
import { flush, trimPoolIfLarge } from "../gpu/runtime.ts";
import { closeArena, openArena, Tensor } from "../gpu/tensor.ts";
import type { HfTokenizer } from "../io/tokenizer.ts";
import { runWithBackward } from "./backward.ts";
import { ActivationCache, type CacheModel, namesFilterFn, removeBatchDim } from "./cache.ts";
import type { CallSpec } from "./calls.ts";
import {
  type CacheTarget,
  contextFor,
  type KvState,
  type ModelWeights,
  plainHookPoints,
  type RunContext,
} from "./components/index.ts";
import type { HookedTransformerConfig } from "./config.ts";
import { forwardPass } from "./forward.ts";
import { generateTokens } from "./generate.ts";
import type {
  ForwardOptions,
  ForwardOutput,
  GenerateOptions,
  Input,
  RunWithCacheOptions,
} from "./options.ts";
import { maskRows, type PadState } from "./padding.ts";
import { batchInput, inputPadding } from "./tokens.ts";

/** What a call's body needs of its model. */
export interface RunHost {
  /** The model's configuration. */
  readonly cfg: HookedTransformerConfig;
  /** Its tokenizer, if any. */
  readonly tokenizer: HfTokenizer | null;
  /** Storage type of its weights. */
  readonly dtype: "float32" | "float16";
  /** Its weights on the GPU. */
  readonly weights: ModelWeights;
  /** The model a cache it fills refers to (for the residual-stream helpers). */
  readonly cacheModel: CacheModel;
  /** Throws if the model was disposed or its device lost. */
  checkUsable(): void;
}

/**
 * The run context of a call: its hooks (caching into `target`, ending at its signal), under its
 * SAE layer, with the KV state and padding of a generation step.
 *
 * @example Not run as a doc test: internal to HookedTransformer, whose private state is the host (model.ts); use the model's methods
 * ```
 * const ctx = runContext(host, null, spec, null);
 * ```
 */
export function runContext(
  host: RunHost,
  target: CacheTarget | null,
  spec: CallSpec,
  kv: KvState | null,
  pad: PadState | null = null,
): RunContext {
  const plain = plainHookPoints(spec.hooks, target, currentCall()?.signal);
  return contextFor(host.cfg, spec.layer ? spec.layer(plain) : plain, target, kv, pad);
}

/** A forward pass under `ctx`. */
function forwardIn(
  host: RunHost,
  ctx: RunContext,
  input: Input,
  opts: ForwardOptions,
): Promise<ForwardOutput> {
  return forwardPass(
    ctx,
    host.weights,
    (i, o) => batchInput(host.cfg, host.tokenizer, i, o),
    input,
    opts,
  );
}

/**
 * One forward pass inside its call: arena, run context, outputs kept, one submission. `target`
 * receives the cached activations.
 *
 * @example Not run as a doc test: internal to HookedTransformer, whose private state is the host (model.ts); use the model's methods
 * ```
 * const out = await runForward(host, tokens, { returnType: "both" }, null, spec);
 * ```
 */
export async function runForward(
  host: RunHost,
  input: Input,
  opts: ForwardOptions,
  target: CacheTarget | null,
  spec: CallSpec,
): Promise<ForwardOutput> {
  host.checkUsable();
  const arena = openArena();
  let keep: Tensor[] = [];
  try {
    let out = await forwardIn(host, runContext(host, target, spec, null), input, opts);
    // A view's buffer belongs to a tensor of this pass: return a copy that owns its buffer.
    if (out instanceof Tensor && out.isView) out = out.clone();
    keep = out instanceof Tensor ? [out] : [out.logits, out.loss];
    return out;
  } finally {
    closeArena(arena, keep);
    for (const t of keep) t.keep();
    flush(); // one submission per forward pass; nothing waits for it
    trimPoolIfLarge();
  }
}

/**
 * runWithCache's body inside its call: a forward pass caching the chosen hooks (and a backward
 * pass adding `<hook>_grad` entries with `inclBwd`). The cache is the caller's; on a throw it is
 * freed here.
 *
 * @example Not run as a doc test: internal to HookedTransformer, whose private state is the host (model.ts); use the model's methods
 * ```
 * const [logits, cache] = await runCached(host, tokens, { namesFilter: "hook_embed" }, spec);
 * ```
 */
export async function runCached(
  host: RunHost,
  input: Input,
  opts: RunWithCacheOptions,
  spec: CallSpec,
): Promise<[ForwardOutput, ActivationCache]> {
  const cache = new ActivationCache(new Map(), host.cacheModel);
  const filter = namesFilterFn(opts.namesFilter);
  try {
    opts = await maskRows(opts);
    const padding = opts.startAtLayer
      ? null
      : inputPadding(host.cfg, host.tokenizer, input, opts as ForwardOptions);
    const target: CacheTarget = { cache, cacheFilter: filter };
    let out: ForwardOutput;
    if (opts.inclBwd) {
      host.checkUsable();
      out = await runWithBackward(
        {
          dtype: host.dtype,
          tokens: (i, o) => batchInput(host.cfg, host.tokenizer, i, o),
          forward: (i, o, t) => forwardIn(host, runContext(host, t, spec, null), i, o),
          bwdHooks: (name) => spec.hooks.at(name, "bwd"),
        },
        input,
        opts,
        target,
      );
    } else {
      out = await runForward(host, input, opts as ForwardOptions, target, spec);
    }
    cache.attentionMask = padding?.mask ?? null;
    if (opts.removeBatchDim) return [out, removeBatchDim(cache)];
    return [out, cache];
  } catch (e) {
    cache.dispose();
    throw e;
  }
}

/**
 * generate's body inside its call: every step a forward pass with the call's hooks and SAEs.
 *
 * @example Not run as a doc test: internal to HookedTransformer, whose private state is the host (model.ts); use the model's methods
 * ```
 * const ids = await runGenerate(host, [[1, 2, 3]], { maxNewTokens: 4, doSample: false }, spec);
 * ```
 */
export function runGenerate(
  host: RunHost,
  input: Input,
  opts: GenerateOptions,
  spec: CallSpec,
): Promise<string | string[] | number[][]> {
  host.checkUsable();
  return generateTokens(
    {
      cfg: host.cfg,
      tokenizer: host.tokenizer,
      step: (tokens, kv, pad) =>
        forwardIn(host, runContext(host, null, spec, kv, pad), tokens, {}) as Promise<Tensor>,
    },
    input,
    opts,
  );
}
