// Generation: greedy equals TransformerLens's for every reference model (with and without the KV
// cache), sampling is seeded and respects top-k, and hooks/SAEs act at every step.
import assert from "node:assert/strict";
import { gpuInfo, HookedSAETransformer, InputError, SAE, Tensor } from "../mod.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";

// gemma2_tiny: 4 prompt tokens + 6 new ones pass its sliding window of 4.
for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "llama3_tiny", "gemma2_tiny"]) {
  Deno.test(`${name}: greedy generate equals TransformerLens's, with and without the KV cache`, async () => {
    const REF = new URL(`./reference/${name}/`, import.meta.url).pathname;
    using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
    using misc = await SafetensorsFile.open(`${REF}tl_misc.safetensors`);
    const prompt = Array.from(await misc.int32("generate_prompt"));
    const want = Array.from(await misc.int32("generate_greedy"));
    const maxNewTokens = want.length - prompt.length;
    const r0 = gpuInfo().stats.readbacks;
    const got = await model.generate([prompt], { maxNewTokens, doSample: false, stopAtEos: false });
    assert.deepEqual(got, [want]);
    assert.equal(gpuInfo().stats.readbacks - r0, 1, "token ids are read back once");
    const noCache = await model.generate([prompt], {
      maxNewTokens,
      doSample: false,
      stopAtEos: false,
      useKvCache: false,
    });
    assert.deepEqual(noCache, [want]);
  });
} // deno-fmt-ignore

Deno.test("sampling: seeded, top-k 1 is greedy, batches, hooks and SAEs act at every step", async () => {
  const REF = new URL("./reference/gpt2_tiny/", import.meta.url).pathname;
  using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  const prompt = [[1, 2, 3], [4, 5, 6]];
  const opts = { maxNewTokens: 12, stopAtEos: false, seed: 7 };
  const a = await model.generate(prompt, opts);
  const b = await model.generate(prompt, opts);
  assert.deepEqual(a, b, "same seed, same tokens");
  const c = await model.generate(prompt, { ...opts, seed: 8 });
  assert.notDeepEqual(a, c, "another seed, other tokens");
  assert.ok(a.every((r) => r.length === 15 && r.every((t) => t >= 0 && t < 1000)));
  const greedy = await model.generate(prompt, { ...opts, doSample: false });
  assert.deepEqual(await model.generate(prompt, { ...opts, topK: 1 }), greedy);
  assert.deepEqual(await model.generate(prompt, { ...opts, topP: 1e-6 }), greedy);
  assert.deepEqual(await model.generate(prompt, { ...opts, temperature: 1e-4 }), greedy);
  // A hook that forces token 42 everywhere makes greedy pick it at every step.
  let forced: number[][];
  {
    using _h = model.hooks([["unembed.hook_out", (l) => l.fillAt(-1, [42], 1e4)]]);
    forced = await model.generate(prompt, { ...opts, doSample: false });
  }
  assert.deepEqual(forced.map((r) => r.slice(3)), [Array(12).fill(42), Array(12).fill(42)]);
  // An SAE with the error term and no hooks leaves generation unchanged.
  using sae = await SAE.load(`${REF}saes/std_resid_pre1`);
  {
    using _ctx = model.withSaes([sae], { useErrorTerm: true });
    assert.deepEqual(await model.generate(prompt, { ...opts, doSample: false }), greedy);
  }
  await assert.rejects(() => model.generate(prompt, { maxNewTokens: 62 }), InputError);
});

Deno.test("stopAtEos ends where TransformerLens does: at the latest row's EOS, rows padded with it", async () => {
  const REF = new URL("./reference/neox_tiny/", import.meta.url).pathname;
  using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  const eos = model.cfg.eosTokenId!;
  const prompt = [[5, 6, 7], [8, 9, 10]];
  const maxNewTokens = 50;
  // A hook that makes row b's greedy token EOS at the steps in eosAt[b] (and counts the steps).
  const generate = async (eosAt: number[][], stopAtEos: boolean) => {
    let step = 0;
    using _h = model.hooks([["unembed.hook_out", (logits) => {
      const [B, P, V] = logits.shape;
      const bias = new Float32Array(B * P * V);
      for (let b = 0; b < B; b++) {
        if (eosAt[b].includes(step)) bias[(b * P + P - 1) * V + eos] = 1e4;
      }
      step++;
      return logits.add(Tensor.from(bias, [B, P, V]));
    }]]);
    const rows = await model.generate(prompt, { maxNewTokens, doSample: false, stopAtEos });
    return { rows, steps: step };
  };
  // TransformerLens's rule, applied to the tokens made without stopping: a row that has made EOS
  // makes only EOS after it, and generation stops after the step where the last row made its.
  const stopped = (rows: number[][]) => {
    const firsts = rows.map((r) => r.indexOf(eos, prompt[0].length));
    const end = firsts.every((i) => i >= 0) ? Math.max(...firsts) + 1 : rows[0].length;
    return rows.map((r, b) =>
      r.slice(0, end).map((t, i) => (firsts[b] >= 0 && i > firsts[b] ? eos : t))
    );
  };
  for (const eosAt of [[[2], [9]], [[9, 11], [0]], [[3], []], [[], []], [[49], [20]]]) {
    const free = await generate(eosAt, false);
    assert.equal(free.steps, maxNewTokens);
    const want = stopped(free.rows);
    const got = await generate(eosAt, true);
    assert.deepEqual(got.rows, want, `EOS at steps ${JSON.stringify(eosAt)}`);
    if (want[0].length < prompt[0].length + maxNewTokens) {
      assert.ok(got.steps < maxNewTokens, `stops early (${got.steps} steps for ${eosAt})`);
    }
  }
  assert.equal((await generate([[4], [6]], true)).rows[0].length, prompt[0].length + 7);
}); // deno-fmt-ignore
