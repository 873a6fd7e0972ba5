/**
 * Norms: LayerNorm / LNPre / RMSNorm / RMSPre. Hook points, in firing order: `<prefix>.hook_scale`,
 * `<prefix>.hook_normalized` (the normalised input, before the weight and bias, as in
 * TransformerLens); then `* w (+ b)`.
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
 * import { normForward } from "./norm.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * const { y, scale } = await normForward(ctx, "blocks.0.ln1", resid, w.blocks[0].ln1);
 * assert.deepEqual(y.shape, [1, 3, 64]);
 * assert.deepEqual(scale.shape, [1, 3, 1]); // blocks.0.ln1.hook_scale
 * ```
 * @module
 */
import * as ops from "../../gpu/ops.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { Tape } from "../tape.ts";
import type { RunContext } from "./context.ts";

/** A norm's weight and bias [E] (none for LNPre / RMSPre or after folding). */
export interface NormWeights {
  /** Weight [E]. */
  w?: Tensor;
  /** Bias [E]. */
  b?: Tensor;
}

/** What a norm computed: its output and the tensors its backward copies need. */
export interface NormResult {
  /** The output [.., E]. */
  y: Tensor;
  /** The input. */
  x: Tensor;
  /** The scale [.., 1] as computed. */
  scale0: Tensor;
  /** The scale as hook_scale left it. */
  scale: Tensor;
  /** The normalised input as computed. */
  n0: Tensor;
  /** The normalised input as hook_normalized left it. */
  normalized: Tensor;
  /** "LN" (centred) or "RMS". */
  kind: "LN" | "RMS";
}

/**
 * A norm's hook points under `prefix`, in firing order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normHookNames } from "./norm.ts";
 *
 * assert.deepEqual(normHookNames("ln_final"), ["ln_final.hook_scale", "ln_final.hook_normalized"]);
 * ```
 */
export function normHookNames(prefix: string): string[] {
  return [`${prefix}.hook_scale`, `${prefix}.hook_normalized`];
}

/** "RMS" for the RMS norms, "LN" for the LayerNorms. */
function normKind(cfg: HookedTransformerConfig): "LN" | "RMS" {
  return cfg.normalizationType.startsWith("RMS") ? "RMS" : "LN";
}

/**
 * hook_scale, then hook_normalized, then `* w (+ b)`. When no hook can replace the scale or the
 * normalised input, one dispatch makes all three outputs; the hooks still fire (cache, backward
 * pass) on the same tensors.
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
 * import { normForward } from "./norm.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * // gpt2_tiny's weights are processed (fold_ln): ln_final is a bare LayerNorm ("LNPre").
 * const { y } = await normForward(ctx, "ln_final", resid, w.lnFinal);
 * const row = (await y.toArray()).subarray(0, 64);
 * assert.ok(Math.abs([...row].reduce((a, b) => a + b, 0) / 64) < 1e-5); // centred
 * ```
 */
export async function normForward(
  ctx: RunContext,
  prefix: string,
  x: Tensor,
  { w, b }: NormWeights,
): Promise<NormResult> {
  const kind = normKind(ctx.cfg);
  const eps = ctx.cfg.eps;
  const fused = ctx.mayReplace(`${prefix}.hook_scale`) ||
      ctx.mayReplace(`${prefix}.hook_normalized`)
    ? null
    : ops.normFused(x, kind, eps, w, b);
  const scale0 = fused?.[0] ?? ops.normScale(x, kind, eps);
  Tape.record([scale0], [x], ([g]) => [ops.normScaleGrad(g!, x, scale0, kind)]);
  const scale = await ctx.hook(`${prefix}.hook_scale`, scale0);
  const n0 = fused?.[1] ?? ops.normApply(x, scale, kind);
  Tape.record([n0], [x, scale], ([g]) => ops.normApplyGrad(g!, x, scale, kind));
  const normalized = await ctx.hook(`${prefix}.hook_normalized`, n0);
  const result = { x, scale0, scale, n0, normalized, kind };
  if (!w) return { y: normalized, ...result };
  const y = fused?.[2] ?? (b ? ops.scaleShift(normalized, w, b) : normalized.mul(w));
  Tape.record([y], [normalized], ([g]) => [g!.mul(w)]);
  return { y, ...result };
}

/**
 * Another use of a norm's output for the backward pass: the same values (no recomputation) with
 * their own tape entries, so gradients reaching it flow back as through a second call of the norm
 * that fires no hooks. (TransformerLens runs ln1 once per attention input; see `attentionInputs`.)
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
 * import { normForward, normTapedCopy } from "./norm.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * const ln1 = await normForward(ctx, "blocks.0.ln1", resid, w.blocks[0].ln1);
 * const xk = normTapedCopy(ln1, w.blocks[0].ln1); // the same values, its own tape entries
 * assert.deepEqual(await xk.toArray(), await ln1.y.toArray());
 * ```
 */
export function normTapedCopy(ln: NormResult, { w, b }: NormWeights): Tensor {
  const s2 = ln.scale0.reshape([...ln.scale0.shape]);
  Tape.record([s2], [ln.x], ([g]) => [ops.normScaleGrad(g!, ln.x, ln.scale0, ln.kind)]);
  const n2 = ln.n0.reshape([...ln.n0.shape]);
  Tape.record([n2], [ln.x, s2], ([g]) => ops.normApplyGrad(g!, ln.x, ln.scale0, ln.kind));
  if (!w) return n2;
  const y = b ? ops.scaleShift(n2, w, b) : n2.mul(w);
  Tape.record([y], [n2], ([g]) => [g!.mul(w)]);
  return y;
}
