/**
 * TransformerLens's default weight processing, on the CPU state dict: fold_ln (LN -> LNPre,
 * RMS -> RMSPre; Gemma-2's post-norms `ln1_post` / `ln2_post` keep their weights),
 * center_writing_weights (LayerNorm models only), center_unembed (not with soft-capped logits),
 * fold_value_biases. Same operations in the same order as `HookedTransformer.process_weights_`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPretrained } from "./load.ts";
 * import { processWeights } from "./processing.ts";
 *
 * const none = { foldLn: false, centerWritingWeights: false, centerUnembed: false };
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {
 *   ...none,
 *   foldValueBiases: false,
 * });
 * const cfg2 = processWeights(sd, cfg, { ...none, foldLn: true, foldValueBiases: false });
 * assert.equal(cfg2.normalizationType, "LNPre"); // the LayerNorm weights now live in W_Q, W_in, W_U
 * ```
 * @module
 */
import type { HookedTransformerConfig } from "./config.ts";
import type { CpuTensor, StateDict } from "./checkpoint.ts";
import { type RopeScaling, rotaryFrequencies } from "./rope.ts";

/** Which processing steps to apply (TransformerLens's defaults are all true). */
export interface ProcessingOptions {
  /** Fold norm weights and biases into the following linear layers. */
  foldLn: boolean;
  /** Remove the mean (over d_model) of every matrix writing to the residual stream. */
  centerWritingWeights: boolean;
  /** Remove the mean over the vocabulary of W_U and b_U. */
  centerUnembed: boolean;
  /** Fold b_V into b_O. */
  foldValueBiases: boolean;
}

/**
 * Folds a norm's weight w [D] and bias b [D] into W [.., D, N] (dim -2 is d_model) and its bias
 * [.., N]; optionally centres W over d_model.
 */
function foldInto(
  W: CpuTensor,
  bias: CpuTensor | undefined,
  w: CpuTensor,
  b: CpuTensor | undefined,
  center: boolean,
): void {
  const D = W.shape.at(-2)!, N = W.shape.at(-1)!;
  const outer = W.data.length / (D * N);
  for (let o = 0; o < outer; o++) {
    const base = o * D * N;
    if (bias && b) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += W.data[base + d * N + n] * b.data[d];
        bias.data[o * N + n] += s;
      }
    }
    for (let d = 0; d < D; d++) for (let n = 0; n < N; n++) W.data[base + d * N + n] *= w.data[d];
    if (center) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += W.data[base + d * N + n];
        const mean = s / D;
        for (let d = 0; d < D; d++) W.data[base + d * N + n] -= mean;
      }
    }
  }
}

/** Subtracts from each row of [.., D] (last dim) its mean. */
function centerLast(t: CpuTensor): void {
  const D = t.shape.at(-1)!;
  for (let o = 0; o < t.data.length; o += D) {
    let s = 0;
    for (let d = 0; d < D; d++) s += t.data[o + d];
    const mean = s / D;
    for (let d = 0; d < D; d++) t.data[o + d] -= mean;
  }
}

/**
 * Applies the processing in place and returns the config with the folded normalisation type.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPretrained } from "./load.ts";
 * import { processWeights } from "./processing.ts";
 *
 * const { cfg, sd } = await loadPretrained("tests/reference/gpt2_tiny/hf", {
 *   centerUnembed: false,
 * });
 * processWeights(sd, cfg, {
 *   foldLn: false,
 *   centerWritingWeights: false,
 *   centerUnembed: true,
 *   foldValueBiases: false,
 * });
 * // W_U [d_model, d_vocab]: each row now sums to zero over the vocabulary.
 * const { shape: [, V], data } = sd.get("unembed.W_U")!;
 * assert.ok(Math.abs(data.subarray(0, V).reduce((a, b) => a + b, 0)) < 1e-3);
 * ```
 */
export function processWeights(
  sd: StateDict,
  cfg: HookedTransformerConfig,
  opts: ProcessingOptions,
): HookedTransformerConfig {
  const g = (n: string) => sd.get(n);
  let out = cfg;
  const isLn = cfg.normalizationType === "LN";
  const isRms = cfg.normalizationType === "RMS";
  if (opts.foldLn && (isLn || isRms)) {
    for (let l = 0; l < cfg.nLayers; l++) {
      const b = `blocks.${l}.`;
      // With grouped-query attention TransformerLens names the KV weights _W_K, _b_K, ...
      const kv = cfg.nKeyValueHeads ? "_" : "";
      for (
        const [w, bias] of [["W_Q", "b_Q"], [`${kv}W_K`, `${kv}b_K`], [`${kv}W_V`, `${kv}b_V`]]
      ) {
        foldInto(g(b + `attn.${w}`)!, g(b + `attn.${bias}`), g(b + "ln1.w")!, g(b + "ln1.b"), isLn);
      }
      sd.delete(b + "ln1.w");
      sd.delete(b + "ln1.b");
      foldInto(g(b + "mlp.W_in")!, g(b + "mlp.b_in"), g(b + "ln2.w")!, g(b + "ln2.b"), isLn);
      if (cfg.gatedMlp) {
        foldInto(g(b + "mlp.W_gate")!, undefined, g(b + "ln2.w")!, g(b + "ln2.b"), isLn);
      }
      sd.delete(b + "ln2.w");
      sd.delete(b + "ln2.b");
    }
    foldInto(g("unembed.W_U")!, g("unembed.b_U"), g("ln_final.w")!, g("ln_final.b"), isLn);
    sd.delete("ln_final.w");
    sd.delete("ln_final.b");
    out = { ...out, normalizationType: isLn ? "LNPre" : "RMSPre" };
  }
  if (
    opts.centerWritingWeights &&
    (out.normalizationType === "LN" || out.normalizationType === "LNPre")
  ) {
    centerLast(g("embed.W_E")!);
    if (g("pos_embed.W_pos")) centerLast(g("pos_embed.W_pos")!);
    for (let l = 0; l < cfg.nLayers; l++) {
      const b = `blocks.${l}.`;
      centerLast(g(b + "attn.W_O")!);
      if (g(b + "attn.b_O")) centerLast(g(b + "attn.b_O")!);
      centerLast(g(b + "mlp.W_out")!);
      if (g(b + "mlp.b_out")) centerLast(g(b + "mlp.b_out")!);
    }
  }
  // As TransformerLens: a soft cap on the logits is not invariant under adding a constant to
  // them, so the unembedding is not centred then (Gemma-2).
  if (opts.centerUnembed && !(cfg.outputLogitsSoftCap > 0)) {
    centerLast(g("unembed.W_U")!);
    centerLast(g("unembed.b_U")!);
  }
  if (opts.foldValueBiases) {
    for (let l = 0; l < cfg.nLayers; l++) {
      const b = `blocks.${l}.`;
      const bV = g(b + (cfg.nKeyValueHeads ? "attn._b_V" : "attn.b_V"));
      const WO = g(b + "attn.W_O")!, bO = g(b + "attn.b_O");
      if (!bV || !bO) continue;
      // With GQA, b_V has fewer heads: each query head h uses kv head h / (H / Hkv).
      const [H, E, D] = WO.shape;
      const Hkv = bV.shape[0];
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let h = 0; h < H; h++) {
          const hk = Math.floor(h / (H / Hkv));
          for (let e = 0; e < E; e++) s += bV.data[hk * E + e] * WO.data[(h * E + e) * D + d];
        }
        bO.data[d] += s;
      }
      bV.data.fill(0);
    }
  }
  return out;
}

/**
 * TransformerLens's rotary tables, computed as it does in float32: angle[p, i] = p / freq[j] with
 * j = i mod R/2 (NeoX half-split layout) and freq from `rotaryFrequencies` (base^(j / (R/2)),
 * rescaled by the config's rope scaling if any). Returns cos then sin, each [n_ctx, R].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rotaryTables } from "./processing.ts";
 *
 * const { cos, sin } = rotaryTables(64, 16, 10000); // n_ctx 64, rotary dim 16
 * assert.equal(cos.length, 64 * 16);
 * assert.equal(cos[0], 1); // position 0: no rotation
 * assert.equal(sin[0], 0);
 * ```
 */
export function rotaryTables(
  nCtx: number,
  rotaryDim: number,
  base: number,
  scaling: RopeScaling | null = null,
): { cos: Float32Array; sin: Float32Array } {
  const f = Math.fround;
  const half = rotaryDim / 2;
  const freq = rotaryFrequencies(rotaryDim, base, scaling);
  const cos = new Float32Array(nCtx * rotaryDim), sin = new Float32Array(nCtx * rotaryDim);
  for (let p = 0; p < nCtx; p++) {
    for (let i = 0; i < rotaryDim; i++) {
      const angle = f(p / freq[i % half]);
      cos[p * rotaryDim + i] = Math.cos(angle);
      sin[p * rotaryDim + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
