// The kernels a forward pass dispatches, named by what they compute rather than by the variant a
// device or a tuning choice picks, and the sequence a model's architecture implies. Used by
// fusion_test.ts (the default path) and attention_test.ts (the one-pass attention).
import type { HookedTransformerConfig } from "../mod.ts";

/**
 * A pipeline label ("shader:entry:defines", see runtime.ts's pipeline()) as the computation it
 * does, the same on every device: the software-adapter variants (shaders `*_cpu`, `*_sg`, entries
 * `*_rows`, `*_cpu`, `*_sg`) are named as the kernels they stand in for, and the dense kernels
 * (whatever tile or matrix-vector entry the shape picks) as `linear` plus their fused epilogue:
 * `[q|k|v]` three outputs from one pass, `+act` the activation, `+resid` the residual add,
 * `+gate` an SAE encoder's gate.
 */
export function kernelRole(label: string): string {
  const [shader, entry, defs = ""] = label.split(":");
  const family = shader.replace(/_(cpu|sg)$/, "");
  if (family === "linear" && entry !== "splitk_sum") {
    const d = Object.fromEntries(defs.split(",").map((kv) => kv.split("=")));
    return "linear" + (d.SPLIT === "true" ? "[q|k|v]" : "") + (d.ACT !== "0" ? "+act" : "") +
      (d.RESID === "true" ? "+resid" : "") + (d.GATE !== "0" ? "+gate" : "");
  }
  return `${family}:${entry.replace(/_(rows|cpu|sg)$/, "")}`;
}

/**
 * The kernels, in order, of a forward pass with no hooks (logits, no KV cache) of a model of
 * `cfg`, from its architecture: what each component must cost once its fusions are in place.
 *
 * - embed: the token lookup; with learned positions also their lookup and the add.
 * - a norm: one pass makes hook_scale, hook_normalized and `* w + b` (norm:fused).
 * - q, k and v: one dense pass over the joint weight into three outputs; rotary models then
 *   rotate q and k (one dispatch each).
 * - attention: q·kᵀ (masked, scaled), softmax, pattern·v; or, `flash`, one pass of all three.
 * - W_O and W_out: the residual add in the same pass (sequential blocks); with parallel
 *   attention and MLP (NeoX) plain products and two adds, resid + attn_out + mlp_out.
 * - MLP in: the activation in the W_in pass; gated: x·W_gate, x·W_in, act(gate) * in, then
 *   + b_in (TransformerLens's GatedMLP always has b_in; zeros when the checkpoint has none).
 * - post-norms (Gemma-2): W_O and W_out plain products, each output's norm (norm:fused), then the
 *   residual add (elementwise:binary): the norm comes between the product and the add.
 * - the final norm, then W_U; with a logit soft cap (Gemma-2) one elementwise pass after it. The
 *   scores' soft cap and a sliding window cost nothing: they are in q·kᵀ's epilogue (or flash).
 *
 * No split-K sum appears: these models' products are at most 256 deep, and a
 * split needs two slices of at least 256 (linear's splitKMinDepth); their vocabularies (1000, 512)
 * are whole column quads, so W_U is not padded. (Checked on lavapipe with the GPU kernels forced
 * as well: the same sequence.)
 */
export function expectedForwardKernels(
  cfg: HookedTransformerConfig,
  { flash = false }: { flash?: boolean } = {},
): string[] {
  const rotary = cfg.positionalEmbeddingType === "rotary";
  const seq = ["embed:tokens"];
  if (!rotary) seq.push("embed:positions", "elementwise:binary");
  const attention = flash ? ["flash:main"] : ["matmul:main", "softmax:main", "matmul:main"];
  const mlpIn = cfg.gatedMlp
    ? ["linear", "linear", "elementwise:gated", "elementwise:binary"]
    : ["linear+act"];
  for (let l = 0; l < cfg.nLayers; l++) {
    seq.push("norm:fused", "linear[q|k|v]");
    if (rotary) seq.push("attention:rotary", "attention:rotary");
    seq.push(...attention);
    if (cfg.parallelAttnMlp) {
      seq.push(
        "linear",
        "norm:fused",
        ...mlpIn,
        "linear",
        "elementwise:binary",
        "elementwise:binary",
      );
    } else if (cfg.useNormalizationBeforeAndAfter) {
      const post = ["linear", "norm:fused", "elementwise:binary"];
      seq.push(...post, "norm:fused", ...mlpIn, ...post);
    } else {
      seq.push("linear+resid", "norm:fused", ...mlpIn, "linear+resid");
    }
  }
  seq.push("norm:fused", "linear");
  if (cfg.outputLogitsSoftCap > 0) seq.push("elementwise:softcap");
  return seq;
}
