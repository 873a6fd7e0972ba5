// Gradients at hook points: TransformerLens's tl_grads (gradient of the mean loss at every hook)
// for every reference model, backward hooks, a custom metric, and a finite-difference check of a
// gradient through an attached SAE.
import assert from "node:assert/strict";
import { HookedSAETransformer, SAE, Tensor } from "../mod.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

async function refTokens(REF: string): Promise<number[][]> {
  using f = await SafetensorsFile.open(`${REF}tl_processed.safetensors`);
  const flat = await f.int32("tokens");
  const [B, P] = f.info("tokens").shape;
  return Array.from({ length: B }, (_, b) => Array.from(flat.subarray(b * P, (b + 1) * P)));
}

for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny"]) {
  Deno.test(`${name}: gradients of the mean loss at every hook match tl_grads`, async () => {
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
    const got = cache.keys().filter((k) => k.endsWith("_grad")).sort();
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
