/**
 * Unembed: the final norm's output [B, P, E] to logits [B, P, d_vocab] (or, with forward's
 * `logitsAt`, [B, n, d_vocab] at n positions). Hook points, in firing order: `unembed.hook_in`
 * (always [B, P, E]), `unembed.hook_out` (the logits' shape; before Gemma-2's logit soft cap).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { unembedForward } from "./unembed.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * using x = Tensor.from(new Float32Array(3 * 64), [1, 3, 64]);
 * const logits = await unembedForward(ctx, w.unembed, x);
 * assert.deepEqual(logits.shape, [1, 3, 1000]); // [batch, pos, d_vocab]
 * ```
 * @module
 */
import { InputError } from "../../errors.ts";
import * as ops from "../../gpu/ops.ts";
import { Tensor } from "../../gpu/tensor.ts";
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
 * import assert from "node:assert/strict";
 * import { unembedHookNames } from "./unembed.ts";
 *
 * assert.deepEqual(unembedHookNames(), ["unembed.hook_in", "unembed.hook_out"]);
 * ```
 */
export function unembedHookNames(): string[] {
  return ["unembed.hook_in", "unembed.hook_out"];
}

/**
 * unembed.hook_in, then logits = x · W_U + b_U at unembed.hook_out. With `positions` (per batch
 * row, the same number each, each in [0, P)), only those rows go through W_U (gathered on the
 * device after unembed.hook_in): logits and unembed.hook_out are then [B, n, d_vocab]. Not while
 * a backward pass is recorded.
 * With a logit soft cap (Gemma-2) the logits returned are `c * tanh(hook_out / c)`, as in
 * TransformerLens.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { unembedForward } from "./unembed.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using x = Tensor.from(new Float32Array(64), [1, 1, 64]);
 * const logits = await unembedForward(ctx, w.unembed, x); // 0 · W_U + b_U
 * assert.deepEqual(await logits.toArray(), sd.get("unembed.b_U")!.data);
 * using x3 = Tensor.from(new Float32Array(3 * 64), [1, 3, 64]);
 * const last = await unembedForward(ctx, w.unembed, x3, [[2]]); // only position 2
 * assert.deepEqual(last.shape, [1, 1, 1000]);
 * ```
 */
export async function unembedForward(
  ctx: RunContext,
  w: UnembedWeights,
  x: Tensor,
  positions: number[][] | null = null,
): Promise<Tensor> {
  let xin = await ctx.hook("unembed.hook_in", x);
  const V = ctx.cfg.dVocabOut;
  if (positions) {
    if (Tape.active) {
      throw new InputError(
        "logitsAt with a backward pass (inclBwd): the metric's gradient needs every position's " +
          "logits; leave logitsAt out.",
      );
    }
    // Rows b * P + positions[b][j] of x [B * P, D], gathered as an embedding lookup is.
    const [B, P, D] = xin.shape;
    const n = positions[0].length;
    const ids = new Int32Array(B * n);
    for (let b = 0; b < B; b++) positions[b].forEach((p, j) => ids[b * n + j] = b * P + p);
    const rows = Tensor.from(ids, [B, n], "int32");
    xin = ops.embedTokens(xin.reshape([B * P, D]), rows);
    rows.dispose();
  }
  const [logits] = ops.linear(xin, w.wU, w.bU, {}, V);
  Tape.record([logits], [xin], ([g]) => [ops.linearBack(g!, w.wU, V)]);
  const out = await ctx.hook("unembed.hook_out", logits);
  const cap = ctx.cfg.outputLogitsSoftCap;
  if (!(cap > 0)) return out;
  const capped = ops.softCap(out, cap);
  Tape.record([capped], [out], ([g]) => [ops.softCapGrad(g!, capped, cap)]);
  return capped;
}
