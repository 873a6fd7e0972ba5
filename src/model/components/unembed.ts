/**
 * Unembed: the final norm's output [B, P, E] to logits [B, P, d_vocab]. Hook points, in firing
 * order: `unembed.hook_in`, `unembed.hook_out`.
 *
 * @example
 * ```ts
 * import { unembedForward } from "./unembed.ts";
 * const logits = await unembedForward(ctx, { wU, bU }, x);
 * ```
 * @module
 */
import * as ops from "../../gpu/ops.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { Tape } from "../tape.ts";
import type { RunContext } from "./context.ts";

/** The unembedding. */
export interface UnembedWeights {
  /** W_U [E, d_vocab padded to a multiple of 4] (zero columns past d_vocab_out). */
  wU: Tensor;
  /** b_U [d_vocab]. */
  bU: Tensor;
}

/**
 * The unembedding's hook points, in firing order.
 *
 * @example
 * ```ts
 * unembedHookNames(); // ["unembed.hook_in", "unembed.hook_out"]
 * ```
 */
export function unembedHookNames(): string[] {
  return ["unembed.hook_in", "unembed.hook_out"];
}

/**
 * unembed.hook_in, then logits = x · W_U + b_U at unembed.hook_out.
 *
 * @example
 * ```ts
 * const logits = await unembedForward(ctx, weights, x);
 * ```
 */
export async function unembedForward(
  ctx: RunContext,
  w: UnembedWeights,
  x: Tensor,
): Promise<Tensor> {
  const xin = await ctx.hook("unembed.hook_in", x);
  const V = ctx.cfg.dVocabOut;
  const [logits] = ops.linear(xin, w.wU, w.bU, {}, V);
  Tape.record([logits], [xin], ([g]) => [ops.linearBack(g!, w.wU, V)]);
  return await ctx.hook("unembed.hook_out", logits);
}
