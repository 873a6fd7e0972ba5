/**
 * One forward pass through the components: tokens (or, with `startAtLayer`, a residual stream)
 * to logits, a loss, or (with `stopAtLayer`) the residual stream, under one run context.
 *
 * @example
 * ```ts
 * import { forwardPass } from "./forward.ts";
 * const logits = await forwardPass(ctx, weights, (i) => tokensTensor(cfg, tok, i), [[1, 2]], {});
 * ```
 * @module
 */
import { InputError } from "../errors.ts";
import * as ops from "../gpu/ops.ts";
import { Tensor } from "../gpu/tensor.ts";
import {
  blocksForward,
  embedForward,
  headForward,
  type ModelWeights,
  type RunContext,
} from "./components/index.ts";
import type { ForwardOptions, ForwardOutput, Input } from "./options.ts";

/**
 * Runs the model on `input` (see `ForwardOptions`); `tokensOf` validates and uploads token ids.
 * The caller holds the model lock and owns the arena.
 *
 * @example
 * ```ts
 * const loss = await forwardPass(ctx, weights, tokensOf, tokens, { returnType: "loss" });
 * ```
 */
export async function forwardPass(
  ctx: RunContext,
  w: ModelWeights,
  tokensOf: (input: Input) => Tensor,
  input: Input,
  o: ForwardOptions,
): Promise<ForwardOutput> {
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
  let resid: Tensor;
  if (s > 0) {
    if (!(input instanceof Tensor) || input.dtype !== "float32" || input.shape.length !== 3) {
      throw new InputError(
        "With startAtLayer, pass the residual stream as a float32 [batch, pos, d_model] Tensor.",
      );
    }
    resid = input;
    if (o.tokens !== undefined) tokens = tokensOf(o.tokens);
  } else {
    tokens = tokensOf(input);
    resid = await embedForward(ctx, w.embed, tokens);
  }
  resid = await blocksForward(ctx, w, resid, s, e);
  if (e < n) return resid;

  const logits = await headForward(ctx, w, resid);
  const rt = o.returnType ?? "logits";
  if (rt === "logits") return logits;
  if (!tokens) throw new InputError("A loss needs tokens: pass `tokens` with startAtLayer.");
  if (tokens.shape[1] < 2) {
    throw new InputError("A next-token loss needs at least 2 tokens per row.");
  }
  const perTok = ops.lossPerToken(logits, tokens);
  const loss = o.lossPerToken ? perTok : ops.meanAll(perTok);
  return rt === "loss" ? loss : { logits, loss };
}
