/**
 * MLPs, plain and gated. Hook points under `blocks.L.mlp.`, in firing order: `hook_in`,
 * `hook_pre`, `hook_pre_linear` (gated only), `hook_post`; then W_out (plus the residual in the
 * same pass when given).
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
 * import { mlpForward } from "./mlp.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * const [out, residPlusOut] = await mlpForward(ctx, 0, w.blocks[0].mlp, resid, resid);
 * assert.deepEqual(out.shape, [1, 3, 64]); // hook_mlp_out's value
 * assert.deepEqual(residPlusOut!.shape, [1, 3, 64]);
 * ```
 * @module
 */
import * as ops from "../../gpu/ops.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { Tape } from "../tape.ts";
import { linear, type RunContext } from "./context.ts";

/** The GPU weights of one MLP. */
export interface MlpWeights {
  /** W_in [E, F]. */
  win: Tensor;
  /** b_in [F]. */
  bin?: Tensor;
  /** W_gate [E, F] (gated MLPs only). */
  wgate?: Tensor;
  /** W_out [F, E]. */
  wout: Tensor;
  /** b_out [E]. */
  bout?: Tensor;
}

/**
 * The MLP's hook points under `prefix` ("blocks.L.mlp"), in firing order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { mlpHookNames } from "./mlp.ts";
 *
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * assert.deepEqual(mlpHookNames(cfg, "blocks.0.mlp"), [
 *   "blocks.0.mlp.hook_in",
 *   "blocks.0.mlp.hook_pre",
 *   "blocks.0.mlp.hook_post",
 * ]); // gated MLPs (LLaMA) also have hook_pre_linear
 * ```
 */
export function mlpHookNames(cfg: HookedTransformerConfig, prefix: string): string[] {
  const names = ["hook_in", "hook_pre", ...(cfg.gatedMlp ? ["hook_pre_linear"] : []), "hook_post"];
  return names.map((n) => `${prefix}.${n}`);
}

/**
 * TransformerLens's GatedMLP up to hook_post: post = act(x W_gate) * (x W_in) + b_in, with
 * hook_pre at x W_gate and hook_pre_linear at x W_in.
 */
async function gatedPost(
  ctx: RunContext,
  m: string,
  w: MlpWeights,
  xin: Tensor,
): Promise<Tensor> {
  const [B, P] = xin.shape;
  const F = ctx.cfg.dMlp, fn = ctx.cfg.actFn;
  const pre = await ctx.hook(m + "hook_pre", linear(xin, w.wgate!, undefined, [B, P, F]));
  const lin = await ctx.hook(m + "hook_pre_linear", linear(xin, w.win, undefined, [B, P, F]));
  const gated = ops.activation(pre, fn, lin);
  Tape.record([gated], [pre, lin], ([g]) => ops.gatedGrad(g!, pre, lin, fn));
  const withBias = w.bin ? gated.add(w.bin) : gated;
  if (withBias !== gated) Tape.record([withBias], [gated], ([g]) => [g]);
  return await ctx.hook(m + "hook_post", withBias);
}

/** The plain MLP up to hook_post: the activation is fused into the W_in pass. */
async function plainPost(
  ctx: RunContext,
  m: string,
  w: MlpWeights,
  xin: Tensor,
): Promise<Tensor> {
  const fn = ctx.cfg.actFn;
  const [pre0, post0] = ops.linear(xin, w.win, w.bin, { act: fn });
  Tape.record([pre0], [xin], ([g]) => [ops.linearBack(g!, w.win)]);
  const pre = await ctx.hook(m + "hook_pre", pre0);
  const post1 = pre === pre0 ? post0! : ops.activation(pre, fn);
  Tape.record([post1], [pre], ([g]) => [ops.activationGrad(g!, pre, fn)]);
  return await ctx.hook(m + "hook_post", post1);
}

/**
 * The MLP of block `l` on x [B, P, E]: returns W_out's output [B, P, E] and, when `resid` is
 * given, resid + output from the same pass (null otherwise).
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
 * import { mlpForward } from "./mlp.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * const [out, none] = await mlpForward(ctx, 0, w.blocks[0].mlp, resid);
 * assert.deepEqual(out.shape, [1, 3, 64]);
 * assert.equal(none, null);
 * ```
 */
export async function mlpForward(
  ctx: RunContext,
  l: number,
  w: MlpWeights,
  x: Tensor,
  resid?: Tensor,
): Promise<[Tensor, Tensor | null]> {
  const m = `blocks.${l}.mlp.`;
  const xin = await ctx.hook(m + "hook_in", x);
  const post = w.wgate ? await gatedPost(ctx, m, w, xin) : await plainPost(ctx, m, w, xin);
  const [out, sum] = ops.linear(post, w.wout, w.bout, { resid });
  Tape.record([out], [post], ([g]) => [ops.linearBack(g!, w.wout)]);
  return [out, sum];
}
