// The one-pass attention (ops.tuning.attention.fused) against the three-dispatch path on every
// reference model: logits of a forward, and greedy generation with the KV cache; and that the
// one-pass kernel is what ran (both paths give the same numbers, so only the dispatches tell).
import assert from "node:assert/strict";
import { HookedTransformer, type Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { runtime } from "../src/gpu/runtime.ts";
import { expectedForwardKernels, kernelRole } from "./_fingerprint.ts";
import { maxRelErr, recordDispatches } from "./_util.ts";

// gemma2_tiny: soft-capped scores and a sliding window of 4, passed by the 19 tokens and by the
// generation (5 + 6).
for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "gemma2_tiny"]) {
  Deno.test(`${name}: fused attention gives the same logits and generations as the unfused path`, async () => {
    using model = await HookedTransformer.fromPretrained(
      new URL(`./reference/${name}/hf`, import.meta.url).pathname,
    );
    const tokens = [[5, 17, 90, 3, 44, 2, 99, 7, 1, 12, 60, 61, 62, 63, 64, 65, 66, 67, 68], [
      0,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
      9,
      10,
      11,
      12,
      13,
      14,
      15,
      16,
      17,
      18,
    ]];
    const run = async (fused: boolean) => {
      ops.tuning.attention.fused = fused;
      try {
        using rec = recordDispatches(runtime().gpu.device);
        using logits = await model.forward(tokens) as Tensor;
        const forwardKernels = rec.dispatches.splice(0).map((d) => kernelRole(d.kernel));
        const gen = await model.generate([tokens[0].slice(0, 5)], {
          maxNewTokens: 6,
          doSample: false,
        });
        const genKernels = rec.dispatches.map((d) => kernelRole(d.kernel));
        return { logits: await logits.toArray(), gen, forwardKernels, genKernels };
      } finally {
        ops.tuning.attention.fused = false;
      }
    };
    const [plain, fused] = [await run(false), await run(true)];
    assert.ok(
      maxRelErr(fused.logits, plain.logits) < 1e-5,
      `logits ${maxRelErr(fused.logits, plain.logits)}`,
    );
    assert.deepEqual(fused.gen, plain.gen);
    // The forward took one attention pass a layer where the plain path took three.
    assert.deepEqual(plain.forwardKernels, expectedForwardKernels(model.cfg), "plain forward");
    assert.deepEqual(
      fused.forwardKernels,
      expectedForwardKernels(model.cfg, { flash: true }),
      "fused forward",
    );
    // Generation (prefill, then a step per token on the KV cache): every layer of every step.
    const count = (ks: string[], k: string) => ks.filter((x) => x === k).length;
    const steps = count(fused.genKernels, "embed:tokens");
    assert.ok(steps >= 6, `${steps} forward steps`);
    assert.equal(
      count(fused.genKernels, "flash:main"),
      steps * model.cfg.nLayers,
      "fused generation",
    );
    assert.equal(count(fused.genKernels, "softmax:main"), 0, "fused generation makes no pattern");
    assert.equal(count(plain.genKernels, "flash:main"), 0, "plain generation");
  });
} // deno-fmt-ignore

Deno.test("fused attention stands aside when the pattern is hooked or cached", async () => {
  using model = await HookedTransformer.fromPretrained(new URL("./reference/gpt2_tiny/hf", import.meta.url).pathname);
  const tokens = [[5, 17, 90, 3, 44, 2, 99]];
  ops.tuning.attention.fused = true;
  try {
    const [out, cache] = await model.runWithCache(tokens, { namesFilter: (n) => n.endsWith("hook_pattern") });
    (out as Tensor).dispose();
    assert.equal(cache.keys().length, 2, "both layers' patterns were made and cached");
    cache.dispose();
    let seen = 0;
    using _h = model.hooks([["blocks.0.attn.hook_pattern", () => { seen++; }]]);
    (await model.forward(tokens) as Tensor).dispose();
    assert.equal(seen, 1);
  } finally {
    ops.tuning.attention.fused = false;
  }
});
