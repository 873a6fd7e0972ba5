// ActivationCache's residual-stream helpers against TransformerLens's tl_cache_helpers for every
// reference model, with the manifest's labels.
import assert from "node:assert/strict";
import { HookedTransformer, type LabeledStack, type Tensor } from "../mod.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "gemma2_tiny"]) {
  Deno.test(`${name}: accumulatedResid, decomposeResid, stackHeadResults, applyLnToStack, logitAttrs match TransformerLens`, async () => {
    const REF = new URL(`./reference/${name}/`, import.meta.url).pathname;
    const manifest = JSON.parse(await Deno.readTextFile(`${REF}manifest.json`));
    using model = await HookedTransformer.fromPretrained(`${REF}hf`);
    using ref = await SafetensorsFile.open(`${REF}tl_cache_helpers.safetensors`);
    using tf = await SafetensorsFile.open(`${REF}tl_processed.safetensors`);
    const flat = await tf.int32("tokens");
    const [B, P] = tf.info("tokens").shape;
    const tokens = Array.from(
      { length: B },
      (_, b) => Array.from(flat.subarray(b * P, (b + 1) * P)),
    );
    const [out, cache] = await model.runWithCache(tokens);
    using _c = cache;
    (out as Tensor).dispose();
    const check = async (got: Tensor, key: string) => {
      assert.deepEqual(got.shape, ref.info(key).shape, key);
      const e = maxRelErr(await got.toArray(), await ref.float32(key));
      assert.ok(e < 1e-4, `${key}: ${e}`);
      got.dispose();
    };
    const acc = await cache.accumulatedResid({ applyLn: true, returnLabels: true }) as LabeledStack;
    assert.deepEqual(acc.labels, manifest.labels.accumulated_resid);
    await check(acc.stack, "accumulated_resid_ln");
    const dec = await cache.decomposeResid({ returnLabels: true }) as LabeledStack;
    assert.deepEqual(dec.labels, manifest.labels.decompose_resid);
    await check(dec.stack, "decompose_resid");
    const heads = await cache.stackHeadResults({
      layer: -1,
      applyLn: true,
      returnLabels: true,
    }) as LabeledStack;
    assert.deepEqual(heads.labels, manifest.labels.stack_head_results);
    await check(heads.stack, "stack_head_results_ln");
    // Direct logit attribution of the last position's next token (TransformerLens's call).
    const answer = Array.from(await ref.int32("answer_tokens"));
    assert.deepEqual(answer, tokens.map((r) => r[P - 1]));
    using last = await cache.accumulatedResid({ posSlice: -1 }) as Tensor;
    await check(
      await cache.logitAttrs(last, { tokens: answer, posSlice: -1 }),
      "logit_attrs_last_pos",
    );
    // applyLnToStack (cached final-norm scale) on the raw head results equals applyLn there.
    using raw = await cache.stackHeadResults() as Tensor;
    await check(await cache.applyLnToStack(raw), "stack_head_results_ln");
  });
} // deno-fmt-ignore
