/**
 * The backward pass of `runWithCache(.., { inclBwd: true })`: a forward pass with the tape
 * recording, then the metric's gradient walked back through the tape, firing "bwd" hooks and
 * caching `<hook>_grad` at every cached hook point. Each component records its own backward rule
 * as it runs (see `components/`); this module seeds and walks the tape.
 *
 * @example Not run as a doc test: the host is the model (model.ts); use `runWithCache({ inclBwd })`
 * ```
 * import { runWithBackward } from "./backward.ts";
 * const loss = await runWithBackward(host, tokens, { returnType: "loss" }, target);
 * ```
 * @module
 */
import { InputError } from "../errors.ts";
import * as ops from "../gpu/ops.ts";
import { flush } from "../gpu/runtime.ts";
import { closeArena, openArena, Tensor } from "../gpu/tensor.ts";
import type { CacheTarget } from "./components/index.ts";
import type { HookEntry } from "./hooks.ts";
import { lossMask, type Padding } from "./padding.ts";
import type {
  BackwardMetric,
  ForwardOptions,
  ForwardOutput,
  Input,
  LogitsAndLoss,
  RunWithCacheOptions,
} from "./options.ts";
import { Tape } from "./tape.ts";

/** What the backward pass needs of the model. */
export interface BackwardHost {
  /** Storage type of the weights (the backward pass needs float32). */
  readonly dtype: "float32" | "float16";
  /** The input's tokens as int32 [B, P] and its padding (null: nothing masked). */
  tokens(input: Input, o: ForwardOptions): { tokens: Tensor; padding: Padding | null };
  /** A forward pass caching into `target`. */
  forward(input: Input, o: ForwardOptions, target: CacheTarget): Promise<ForwardOutput>;
  /** The "bwd" hooks at a hook point, in firing order. */
  bwdHooks(name: string): readonly HookEntry[];
}

/**
 * The metric's value and its gradient with respect to the logits [B, P, V]. In a padded batch
 * the loss counts real next tokens only, and a logit difference without `pos` is read at each
 * row's last real token.
 */
async function seedOf(
  host: BackwardHost,
  metric: BackwardMetric,
  input: Input,
  opts: ForwardOptions,
  out: ForwardOutput,
  logits: Tensor,
): Promise<[value: Tensor, seed: Tensor]> {
  if (metric === "loss") {
    const { tokens, padding } = host.tokens(input, opts);
    const [B, P] = tokens.shape;
    if (!padding) {
      return [(out as LogitsAndLoss).loss, ops.lossGrad(logits, tokens, 1 / (B * (P - 1)))];
    }
    const [m, n] = lossMask(padding);
    const skip: number[] = [];
    m.forEach((v, i) => {
      if (!v) skip.push(Math.floor(i / (P - 1)) * P + (i % (P - 1)));
    });
    const V = logits.shape[2];
    const seed = ops.lossGrad(logits, tokens, 1 / n).reshape([B * P, V]);
    return [(out as LogitsAndLoss).loss, ops.fillAt(seed, 0, skip, 0).reshape([B, P, V])];
  }
  if ("logitDiff" in metric) {
    const [B, P, V] = logits.shape;
    const { correct, incorrect } = metric.logitDiff;
    const padding = metric.logitDiff.pos === undefined ? host.tokens(input, opts).padding : null;
    const at = metric.logitDiff.pos ?? -1;
    const pos = at < 0 ? P + at : at;
    if (correct.length !== B || (incorrect && incorrect.length !== B) || pos < 0 || pos >= P) {
      throw new InputError(
        `logitDiff needs one token per batch row (${B}) and a position in 0..${P - 1}.`,
      );
    }
    const posOf = (b: number) => padding ? padding.ends[b] - 1 : pos;
    const g = new Float32Array(B * P * V);
    for (let b = 0; b < B; b++) {
      g[(b * P + posOf(b)) * V + correct[b]] += 1;
      if (incorrect) g[(b * P + posOf(b)) * V + incorrect[b]] -= 1;
    }
    const seed = Tensor.from(g, [B, P, V]);
    const all = await logits.toArray();
    let v = 0;
    for (let b = 0; b < B; b++) {
      v += all[(b * P + posOf(b)) * V + correct[b]] -
        (incorrect ? all[(b * P + posOf(b)) * V + incorrect[b]] : 0);
    }
    return [Tensor.from([v], []), seed];
  }
  return [logits, await metric.gradient(logits)];
}

/**
 * Forward with the tape recording, then backward from the metric (`opts.returnType`, default the
 * mean loss), in one arena. Returns the metric's value (kept); the gradients go into
 * `target.cache`. The caller holds the model lock.
 *
 * @example Not run as a doc test: `HookedTransformer.runWithCache` calls it as its host
 * ```
 * const value = await runWithBackward(host, tokens, { inclBwd: true }, target);
 * ```
 */
export async function runWithBackward(
  host: BackwardHost,
  input: Input,
  opts: RunWithCacheOptions,
  target: CacheTarget,
): Promise<Tensor> {
  if (host.dtype !== "float32") {
    throw new InputError(
      'The backward pass needs float32 weights: load the model with dtype "float32".',
    );
  }
  const metric: BackwardMetric = typeof opts.returnType === "object" || opts.returnType === "loss"
    ? opts.returnType
    : "loss";
  const arena = openArena();
  const tape = Tape.begin();
  let value: Tensor | null = null;
  try {
    const { startAtLayer: _s, stopAtLayer: _e, ...rest } = opts;
    const out = await host.forward(input, {
      ...rest,
      returnType: metric === "loss" ? "both" : "logits",
    }, target);
    Tape.end(tape);
    const logits = out instanceof Tensor ? out : out.logits;
    const [v, seed] = await seedOf(host, metric, input, rest as ForwardOptions, out, logits);
    value = v;
    await tape.backward(logits, seed, async (name, g) => {
      let grad = g;
      for (const e of host.bwdHooks(name)) {
        const r = await e.fn(grad, { name });
        if (r instanceof Tensor) grad = r;
      }
      if (target.cacheFilter(name)) target.cache.set(`${name}_grad`, grad.clone().keep());
      return grad;
    });
    if (value.isView) value = value.clone();
    return value;
  } catch (e) {
    value = null; // nothing is returned: the arena frees the value with the rest
    throw e;
  } finally {
    Tape.end(tape);
    closeArena(arena, value ? [value] : []);
    value?.keep();
    flush();
  }
}
