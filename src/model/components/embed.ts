/**
 * Embed (and positional embed): token ids [B, P] to the residual stream entering block 0.
 * Hook points, in firing order: `hook_embed`, then `hook_pos_embed` (learned positions only).
 *
 * @example
 * ```ts
 * import { embedForward } from "./embed.ts";
 * const resid = await embedForward(ctx, { wE, wPos }, tokens);
 * ```
 * @module
 */
import * as ops from "../../gpu/ops.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { Tape } from "../tape.ts";
import type { RunContext } from "./context.ts";

/** The embedding tables. */
export interface EmbedWeights {
  /** W_E [d_vocab, E]. */
  wE: Tensor;
  /** W_pos [n_ctx, E] (learned positions only). */
  wPos?: Tensor;
}

/**
 * The embedding's hook points, in firing order.
 *
 * @example
 * ```ts
 * embedHookNames(cfg); // ["hook_embed", "hook_pos_embed"]
 * ```
 */
export function embedHookNames(cfg: HookedTransformerConfig): string[] {
  return cfg.positionalEmbeddingType === "standard" ? ["hook_embed", "hook_pos_embed"] : [
    "hook_embed",
  ];
}

/**
 * hook_embed, hook_pos_embed: the residual stream [B, P, E] entering block 0. Positions start at
 * the KV cache's offset during generation, and count each row's real tokens only under left
 * padding (TransformerLens's offset position ids).
 *
 * @example
 * ```ts
 * const resid = await embedForward(ctx, weights, tokens);
 * ```
 */
export async function embedForward(
  ctx: RunContext,
  w: EmbedWeights,
  tokens: Tensor,
): Promise<Tensor> {
  const [B, P] = tokens.shape;
  const embed = await ctx.hook("hook_embed", ops.embedTokens(w.wE, tokens));
  if (!w.wPos) return embed;
  const offset = ctx.kv?.offset ?? 0;
  const pad = ctx.pad;
  const pos = await ctx.hook(
    "hook_pos_embed",
    pad?.shifted
      ? ops.embedPositionsRows(w.wPos, B, P, offset, pad.starts)
      : ops.embedPositions(w.wPos, B, P, offset),
  );
  const sum = embed.add(pos);
  Tape.record([sum], [embed, pos], ([g]) => [g, g]);
  return sum;
}
