// Gradients at hook points: TransformerLens's tl_grads (gradient of the mean loss at every hook)
// for every reference model, backward hooks, a custom metric, and a finite-difference check of a
// gradient through an attached SAE.
import assert from "node:assert/strict";
import { HookedSAETransformer, SAE, Tensor } from "../mod.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr, randArray } from "./_util.ts";

async function refTokens(REF: string): Promise<number[][]> {
  using f = await SafetensorsFile.open(`${REF}tl_processed.safetensors`);
  const flat = await f.int32("tokens");
  const [B, P] = f.info("tokens").shape;
  return Array.from({ length: B }, (_, b) => Array.from(flat.subarray(b * P, (b + 1) * P)));
}

for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "gemma2_tiny"]) {
  Deno.test(`${name}: gradients of the mean loss at every hook match tl_grads`, async () => {
    // gemma2_tiny was made by HookedTransformer, which has no blocks.N.mlp.hook_in (the SAE
    // transformer's addition; see the reference README): its gradient is not in the reference.
    const inRef = (k: string) =>
      name !== "gemma2_tiny" || !/^blocks\.\d+\.mlp\.hook_in_grad$/.test(k);
    const REF = new URL(`./reference/${name}/`, import.meta.url).pathname;
    using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
    using ref = await SafetensorsFile.open(`${REF}tl_grads.safetensors`);
    const [loss, cache] = await model.runWithCache(await refTokens(REF), {
      inclBwd: true,
      returnType: "loss",
    });
    using _c = cache;
    using _l = loss as Tensor;
    const rl = (await ref.float32("loss"))[0];
    assert.ok(Math.abs((await (loss as Tensor).toArray())[0] - rl) / rl < 1e-4, "loss");
    const want = ref.names().filter((k) => k.startsWith("cache.")).map((k) => k.slice(6)).sort();
    const got = cache.keys().filter((k) => k.endsWith("_grad") && inRef(k)).sort();
    assert.deepEqual(got, want, "a gradient for every hook point");
    const arrays = await cache.toArrays();
    const errs: string[] = [];
    for (const k of want) {
      assert.deepEqual(cache.get(k).shape, ref.info(`cache.${k}`).shape, k);
      const e = maxRelErr(arrays.get(k)!, await ref.float32(`cache.${k}`));
      if (!(e < 1e-4)) errs.push(`${k}: ${e}`);
    }
    assert.deepEqual(errs, []);
  });
} // deno-fmt-ignore

const GPT2 = new URL("./reference/gpt2_tiny/", import.meta.url).pathname;

/**
 * The finite differences' step and what they are held to. The metric, computed from float32
 * logits, carries rounding of about an ulp of a logit (~1e-6), which the central difference divides
 * by 2 eps; its truncation error grows as eps² (faster where a ReLU's active set is near). Measured
 * on lavapipe over the elements below: eps 1e-2 left up to 1.4% relative error, 2e-2 0.8%, 3e-2
 * 0.3% (at most 1.1e-5 absolute for the loss, 1.5e-5 for the logit difference), 5e-2 8% (an SAE
 * input near a ReLU kink). So eps 3e-2, and |fd - gradient| within 1% of |fd| (3x the worst seen)
 * plus a floor of about three times the rounding the step lets through (FD_FLOOR).
 */
const FD_EPS = 3e-2;
const FD_REL = 1e-2;
/** Rounding floors: the mean loss (rounding partly averaged over positions) and one logit difference. */
const FD_FLOOR = { loss: 5e-6, logitDiff: 4e-5 };

/**
 * The central finite difference (m(+eps) - m(-eps)) / 2eps of a metric of the logits, for one
 * element of an activation bumped through a forward hook.
 */
async function finiteDiff(
  model: HookedSAETransformer,
  tokens: number[][],
  hook: string,
  index: number,
  eps: number,
  metric: (logits: Float32Array) => number,
  saes: SAE[] = [],
): Promise<number> {
  const at = async (delta: number) => {
    const bump = (a: Tensor) => {
      const one = new Float32Array(a.size);
      one[index] = delta;
      using d = Tensor.from(one, [...a.shape]);
      return a.add(d);
    };
    using logits = await model.runWithHooksWithSaes(tokens, {
      saes,
      fwdHooks: [[hook, bump]],
    }) as Tensor;
    return metric(await logits.toArray() as Float32Array);
  };
  return (await at(eps) - await at(-eps)) / (2 * eps);
} // deno-fmt-ignore

/** Mean next-token cross-entropy of one sequence's logits [pos, vocab], in float64 on the CPU. */
function meanNextTokenLoss(seq: number[], vocab: number): (logits: Float32Array) => number {
  return (l) => {
    let s = 0;
    for (let p = 0; p < seq.length - 1; p++) {
      const row = l.subarray(p * vocab, (p + 1) * vocab);
      const mx = Math.max(...row);
      let z = 0;
      for (const v of row) z += Math.exp(v - mx);
      s += Math.log(z) + mx - row[seq[p + 1]];
    }
    return s / (seq.length - 1);
  };
}

Deno.test("backward hooks see the gradient and may replace it", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${GPT2}hf`);
  using ref = await SafetensorsFile.open(`${GPT2}tl_grads.safetensors`);
  const tokens = await refTokens(GPT2);
  let seen: Float32Array | null = null;
  model.addHook("blocks.1.hook_resid_pre", async (g) => {
    seen = await g.toArray() as Float32Array;
    return g.scale(0);
  }, { dir: "bwd" });
  const [loss, cache] = await model.runWithCache(tokens, { inclBwd: true });
  using _c = cache;
  (loss as Tensor).dispose();
  model.resetHooks();
  assert.ok(
    maxRelErr(seen!, await ref.float32("cache.blocks.1.hook_resid_pre_grad")) < 1e-4,
    "the hook saw the true gradient",
  );
  const embed = await cache.get("hook_embed_grad").toArray();
  assert.ok(embed.every((v) => v === 0), "the replaced (zero) gradient flowed on");
  assert.ok((await cache.get("blocks.1.hook_resid_pre_grad").toArray()).every((v) => v === 0));
}); // deno-fmt-ignore

Deno.test("a custom metric (logit difference) has the gradient finite differences give", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${GPT2}hf`);
  const tokens = [[5, 17, 900, 3, 44, 2, 999, 10]];
  const [P, V] = [8, 1000];
  const metric = (l: Float32Array) => l[(P - 1) * V + 42] - l[(P - 1) * V + 7];
  const [value, cache] = await model.runWithCache(tokens, {
    inclBwd: true,
    returnType: { logitDiff: { correct: [42], incorrect: [7] } },
    namesFilter: (n) => n === "blocks.0.hook_resid_post" || n === "blocks.1.attn.hook_pattern",
  });
  using _c = cache;
  using _v = value as Tensor;
  using base = await model.forward(tokens);
  const m0 = metric(await base.toArray() as Float32Array);
  assert.ok(Math.abs((await (value as Tensor).toArray())[0] - m0) < 1e-4, "the metric's value");
  const grad = await cache.get("blocks.0.hook_resid_post_grad").toArray();
  // Element 3 * 64 + 5 reaches the last position only through layer 1's attention: its gradient
  // (~5e-6) is below the rounding floor, which is what it checks.
  for (const index of [3 * 64 + 5, 7 * 64 + 60, 5 * 64 + 1]) {
    const fd = await finiteDiff(model, tokens, "blocks.0.hook_resid_post", index, FD_EPS, metric);
    assert.ok(Math.abs(fd - grad[index]) <= FD_FLOOR.logitDiff + FD_REL * Math.abs(fd), `element ${index}: finite difference ${fd}, gradient ${grad[index]}`);
  }
}); // deno-fmt-ignore

Deno.test("a gradient through an attached SAE matches finite differences", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${GPT2}hf`);
  using sae = await SAE.load(`${GPT2}saes/std_resid_pre1`);
  const tokens = [[5, 17, 900, 3, 44, 2, 999, 10]];
  // The mean next-token loss, on the CPU, for the finite differences.
  const lossOf = meanNextTokenLoss(tokens[0], 1000);
  const h = "blocks.1.hook_resid_pre";
  const [loss, cache] = await model.runWithCacheWithSaes(tokens, { saes: [sae], inclBwd: true });
  using _c = cache;
  (loss as Tensor).dispose();
  const acts = await cache.get(`${h}.hook_sae_acts_post`).toArray();
  const gActs = await cache.get(`${h}.hook_sae_acts_post_grad`).toArray();
  const gIn = await cache.get(`${h}.hook_sae_input_grad`).toArray();
  // Latents above 0.5 stay active (positive) under a step of FD_EPS.
  const active = [...acts.keys()].filter((i) => acts[i] > 0.5).slice(0, 3);
  assert.ok(active.length === 3, "some active latents to test");
  for (const index of active) {
    const fd = await finiteDiff(model, tokens, `${h}.hook_sae_acts_post`, index, FD_EPS, lossOf, [sae]);
    assert.ok(Math.abs(fd - gActs[index]) <= FD_FLOOR.loss + FD_REL * Math.abs(fd), `latent element ${index}: finite difference ${fd}, gradient ${gActs[index]}`);
  }
  // Through the encoder too: the SAE's input (no latent crosses zero under a step of FD_EPS here).
  for (const index of [2 * 64 + 9, 6 * 64 + 33]) {
    const fd = await finiteDiff(model, tokens, `${h}.hook_sae_input`, index, FD_EPS, lossOf, [sae]);
    assert.ok(Math.abs(fd - gIn[index]) <= FD_FLOOR.loss + FD_REL * Math.abs(fd), `input element ${index}: finite difference ${fd}, gradient ${gIn[index]}`);
  }
});

Deno.test("gradients through SAEs with layer_norm and constant_norm_rescale input normalisation match finite differences", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${GPT2}hf`);
  const tokens = [[5, 17, 900, 3, 44, 2, 999, 10]];
  const lossOf = meanNextTokenLoss(tokens[0], 1000);
  // At mlp.hook_post the gradient has a non-zero mean (the residual stream's is centred by the
  // norms), so the statistics' part of the gradient matters.
  const h = "blocks.0.mlp.hook_post";
  const r = (n: number, seed: number, scale: number) => randArray(n, seed).map((v) => v * scale);
  for (const norm of ["layer_norm", "constant_norm_rescale"] as const) {
    using sae = await SAE.fromWeights(
      {
        dIn: 256,
        dSae: 96,
        architecture: "standard",
        hookName: h,
        applyBDecToInput: true,
        normalizeActivations: norm,
        reshapeActivations: "none",
        rescaleActsByDecoderNorm: false,
        dtype: "float32",
      },
      {
        W_enc: r(256 * 96, 1, 0.15),
        b_enc: r(96, 2, 0.1),
        W_dec: r(96 * 256, 3, 0.3),
        b_dec: r(256, 4, 0.1),
      },
    );
    const [loss, cache] = await model.runWithCacheWithSaes(tokens, {
      saes: [sae],
      inclBwd: true,
      namesFilter: (n) => n.startsWith(h),
    });
    using _c = cache;
    (loss as Tensor).dispose();
    const gIn = await cache.get(`${h}.hook_sae_input_grad`).toArray();
    const input = `${h}.hook_sae_input`;
    for (const index of [256, 257, 258, 260, 4 * 256 + 140, 6 * 256 + 255]) {
      const fd = await finiteDiff(model, tokens, input, index, FD_EPS, lossOf, [sae]);
      assert.ok(
        Math.abs(fd - gIn[index]) <= FD_FLOOR.loss + FD_REL * Math.abs(fd),
        `${norm}, element ${index}: finite difference ${fd}, gradient ${gIn[index]}`,
      );
    }
  }
}); // deno-fmt-ignore
