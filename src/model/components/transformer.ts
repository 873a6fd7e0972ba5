/**
 * The whole stack of components: embed, blocks, final norm, unembed. Its hook names are the
 * components' own lists, in firing order.
 *
 * @example
 * ```ts
 * import { hookNamesFor } from "./transformer.ts";
 * hookNamesFor(cfg).slice(0, 3); // ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"]
 * ```
 * @module
 */
import { closeArena, openArena, type Tensor } from "../../gpu/tensor.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { Tape } from "../tape.ts";
import { blockForward, blockHookNames, blockTensors, type BlockWeights } from "./block.ts";
import type { RunContext } from "./context.ts";
import { embedHookNames, type EmbedWeights } from "./embed.ts";
import { normForward, normHookNames, type NormWeights } from "./norm.ts";
import { unembedForward, unembedHookNames, type UnembedWeights } from "./unembed.ts";

/** The GPU weights of a model. */
export interface ModelWeights {
  /** W_E, W_pos. */
  embed: EmbedWeights;
  /** Per block. */
  blocks: BlockWeights[];
  /** The final norm. */
  lnFinal: NormWeights;
  /** W_U, b_U. */
  unembed: UnembedWeights;
  /** Rotary models: cos then sin, each [n_ctx, rotary_dim]. */
  rot?: Tensor;
}

/**
 * Every hook point of a model with this config, in firing order.
 *
 * @example
 * ```ts
 * const names = hookNamesFor(model.cfg);
 * ```
 */
export function hookNamesFor(cfg: HookedTransformerConfig): string[] {
  const names = embedHookNames(cfg);
  for (let l = 0; l < cfg.nLayers; l++) names.push(...blockHookNames(cfg, l));
  return [...names, ...normHookNames("ln_final"), ...unembedHookNames()];
}

/**
 * Every tensor the weights hold (for freeing).
 *
 * @example
 * ```ts
 * for (const t of modelTensors(w)) t.dispose();
 * ```
 */
export function modelTensors(w: ModelWeights): Tensor[] {
  const all = [
    w.embed.wE,
    w.embed.wPos,
    w.lnFinal.w,
    w.lnFinal.b,
    w.unembed.wU,
    w.unembed.bU,
    w.rot,
    ...w.blocks.flatMap(blockTensors),
  ];
  return all.filter((t): t is Tensor => t !== undefined);
}

/**
 * Blocks [start, stop) on the residual stream [B, P, E]. Each block's intermediates go back to
 * the pool when it ends (unless a backward pass needs them): peak memory is one block's
 * activations, not the whole pass's.
 *
 * @example
 * ```ts
 * resid = await blocksForward(ctx, weights, resid, 0, cfg.nLayers);
 * ```
 */
export async function blocksForward(
  ctx: RunContext,
  w: ModelWeights,
  resid: Tensor,
  start: number,
  stop: number,
): Promise<Tensor> {
  for (let l = start; l < stop; l++) {
    const blockArena = Tape.active ? null : openArena();
    try {
      resid = await blockForward(ctx, l, w.blocks[l], w.rot, resid);
    } finally {
      if (blockArena) closeArena(blockArena, [resid]);
    }
  }
  return resid;
}

/**
 * The final norm, then the unembedding: logits [B, P, d_vocab], or [B, n, d_vocab] at n
 * positions of each batch row only (see unembedForward).
 *
 * @example
 * ```ts
 * const logits = await headForward(ctx, weights, resid);
 * const last = await headForward(ctx, weights, resid, [[resid.shape[1] - 1]]); // batch 1
 * ```
 */
export async function headForward(
  ctx: RunContext,
  w: ModelWeights,
  resid: Tensor,
  positions: number[][] | null = null,
): Promise<Tensor> {
  const { y } = await normForward(ctx, "ln_final", resid, w.lnFinal);
  return await unembedForward(ctx, w.unembed, y, positions);
}
