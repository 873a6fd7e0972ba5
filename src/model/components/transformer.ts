/**
 * The whole stack of components: embed, blocks, final norm, unembed. Its hook names are the
 * components' own lists, in firing order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { hookNamesFor } from "./transformer.ts";
 *
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * assert.deepEqual(hookNamesFor(cfg).slice(0, 3), [
 *   "hook_embed",
 *   "hook_pos_embed",
 *   "blocks.0.hook_resid_pre",
 * ]);
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
 * import assert from "node:assert/strict";
 * import { HookedTransformer } from "@hooklens/hooklens";
 * import { hookNamesFor } from "./transformer.ts";
 *
 * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * assert.deepEqual(hookNamesFor(model.cfg), model.hookNames()); // no SAEs attached
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
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { modelTensors } from "./transformer.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const tensors = modelTensors(w);
 * for (const t of tensors) t.dispose();
 * assert.ok(tensors.every((t) => t.disposed));
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { embedForward } from "./embed.ts";
 * import { blocksForward } from "./transformer.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * let resid = await embedForward(ctx, w.embed, tokens);
 * resid = await blocksForward(ctx, w, resid, 0, cfg.nLayers);
 * assert.deepEqual(resid.shape, [1, 3, 64]);
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
 * import assert from "node:assert/strict";
 * import { HookedTransformer, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { embedForward } from "./embed.ts";
 * import { blocksForward, headForward } from "./transformer.ts";
 *
 * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens);
 * const final = await blocksForward(ctx, w, resid, 0, cfg.nLayers);
 * const logits = await headForward(ctx, w, final);
 * const last = await headForward(ctx, w, final, [[2]]); // only position 2 of batch row 0
 * assert.deepEqual(last.shape, [1, 1, 1000]);
 * // The components in sequence are the model's forward pass.
 * using expected = await model.forward([[1, 2, 3]]);
 * const [a, b] = [await logits.toArray(), await expected.toArray()];
 * assert.ok(a.every((x, i) => Math.abs(x - b[i]) < 1e-4));
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
