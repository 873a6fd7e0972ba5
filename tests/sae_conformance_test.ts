// SAE conformance on gpt2_tiny: every sae_<NAME>.safetensors (logits and every hook_sae_* tensor,
// with and without the error term) and sae_runs.safetensors, within 1e-4 of max magnitude.
import assert from "node:assert/strict";
import { HookedSAETransformer, SAE, type Tensor } from "../mod.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

const REF = new URL("./reference/gpt2_tiny/", import.meta.url).pathname;
const TOL = 1e-4;
const NAMES = ["std_resid_pre1", "topk_mlp_out0", "jumprelu_z1", "gated_resid_post0"];

const model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
const saes = Object.fromEntries(
  await Promise.all(NAMES.map(async (n) => [n, await SAE.load(`${REF}saes/${n}`)] as const)),
);
using tokFile = await SafetensorsFile.open(`${REF}tl_processed.safetensors`);
const tokFlat = await tokFile.int32("tokens");
const tokens = [Array.from(tokFlat.subarray(0, 12)), Array.from(tokFlat.subarray(12, 24))];
const plainLogits = await tokFile.float32("logits");

async function check(
  ref: SafetensorsFile,
  got: Float32Array | Int32Array,
  key: string,
): Promise<string | null> {
  const e = maxRelErr(got, await ref.float32(key));
  return e < TOL ? null : `${key}: ${e}`;
}

for (const name of NAMES) {
  Deno.test(`gpt2_tiny SAE ${name}: logits and every hook_sae_* match, with and without the error term`, async () => {
    using ref = await SafetensorsFile.open(`${REF}sae_${name}.safetensors`);
    const sae = saes[name];
    const h = sae.cfg.hookName;
    const errs: string[] = [];
    for (
      const [prefix, errorTerm, logitsKey] of [["cache.", false, "logits"], [
        "cache.err.",
        true,
        "logits_error_term",
      ]] as const
    ) {
      const [logits, cache] = await model.runWithCacheWithSaes(tokens, {
        saes: [sae],
        useErrorTerm: errorTerm,
      });
      using _c = cache;
      using _l = logits as Tensor;
      const refKeys = ref.names().filter((k) =>
        k.startsWith(prefix) && (prefix === "cache.err." || !k.startsWith("cache.err."))
      );
      const want = refKeys.map((k) => k.slice(prefix.length)).sort();
      const ours = cache.keys().filter((k) => k.startsWith(`${h}.`)).sort();
      assert.deepEqual(ours, want, `${name} error=${errorTerm}: SAE hook points`);
      assert.ok(!cache.has(h), `${h} itself is replaced while the SAE is attached`);
      const arrays = await cache.toArrays();
      for (const k of want) {
        assert.deepEqual(cache.get(k).shape, ref.info(prefix + k).shape, k);
        const e = await check(ref, arrays.get(k)!, prefix + k);
        if (e) errs.push(e);
      }
      const e = await check(ref, await (logits as Tensor).toArray(), logitsKey);
      if (e) errs.push(e);
    }
    assert.deepEqual(errs, [], "entries over tolerance");
  });
}

Deno.test("gpt2_tiny sae_runs: all SAEs, run restores, ablation with/without error term, addSae, resetSaes, withSaes", async () => {
  using ref = await SafetensorsFile.open(`${REF}sae_runs.safetensors`);
  const all = NAMES.map((n) => saes[n]);
  const std = saes.std_resid_pre1;
  const expect = async (t: Tensor, key: string) => {
    const got = await t.toArray();
    t.dispose();
    const e = maxRelErr(got, key === "plain" ? plainLogits : await ref.float32(key));
    assert.ok(e < TOL, `${key}: ${e}`);
  };
  await expect(await model.runWithSaes(tokens, { saes: all }) as Tensor, "logits_all_saes");
  assert.equal(model.attachedSaes.size, 0, "runWithSaes detached its SAEs");
  await expect(await model.forward(tokens), "logits_after_run_with_saes");
  await expect(await model.forward(tokens), "plain");
  const ablate = (useErrorTerm: boolean) =>
    model.runWithHooksWithSaes(tokens, {
      saes: [std],
      useErrorTerm,
      fwdHooks: [["blocks.1.hook_resid_pre.hook_sae_acts_post", (a) => a.fillAt(-1, [3], 0)]],
    }) as Promise<Tensor>; // deno-fmt-ignore
  await expect(await ablate(false), "logits_ablate");
  await expect(await ablate(true), "logits_ablate_error_term");
  // The error term without hooks gives the plain model's logits exactly (within float rounding).
  await expect(
    await model.runWithSaes(tokens, { saes: [std], useErrorTerm: true }) as Tensor,
    "plain",
  );
  model.addSae(std);
  assert.deepEqual([...model.attachedSaes.keys()], ["blocks.1.hook_resid_pre"]);
  await expect(await model.forward(tokens), "logits_add_sae");
  model.resetSaes();
  await expect(await model.forward(tokens), "logits_after_reset");
  // withSaes in a `using` block stands in for the add/reset pair.
  {
    using _ctx = model.withSaes([std]);
    await expect(await model.forward(tokens), "logits_add_sae");
  }
  await expect(await model.forward(tokens), "logits_after_reset");
  {
    using _ctx = model.withSaes(all);
    await expect(await model.forward(tokens), "logits_all_saes");
  }
  assert.equal(model.attachedSaes.size, 0);
});
