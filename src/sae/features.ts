/**
 * Analyses the command line, the demo and the explorer share: the strongest SAE latents of each
 * token, and the most likely next tokens. Each reads back only what it reports.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, nextTokens, SAE, topLatentsPerToken } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("models/demo-pycode/hf");
 * using sae = await SAE.load("models/demo-pycode/sae");
 * const rows = await topLatentsPerToken(model, sae, "def f(x):", 3);
 * assert.equal(rows[1].token, "def"); // rows[0] is the BOS token the model prepends
 * using logits = await model.forward("def f(x):");
 * const [best] = await nextTokens(model, logits, 1);
 * assert.ok(best.prob > 0 && best.prob <= 1);
 * ```
 * @module
 */
import { InputError } from "../errors.ts";
import { gatherPositions } from "../gpu/kernels/padding.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { AttentionMask, Input, PaddingSide } from "../model/model.ts";
import { checkMask } from "../model/padding.ts";
import { inputPadding } from "../model/tokens.ts";
import type { HookedSAETransformer } from "./hooked_sae_transformer.ts";
import type { SAE } from "./sae.ts";

/** One latent's activation. */
export interface LatentActivation {
  /** Latent index. */
  latent: number;
  /** Activation (hook_sae_acts_post). */
  act: number;
}

/** A token and its strongest latents. */
export interface TokenLatents {
  /** Position in the sequence. */
  pos: number;
  /** Token id. */
  id: number;
  /** The token as text. */
  token: string;
  /** Strongest latents, largest first (only active ones). */
  latents: LatentActivation[];
}

/** Indices of the k largest values of a row, largest first, skipping values <= min. */
export function topIndices(row: ArrayLike<number>, k: number, min = -Infinity): number[] {
  const idx: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i];
    if (!(v > min)) continue;
    if (idx.length < k) {
      idx.push(i);
      idx.sort((a, b) => row[b] - row[a]);
    } else if (v > row[idx[k - 1]]) {
      idx[k - 1] = i;
      idx.sort((a, b) => row[b] - row[a]);
    }
  }
  return idx;
}

/** Which positions of a batch are real (for the feature analyses of a padded batch). */
export interface PaddingOptions {
  /** Token input: 0/1 per position, [batch][pos] (1: a real token). */
  attentionMask?: AttentionMask;
  /** Text input: where shorter texts are padded (default the model's). */
  paddingSide?: PaddingSide;
}

/**
 * The `k` strongest latents of each real token of `input`'s first sequence (pad positions are
 * left out; `pos` counts real tokens), with the SAE attached for this run only.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, SAE, topLatentsPerToken } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("models/demo-pycode/hf");
 * using sae = await SAE.load("models/demo-pycode/sae");
 * const rows = await topLatentsPerToken(model, sae, "return x", 5);
 * assert.deepEqual(rows.map((r) => r.token), ["<|endoftext|>", "return", " x"]);
 * assert.ok(rows[0].latents.length <= 5);
 * assert.equal(model.attachedSaes.size, 0); // the SAE was attached for this run only
 * ```
 */
export async function topLatentsPerToken(
  model: HookedSAETransformer,
  sae: SAE,
  input: Input,
  k = 5,
  opts: PaddingOptions = {},
): Promise<TokenLatents[]> {
  const padding = inputPadding(model.cfg, model.tokenizer, input, opts);
  const ids = typeof input === "string" ||
      (Array.isArray(input) && typeof input[0] === "string")
    ? model.toTokenIds(input as string | string[], opts)[0]
    : Array.isArray(input) && Array.isArray(input[0])
    ? (input as number[][])[0]
    : Array.isArray(input)
    ? input as number[]
    : null;
  const name = `${sae.cfg.hookName}.hook_sae_acts_post`;
  const [out, cache] = await model.runWithCacheWithSaes(input, {
    saes: [sae],
    namesFilter: name,
    stopAtLayer: layerAfter(model, sae),
    attentionMask: opts.attentionMask,
    paddingSide: opts.paddingSide,
  });
  using _c = cache;
  (out as Tensor).dispose();
  const acts = await cache.get(name).toArray();
  const [, P, dSae] = cache.get(name).shape;
  const tokenIds = ids ?? Array.from({ length: P }, () => -1);
  const start = padding?.starts[0] ?? 0, end = padding?.ends[0] ?? P;
  return Array.from({ length: end - start }, (_, i) => {
    const p = start + i;
    const row = acts.subarray(p * dSae, (p + 1) * dSae);
    return {
      pos: i,
      id: tokenIds[p],
      token: model.tokenizer && tokenIds[p] >= 0
        ? model.tokenizer.piece(tokenIds[p])
        : String(tokenIds[p]),
      latents: topIndices(row, k, 0).map((latent) => ({ latent, act: row[latent] })),
    };
  });
}

/**
 * The block after the SAE's hook (undefined past the last block): running further is not needed
 * to read its latents.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
 * import { layerAfter } from "./features.ts";
 *
 * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/topk_mlp_out0");
 * const stopAtLayer = layerAfter(model, sae); // 1: blocks.0.hook_mlp_out is in layer 0
 * const [, cache] = await model.runWithCacheWithSaes([[1, 2, 3]], { saes: [sae], stopAtLayer });
 * const acts = cache.get("blocks.0.hook_mlp_out.hook_sae_acts_post");
 * assert.deepEqual(acts.shape, [1, 3, sae.cfg.dSae]);
 * cache.dispose();
 * ```
 */
export function layerAfter(model: HookedSAETransformer, sae: SAE): number | undefined {
  const m = /^blocks\.(\d+)\./.exec(sae.cfg.hookName);
  if (!m) return undefined;
  const l = Number(m[1]) + 1;
  return l < model.cfg.nLayers ? l : undefined;
}

/** A candidate next token. */
export interface NextToken {
  /** Token id. */
  id: number;
  /** The token as text. */
  token: string;
  /** Probability. */
  prob: number;
}

/**
 * The `k` most likely next tokens after the last real token of sequence `row` (default 0) of
 * `logits` (its last position, or with `attentionMask` its last real token). Reads back that
 * one position's logits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, nextTokens } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("models/demo-pycode/hf");
 * using logits = await model.forward("for i in");
 * const top = await nextTokens(model, logits, 5);
 * assert.equal(top.length, 5);
 * assert.ok(top[0].prob >= top[1].prob);
 * ```
 */
export async function nextTokens(
  model: HookedSAETransformer,
  logits: Tensor,
  k = 5,
  opts: { row?: number; attentionMask?: AttentionMask } = {},
): Promise<NextToken[]> {
  const [B, P] = logits.shape;
  const last = opts.attentionMask
    ? checkMask(opts.attentionMask, B, P).ends.map((e) => e - 1)
    : new Array(B).fill(P - 1);
  using picked = gatherPositions(logits, last);
  const V = picked.shape[1];
  const b = opts.row ?? 0;
  if (!Number.isInteger(b) || b < 0 || b >= B) {
    throw new InputError(`nextTokens: row ${b} is outside the batch (0..${B - 1}).`);
  }
  const row = (await picked.toArray()).subarray(b * V, (b + 1) * V);
  let mx = -Infinity;
  for (const v of row) mx = Math.max(mx, v);
  let z = 0;
  for (const v of row) z += Math.exp(v - mx);
  return topIndices(row, k).map((id) => ({
    id,
    token: model.tokenizer ? model.tokenizer.piece(id) : String(id),
    prob: Math.exp(row[id] - mx) / z,
  }));
}
