/**
 * One forward pass through the components: tokens (or, with `startAtLayer`, a residual stream)
 * to logits, a loss, or (with `stopAtLayer`) the residual stream, under one run context. A padded
 * batch (text of different lengths, or an `attentionMask`) runs with its padding in the context;
 * its loss counts real next tokens only.
 *
 * @example Not run as a doc test: the run context and weights come from the model (model.ts)
 * ```
 * import { forwardPass } from "./forward.ts";
 * const logits = await forwardPass(ctx, weights, (i, o) => batchInput(cfg, tok, i, o), [[1, 2]], {});
 * ```
 * @module
 */
import { InputError } from "../errors.ts";
import * as ops from "../gpu/ops.ts";
import { Tensor } from "../gpu/tensor.ts";
import { checkMask, isFull, lossMask, maskRows, type Padding, padState } from "./padding.ts";
import {
  blocksForward,
  embedForward,
  headForward,
  type ModelWeights,
  type RunContext,
  withPad,
} from "./components/index.ts";
import type { ForwardOptions, ForwardOutput, Input } from "./options.ts";

/** Token ids of an input and its padding (null: nothing masked). */
export type TokensOf = (
  input: Input,
  o: ForwardOptions,
) => { tokens: Tensor; padding: Padding | null };

/**
 * Runs the model on `input` (see `ForwardOptions`); `tokensOf` validates and uploads token ids
 * and finds the padding. A context that already has a padding (a generation step) keeps it. The
 * caller holds the model lock and owns the arena.
 *
 * @example Not run as a doc test: `HookedTransformer.forward` calls it with its run context
 * ```
 * const loss = await forwardPass(ctx, weights, tokensOf, tokens, { returnType: "loss" });
 * ```
 */
export async function forwardPass(
  ctx: RunContext,
  w: ModelWeights,
  tokensOf: TokensOf,
  input: Input,
  opts: ForwardOptions,
): Promise<ForwardOutput> {
  const o = await maskRows(opts);
  const n = ctx.cfg.nLayers;
  const start = o.startAtLayer ?? 0;
  const stop = o.stopAtLayer ?? n;
  const s = start < 0 ? start + n : start;
  const e = stop < 0 ? stop + n : stop;
  if (!(Number.isInteger(s) && Number.isInteger(e) && s >= 0 && e <= n && s <= e)) {
    throw new InputError(
      `startAtLayer ${start} / stopAtLayer ${stop} out of range for ${n} layers.`,
    );
  }
  let tokens: Tensor | null = null;
  let padding: Padding | null = ctx.pad?.padding ?? null;
  let resid: Tensor;
  if (s > 0) {
    if (!(input instanceof Tensor) || input.dtype !== "float32" || input.shape.length !== 3) {
      throw new InputError(
        "With startAtLayer, pass the residual stream as a float32 [batch, pos, d_model] Tensor.",
      );
    }
    resid = input;
    if (o.tokens !== undefined) ({ tokens, padding } = tokensOf(o.tokens, o));
    else if (o.attentionMask !== undefined) {
      padding = checkMask(o.attentionMask, input.shape[0], input.shape[1]);
      if (isFull(padding)) padding = null;
    }
    if (padding && !ctx.pad) ctx = withPad(ctx, padState(padding));
  } else {
    if (ctx.pad) tokens = tokensOf(input, {}).tokens;
    else {
      ({ tokens, padding } = tokensOf(input, o));
      if (padding) ctx = withPad(ctx, padState(padding));
    }
    resid = await embedForward(ctx, w.embed, tokens);
  }
  resid = await blocksForward(ctx, w, resid, s, e);
  if (e < n) return resid;

  const rt = o.returnType ?? "logits";
  const at = logitPositions(o.logitsAt, resid.shape[0], resid.shape[1], padding);
  if (at && rt !== "logits") {
    throw new InputError(
      `logitsAt ${JSON.stringify(o.logitsAt)} with returnType "${rt}": a next-token loss needs ` +
        'every position\'s logits; leave logitsAt out (or "all") for a loss.',
    );
  }
  const logits = await headForward(ctx, w, resid, at);
  if (rt === "logits") return logits;
  if (!tokens) throw new InputError("A loss needs tokens: pass `tokens` with startAtLayer.");
  if (tokens.shape[1] < 2) {
    throw new InputError("A next-token loss needs at least 2 tokens per row.");
  }
  let perTok = ops.lossPerToken(logits, tokens);
  let loss: Tensor;
  if (padding) {
    // TransformerLens's: a position counts when it and its next token are real.
    const [m, n] = lossMask(padding);
    if (n === 0) {
      throw new InputError("A next-token loss needs a row with at least 2 real tokens.");
    }
    perTok = perTok.mul(Tensor.from(m, [...perTok.shape]));
    loss = o.lossPerToken ? perTok : ops.affine(ops.meanAll(perTok), perTok.size / n, 0);
  } else loss = o.lossPerToken ? perTok : ops.meanAll(perTok);
  return rt === "loss" ? loss : { logits, loss };
}

/**
 * The positions `logitsAt` asks for, per batch row (each in [0, P)), or null for all of them.
 * "last" is each row's last real token in a padded batch (`padding`), else P - 1; listed
 * positions index the (padded) row, negative ones from its end. Throws an InputError for an
 * empty list or a position out of range.
 *
 * @example
 * ```ts
 * logitPositions("last", 2, 5, null); // [[4], [4]]
 * logitPositions([0, -1], 1, 5, null); // [[0, 4]]
 * logitPositions(undefined, 1, 5, null); // null
 * ```
 */
export function logitPositions(
  at: ForwardOptions["logitsAt"],
  B: number,
  P: number,
  padding: Padding | null,
): number[][] | null {
  if (at === undefined || at === "all") return null;
  if (at === "last") {
    return Array.from({ length: B }, (_, b) => [padding ? padding.ends[b] - 1 : P - 1]);
  }
  if (!Array.isArray(at) || at.length === 0) {
    throw new InputError(
      `logitsAt must be "all", "last" or a non-empty list of positions, got ${JSON.stringify(at)}.`,
    );
  }
  const row = at.map((p) => {
    if (!Number.isInteger(p) || p < -P || p >= P) {
      throw new InputError(
        `logitsAt: position ${p} is out of range for a sequence of ${P} tokens ` +
          `(use integers in [-${P}, ${P - 1}]).`,
      );
    }
    return p < 0 ? p + P : p;
  });
  return Array.from({ length: B }, () => row);
}
