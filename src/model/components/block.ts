/**
 * A transformer block: ln1, attention, ln2, MLP, each added to the residual stream (in parallel
 * for NeoX; Gemma-2 normalises each output again first, `ln1_post` / `ln2_post`). Hook points
 * under `blocks.L.`, in firing order: `hook_resid_pre`, ln1's, attention's, ln1_post's,
 * `hook_attn_out`, `hook_resid_mid` (not with parallel attention and MLP), ln2's, the MLP's,
 * ln2_post's, `hook_mlp_out`, `hook_resid_post`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { blockForward } from "./block.ts";
 * import { embedForward } from "./embed.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const residIn = await embedForward(ctx, w.embed, tokens);
 * const residOut = await blockForward(ctx, 0, w.blocks[0], w.rot, residIn);
 * assert.deepEqual(residOut.shape, [1, 3, 64]); // blocks.0.hook_resid_post
 * ```
 * @module
 */
import type { Tensor } from "../../gpu/tensor.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { Tape } from "../tape.ts";
import { attentionForward, attentionHookNames, type AttentionWeights } from "./attention.ts";
import { addResidual, type RunContext } from "./context.ts";
import { mlpForward, mlpHookNames, type MlpWeights } from "./mlp.ts";
import {
  normForward,
  normHookNames,
  type NormResult,
  normTapedCopy,
  type NormWeights,
} from "./norm.ts";

/** The GPU weights of one block. */
export interface BlockWeights {
  /** The norm before attention. */
  ln1: NormWeights;
  /** Attention. */
  attn: AttentionWeights;
  /** The norm before the MLP. */
  ln2: NormWeights;
  /** The MLP. */
  mlp: MlpWeights;
  /** The norm on the attention's output (Gemma-2's post-norm), if any. */
  ln1Post?: NormWeights;
  /** The norm on the MLP's output (Gemma-2's post-norm), if any. */
  ln2Post?: NormWeights;
}

/**
 * Every tensor a block holds (for freeing).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { blockTensors } from "./block.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const tensors = blockTensors(w.blocks[0]);
 * assert.ok(tensors.length > 0);
 * for (const t of tensors) t.dispose();
 * assert.ok(tensors.every((t) => t.disposed));
 * ```
 */
export function blockTensors(w: BlockWeights): Tensor[] {
  return [w.ln1, w.attn, w.ln2, w.mlp, w.ln1Post ?? {}, w.ln2Post ?? {}].flatMap((part) =>
    Object.values(part).filter((t): t is Tensor => t !== undefined)
  );
}

/**
 * Block `l`'s hook points, in firing order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { blockHookNames } from "./block.ts";
 *
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * const names = blockHookNames(cfg, 0);
 * assert.equal(names[0], "blocks.0.hook_resid_pre");
 * assert.equal(names.at(-1), "blocks.0.hook_resid_post");
 * ```
 */
export function blockHookNames(cfg: HookedTransformerConfig, l: number): string[] {
  const b = `blocks.${l}.`;
  const post = cfg.useNormalizationBeforeAndAfter;
  return [
    b + "hook_resid_pre",
    ...normHookNames(b + "ln1"),
    ...attentionHookNames(cfg, b + "attn"),
    ...(post ? normHookNames(b + "ln1_post") : []),
    b + "hook_attn_out",
    ...(cfg.parallelAttnMlp ? [] : [b + "hook_resid_mid"]),
    ...normHookNames(b + "ln2"),
    ...mlpHookNames(cfg, b + "mlp"),
    ...(post ? normHookNames(b + "ln2_post") : []),
    b + "hook_mlp_out",
    b + "hook_resid_post",
  ];
}

/**
 * The inputs of q, k and v from ln1's output. TransformerLens runs ln1 once per input; its
 * backward hooks fire for each call in reverse order, so the gradient it keeps at ln1's hooks is
 * the q input's. While recording a backward pass, k and v get their own copies of the norm in
 * the tape (same values, no recomputation) to match.
 */
function attentionInputs(
  ctx: RunContext,
  ln: NormResult,
  w: NormWeights,
): [Tensor, Tensor, Tensor] {
  const x = ln.y;
  if (!ctx.taping || ln.scale !== ln.scale0 || ln.normalized !== ln.n0) return [x, x, x];
  return [x, normTapedCopy(ln, w), normTapedCopy(ln, w)];
}

/**
 * Block `l` on the residual stream [B, P, E]. The residual adds are fused into the output
 * projections; a hook that replaces hook_attn_out or hook_mlp_out gets its own add.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { blockForward } from "./block.ts";
 * import { embedForward } from "./embed.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * let resid = await embedForward(ctx, w.embed, tokens);
 * for (let l = 0; l < cfg.nLayers; l++) resid = await blockForward(ctx, l, w.blocks[l], w.rot, resid);
 * assert.deepEqual(resid.shape, [1, 3, 64]);
 * ```
 */
export async function blockForward(
  ctx: RunContext,
  l: number,
  w: BlockWeights,
  rot: Tensor | undefined,
  residIn: Tensor,
): Promise<Tensor> {
  const b = `blocks.${l}.`;
  const resid = await ctx.hook(b + "hook_resid_pre", residIn);
  const ln1 = await normForward(ctx, b + "ln1", resid, w.ln1);
  const parallel = ctx.cfg.parallelAttnMlp;
  const qkv = attentionInputs(ctx, ln1, w.ln1);
  // With a post-norm the residual add cannot go into W_O's pass: the norm comes between.
  const [attn0, midFused] = await attentionForward(
    ctx,
    l,
    w.attn,
    rot,
    qkv,
    parallel || w.ln1Post ? undefined : resid,
  );
  const attnRaw = w.ln1Post ? (await normForward(ctx, b + "ln1_post", attn0, w.ln1Post)).y : attn0;
  const attnOut = await ctx.hook(b + "hook_attn_out", attnRaw);
  if (parallel) {
    const { y: x2 } = await normForward(ctx, b + "ln2", resid, w.ln2);
    const [mlpOut0] = await mlpForward(ctx, l, w.mlp, x2);
    const mlpOut = await ctx.hook(b + "hook_mlp_out", mlpOut0);
    const sum = addResidual(addResidual(resid, attnOut), mlpOut);
    return await ctx.hook(b + "hook_resid_post", sum);
  }
  const fusedMid = attnOut === attnRaw && midFused ? midFused : null;
  if (fusedMid) Tape.record([fusedMid], [resid, attnOut], ([g]) => [g, g]);
  const mid = await ctx.hook(b + "hook_resid_mid", fusedMid ?? addResidual(resid, attnOut));
  const { y: x2 } = await normForward(ctx, b + "ln2", mid, w.ln2);
  const [mlp0, postFused] = await mlpForward(ctx, l, w.mlp, x2, w.ln2Post ? undefined : mid);
  const mlpRaw = w.ln2Post ? (await normForward(ctx, b + "ln2_post", mlp0, w.ln2Post)).y : mlp0;
  const mlpOut = await ctx.hook(b + "hook_mlp_out", mlpRaw);
  const fusedPost = mlpOut === mlpRaw && postFused ? postFused : null;
  if (fusedPost) Tape.record([fusedPost], [mid, mlpOut], ([g]) => [g, g]);
  return await ctx.hook(b + "hook_resid_post", fusedPost ?? addResidual(mid, mlpOut));
}
