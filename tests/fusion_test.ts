// Fusion fingerprint: a forward pass with no hooks of every reference model, raw and processed as
// the conformance tests load them, dispatches exactly the kernels its architecture needs once every
// fusion is in place (fused norm, q/k/v in one pass, activation and residual adds in the dense
// epilogues), in order, and nothing else. A refactor that drops a fusion still gives the right
// numbers (the conformance tests pass), so only this notices it: it adds dispatches.
import assert from "node:assert/strict";
import { gpuInfo, HookedTransformer, type Tensor } from "../mod.ts";
import { runtime } from "../src/gpu/runtime.ts";
import { expectedForwardKernels, kernelRole } from "./_fingerprint.ts";
import { recordDispatches } from "./_util.ts";

/**
 * Kernels per block, stated by hand as a check on expectedForwardKernels itself:
 * - gpt2_tiny (LayerNorm, learned positions, GELU MLP): ln1, q|k|v, q·kᵀ, softmax, pattern·v,
 *   W_O+resid, ln2, W_in+act, W_out+resid = 9; around the blocks tokens, positions, their add,
 *   ln_final, W_U = 5.
 * - rmsgqa_tiny (Llama: RMSNorm, rotary, gated MLP): ln1, q|k|v, rotate q, rotate k, the 3 of
 *   attention, W_O+resid, ln2, W_gate, W_in, act(gate) * in, + b_in, W_out+resid = 14; tokens,
 *   ln_final, W_U = 3.
 * - neox_tiny (parallel attention and MLP, partial rotary): ln1, q|k|v, rotate q, rotate k, the 3
 *   of attention, W_O, ln2, W_in+act, W_out, resid + attn_out, + mlp_out = 13; tokens, ln_final,
 *   W_U = 3.
 * - gemma2_tiny (Gemma-2: post-norms, soft caps, sliding window): ln1, q|k|v, rotate q, rotate k,
 *   the 3 of attention (cap and window in q·kᵀ's epilogue), W_O, ln1_post, + resid, ln2, W_gate,
 *   W_in, act(gate) * in, + b_in, W_out, ln2_post, + resid = 18; tokens, ln_final, W_U, the logit
 *   soft cap = 4.
 */
const PER_BLOCK = {
  gpt2_tiny: [9, 5],
  rmsgqa_tiny: [14, 3],
  neox_tiny: [13, 3],
  gemma2_tiny: [18, 4],
} as const;

const TOKENS = [[5, 17, 90, 3, 44, 2, 99, 7], [0, 1, 2, 3, 4, 5, 6, 7]];

for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "gemma2_tiny"] as const) {
  for (const processed of [false, true]) {
    const how = processed ? "processed" : "unprocessed";
    Deno.test(`${name} ${how}: a forward with no hooks dispatches the fused kernels its architecture needs, once`, async () => {
      const dir = new URL(`./reference/${name}/hf`, import.meta.url).pathname;
      using model = processed
        ? await HookedTransformer.fromPretrained(dir)
        : await HookedTransformer.fromPretrainedNoProcessing(dir);
      const want = expectedForwardKernels(model.cfg);
      const [perBlock, outside] = PER_BLOCK[name];
      assert.equal(
        want.length,
        model.cfg.nLayers * perBlock + outside,
        "the derivation agrees with the stated counts",
      );
      const s0 = gpuInfo().stats;
      let got: string[];
      {
        using rec = recordDispatches(runtime().gpu.device);
        using _logits = await model.forward(TOKENS) as Tensor;
        got = rec.dispatches.map((d) => kernelRole(d.kernel));
      }
      const s1 = gpuInfo().stats;
      assert.deepEqual(got, want, `kernels of the forward pass (as dispatched: ${got.join(", ")})`);
      assert.equal(
        s1.dispatches - s0.dispatches,
        want.length,
        "no dispatch outside the recorded ones",
      );
      assert.equal(s1.submits - s0.submits, 1, "one submission");
      assert.equal(s1.readbacks - s0.readbacks, 0, "no readback");
    });
  }
} // deno-fmt-ignore
