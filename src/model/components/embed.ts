/**
 * Embed (and positional embed): token ids [B, P] to the residual stream entering block 0.
 * Hook points, in firing order: `hook_embed`, then `hook_pos_embed` (learned positions only).
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
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * assert.deepEqual(resid.shape, [1, 3, 64]);
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
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { embedHookNames } from "./embed.ts";
 *
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * assert.deepEqual(embedHookNames(cfg), ["hook_embed", "hook_pos_embed"]); // learned positions
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { embedForward } from "./embed.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * // hook_embed + hook_pos_embed: row 0 is W_E[1] + W_pos[0].
 * const wE = sd.get("embed.W_E")!.data, wPos = sd.get("pos_embed.W_pos")!.data;
 * const row0 = (await resid.toArray()).subarray(0, 64);
 * assert.ok(row0.every((x, i) => Math.abs(x - (wE[64 + i] + wPos[i])) < 1e-6));
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
