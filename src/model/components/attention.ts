/**
 * Attention (multi-head, grouped-query, rotary), causal, with Gemma-2's soft cap on the scores
 * and sliding window on its local layers. Hook points under `blocks.L.attn.`, in firing order:
 * `hook_q`, `hook_k`, `hook_v` (k and v with Hkv heads under grouped-query attention),
 * `hook_rot_q`, `hook_rot_k` (rotary models), `hook_attn_scores` (soft-capped, then causal and
 * window -inf), `hook_pattern`, `hook_z`; then W_O (plus the residual in the same pass when given).
 * In a padded batch pad keys get no attention (-inf scores, as TransformerLens's), a query that
 * sees no real key (a left pad) gets a pattern of zeros, and rotary angles count real tokens only.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { attentionForward } from "./attention.ts";
 * import { embedForward } from "./embed.ts";
 * import { normForward } from "./norm.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * const { y: x } = await normForward(ctx, "blocks.0.ln1", resid, w.blocks[0].ln1);
 * const [out, residPlusOut] = await attentionForward(ctx, 0, w.blocks[0].attn, w.rot, [x, x, x], resid);
 * assert.deepEqual(out.shape, [1, 3, 64]); // hook_attn_out's value
 * assert.deepEqual(residPlusOut!.shape, [1, 3, 64]); // resid + out, from the same pass
 * ```
 * @module
 */
import * as ops from "../../gpu/ops.ts";
import { Tensor } from "../../gpu/tensor.ts";
import type { HookedTransformerConfig } from "../config.ts";
import { Tape } from "../tape.ts";
import type { RunContext } from "./context.ts";

/** The GPU weights of one attention layer. */
export interface AttentionWeights {
  /**
   * W_Q, W_K and W_V side by side: [E, (H + 2 Hkv) * D], each head-major, so that q, k and v come
   * from one dispatch (held once; the separate products read column blocks).
   */
  wqkv: Tensor;
  /** b_Q, b_K, b_V side by side (zeros where one is missing), or none when all are. */
  bqkv?: Tensor;
  /** b_Q [H * D]. */
  bq?: Tensor;
  /** b_K [Hkv * D]. */
  bk?: Tensor;
  /** b_V [Hkv * D]. */
  bv?: Tensor;
  /** W_O [H * D, E]. */
  wo: Tensor;
  /** b_O [E]. */
  bo?: Tensor;
}

/**
 * The attention layer's hook points under `prefix` ("blocks.L.attn"), in firing order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { attentionHookNames } from "./attention.ts";
 *
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * const names = attentionHookNames(cfg, "blocks.0.attn");
 * assert.deepEqual(names.slice(0, 3), [
 *   "blocks.0.attn.hook_q",
 *   "blocks.0.attn.hook_k",
 *   "blocks.0.attn.hook_v",
 * ]);
 * assert.equal(names.at(-1), "blocks.0.attn.hook_z");
 * ```
 */
export function attentionHookNames(cfg: HookedTransformerConfig, prefix: string): string[] {
  const rotary = cfg.positionalEmbeddingType === "rotary";
  return [
    "hook_q",
    "hook_k",
    "hook_v",
    ...(rotary ? ["hook_rot_q", "hook_rot_k"] : []),
    "hook_attn_scores",
    "hook_pattern",
    "hook_z",
  ].map((n) => `${prefix}.${n}`);
}

/**
 * q [B, P, H, D], k and v [B, P, Hkv, D] from their inputs: one dispatch into three outputs when
 * the three inputs are one tensor (always, unless a backward pass is being recorded), else three
 * products reading column blocks of the joint weight.
 */
function qkv(
  cfg: HookedTransformerConfig,
  w: AttentionWeights,
  [xq, xk, xv]: [Tensor, Tensor, Tensor],
  [B, P]: number[],
): Tensor[] {
  const { nHeads: H, dHead: D, dModel: E } = cfg;
  const Hkv = cfg.nKeyValueHeads ?? H;
  const parts: [number, number, number] = [H * D, Hkv * D, Hkv * D];
  const offs = [0, parts[0], parts[0] + parts[1]];
  const shapes = [[B, P, H, D], [B, P, Hkv, D], [B, P, Hkv, D]];
  if (xq === xk && xk === xv && E % 4 === 0 && parts.every((n) => n % 4 === 0)) {
    const outs = ops.linearSplit(xq, w.wqkv, w.bqkv, parts);
    const ys = outs.map((o, i) => o.moveTo(shapes[i]));
    Tape.record(ys, [xq], (gs) => {
      let dx: Tensor | null = null;
      for (const [i, g] of gs.entries()) {
        if (!g) continue;
        const part = ops.linearBack(g.reshape([B * P, parts[i]]), w.wqkv, parts[i], offs[i]);
        dx = dx ? dx.add(part) : part;
      }
      return [dx?.moveTo([...xq.shape]) ?? null];
    });
    return ys;
  }
  const biases = [w.bq, w.bk, w.bv];
  return [xq, xk, xv].map((x, i) => {
    const y = ops.linearBlock(x, w.wqkv, offs[i], parts[i], biases[i]).moveTo(shapes[i]);
    Tape.record([y], [x], ([g]) => [
      ops.linearBack(g!.reshape([B * P, parts[i]]), w.wqkv, parts[i], offs[i]).moveTo([
        ...x.shape,
      ]),
    ]);
    return y;
  });
}

/**
 * Attention of block `l` on its q, k and v inputs [B, P, E]. Returns W_O's output [B, P, E] and,
 * when `resid` is given, resid + output from the same pass (null otherwise). `rot` holds the
 * rotary tables (cos then sin, each [n_ctx, rotary_dim]) of rotary models.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { HookRegistry } from "../hooks.ts";
 * import { loadPretrained } from "../load.ts";
 * import { uploadWeights } from "../upload.ts";
 * import { contextFor, plainHookPoints } from "./context.ts";
 * import { attentionForward } from "./attention.ts";
 * import { embedForward } from "./embed.ts";
 * import { normForward } from "./norm.ts";
 *
 * await initGpu();
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {});
 * const w = uploadWeights(sd, cfg, "float32");
 * const ctx = contextFor(cfg, plainHookPoints(new HookRegistry(), null), null, null);
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * const resid = await embedForward(ctx, w.embed, tokens); // [1, 3, d_model]
 * const { y: x } = await normForward(ctx, "blocks.0.ln1", resid, w.blocks[0].ln1);
 * const [out, none] = await attentionForward(ctx, 0, w.blocks[0].attn, undefined, [x, x, x]);
 * assert.deepEqual(out.shape, [1, 3, 64]);
 * assert.equal(none, null); // no residual given
 * ```
 */
export async function attentionForward(
  ctx: RunContext,
  l: number,
  w: AttentionWeights,
  rot: Tensor | undefined,
  [xq, xk, x]: [Tensor, Tensor, Tensor],
  resid?: Tensor,
): Promise<[Tensor, Tensor | null]> {
  const cfg = ctx.cfg;
  const a = `blocks.${l}.attn.`;
  const [B, P] = x.shape;
  const H = cfg.nHeads, D = cfg.dHead, Hkv = cfg.nKeyValueHeads ?? H;
  const [q0, k0, v0] = qkv(cfg, w, [xq, xk, x], [B, P]);
  let q = await ctx.hook(a + "hook_q", q0);
  let k = await ctx.hook(a + "hook_k", k0);
  const v = await ctx.hook(a + "hook_v", v0);
  const kv = ctx.kv;
  const offset = kv?.offset ?? 0;
  const pad = ctx.pad;
  if (rot) {
    const R = cfg.rotaryDim!;
    const rotate = (t: Tensor, inverse: boolean) =>
      pad?.shifted
        ? ops.rotaryRows(t, rot, R, offset, pad.starts, inverse)
        : ops.rotary(t, rot, R, offset, inverse);
    const rq = rotate(q, false), rk = rotate(k, false);
    Tape.record([rq], [q], ([g]) => [rotate(g!, true)]);
    Tape.record([rk], [k], ([g]) => [rotate(g!, true)]);
    q = await ctx.hook(a + "hook_rot_q", rq);
    k = await ctx.hook(a + "hook_rot_k", rk);
  }
  // With a KV cache, this step's keys/values are appended and attention reads the whole cache.
  let [kAll, vAll, Pk, kvStride] = [k, v, P, P * Hkv * D];
  if (kv) {
    ops.kvWrite(k, v, kv.k[l], kv.v[l], offset);
    [kAll, vAll, Pk, kvStride] = [kv.k[l], kv.v[l], offset + P, kv.cap * Hkv * D];
  }
  let scale = cfg.useAttnScale ? cfg.attnScale : 1;
  if (cfg.scaleAttnByInverseLayerIdx) scale *= l + 1;
  const group = H / Hkv;
  // Gemma-2: the scores' soft cap (before the mask) and this layer's sliding window (0: none).
  const softCap = cfg.attnScoresSoftCap;
  const window = cfg.attnTypes?.[l] === "local" ? cfg.windowSize ?? 0 : 0;
  // hook_z, then W_O (plus the residual in the same pass).
  const finish = async (z: Tensor): Promise<[Tensor, Tensor | null]> => {
    const zh = await ctx.hook(a + "hook_z", z);
    const [out, sum] = ops.linear(zh.reshape([B, P, H * D]), w.wo, w.bo, { resid });
    Tape.record([out], [zh], ([g]) => [ops.linearBack(g!, w.wo).moveTo([B, P, H, D])]);
    return [out, sum];
  };
  if (
    ops.tuning.attention.fused && !ctx.taping && ops.flashFits(D) &&
    ctx.inert(a + "hook_attn_scores") && ctx.inert(a + "hook_pattern")
  ) {
    // Nothing reads the scores or the pattern: one pass, neither is written.
    const alpha = 1 / scale;
    return await finish(
      ops.flashAttention(q, kAll, vAll, {
        B,
        P,
        Pk,
        H,
        Hkv,
        E: D,
        kvStride,
        alpha,
        offset,
        mask: pad ? { t: pad.keyMask, stride: pad.stride } : undefined,
        window,
        softCap,
      }),
    );
  }
  const scores = Tensor.empty([B, H, P, Pk]);
  ops.gemm(
    { t: scores, b1: H * P * Pk, b2: P * Pk, row: Pk, col: 1 },
    { t: q, b1: P * H * D, b2: D, row: H * D, col: 1 },
    { t: kAll, b1: kvStride, b2: D, row: 1, col: Hkv * D },
    {
      M: P,
      N: Pk,
      K: D,
      nb1: B,
      nb2: H,
      alpha: 1 / scale,
      causal: true,
      causalOffset: offset,
      bGroup: group,
      window,
      softCap,
    },
  );
  if (!kv) {
    const [qq, kk] = [q, k];
    Tape.record([scores], [qq, kk], ([gCapped]) => {
      // Through the soft cap first: the gradient of the scaled scores.
      const gS = softCap > 0 ? ops.softCapGrad(gCapped!, scores, softCap) : gCapped;
      // dq = α gS · k (per head, k of the head's KV group); dk = α gSᵀ · q summed over the group.
      const gq = Tensor.empty([B, P, H, D]);
      ops.gemm(
        { t: gq, b1: P * H * D, b2: D, row: H * D, col: 1 },
        { t: gS!, b1: H * P * P, b2: P * P, row: P, col: 1 },
        { t: kk, b1: P * Hkv * D, b2: D, row: Hkv * D, col: 1 },
        { M: P, N: D, K: P, nb1: B, nb2: H, alpha: 1 / scale, bGroup: group },
      );
      const gk = Tensor.empty([B, P, Hkv, D]);
      for (let j = 0; j < group; j++) {
        ops.gemm(
          { t: gk, b1: P * Hkv * D, b2: D, row: Hkv * D, col: 1 },
          { t: gS!, off: j * P * P, b1: H * P * P, b2: group * P * P, row: 1, col: P },
          { t: qq, off: j * D, b1: P * H * D, b2: group * D, row: H * D, col: 1 },
          { M: P, N: D, K: P, nb1: B, nb2: Hkv, alpha: 1 / scale, accumulate: j > 0 },
        );
      }
      return [gq, gk];
    });
  }
  if (pad) ops.maskKeys(scores, pad.keyMask, pad.stride);
  const hookedScores = await ctx.hook(a + "hook_attn_scores", scores);
  const pattern0 = ops.softmax(hookedScores);
  Tape.record([pattern0], [hookedScores], ([g]) => [ops.softmaxGrad(g!, pattern0)]);
  const pattern = await ctx.hook(a + "hook_pattern", pattern0);
  const z = Tensor.empty([B, P, H, D]);
  ops.gemm(
    { t: z, b1: P * H * D, b2: D, row: H * D, col: 1 },
    { t: pattern, b1: H * P * Pk, b2: P * Pk, row: Pk, col: 1 },
    { t: vAll, b1: kvStride, b2: D, row: Hkv * D, col: 1 },
    { M: P, N: D, K: Pk, nb1: B, nb2: H, bGroup: group },
  );
  if (!kv) {
    const vv = v;
    Tape.record([z], [pattern, vv], ([gz]) => {
      // dpattern = gz · vᵀ; dv = patternᵀ · gz summed over the KV group.
      const gp = Tensor.empty([B, H, P, P]);
      ops.gemm(
        { t: gp, b1: H * P * P, b2: P * P, row: P, col: 1 },
        { t: gz!, b1: P * H * D, b2: D, row: H * D, col: 1 },
        { t: vv, b1: P * Hkv * D, b2: D, row: 1, col: Hkv * D },
        { M: P, N: P, K: D, nb1: B, nb2: H, bGroup: group },
      );
      const gv = Tensor.empty([B, P, Hkv, D]);
      for (let j = 0; j < group; j++) {
        ops.gemm(
          { t: gv, b1: P * Hkv * D, b2: D, row: Hkv * D, col: 1 },
          { t: pattern, off: j * P * P, b1: H * P * P, b2: group * P * P, row: 1, col: P },
          { t: gz!, off: j * D, b1: P * H * D, b2: group * D, row: H * D, col: 1 },
          { M: P, N: D, K: P, nb1: B, nb2: Hkv, accumulate: j > 0 },
        );
      }
      return [gp, gv];
    });
  }
  return await finish(z);
}
