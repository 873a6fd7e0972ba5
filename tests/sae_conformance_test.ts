// SAE conformance: for gpt2_tiny (four architectures), rmsgqa_tiny and neox_tiny, every
// sae_<NAME>.safetensors (logits and every hook_sae_* tensor, with and without the error term) and
// sae_runs.safetensors, within 1e-4 of max magnitude. No entries are excluded: threshold-type
// activations (top-k, JumpReLU, gated) match exactly on these fixtures.
import assert from "node:assert/strict";
import { HookedSAETransformer, SAE, type Tensor } from "../mod.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

const TOL = 1e-4;
const CASES: Record<string, { saes: string[]; first: string }> = {
  gpt2_tiny: {
    saes: ["std_resid_pre1", "topk_mlp_out0", "jumprelu_z1", "gated_resid_post0"],
    first: "std_resid_pre1",
  },
  rmsgqa_tiny: { saes: ["std_resid_post1"], first: "std_resid_post1" },
  neox_tiny: { saes: ["topk_resid_mid"], first: "topk_resid_mid" },
};

async function check(
  ref: SafetensorsFile,
  got: Float32Array | Int32Array,
  key: string,
): Promise<string | null> {
  const e = maxRelErr(got, await ref.float32(key));
  return e < TOL ? null : `${key}: ${e}`;
}

for (const [caseName, { saes: names, first }] of Object.entries(CASES)) {
  const REF = new URL(`./reference/${caseName}/`, import.meta.url).pathname;
  const load = async () => {
    const model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
    const saes = Object.fromEntries(
      await Promise.all(names.map(async (n) => [n, await SAE.load(`${REF}saes/${n}`)] as const)),
    );
    using tokFile = await SafetensorsFile.open(`${REF}tl_processed.safetensors`);
    const flat = await tokFile.int32("tokens");
    const [B, P] = tokFile.info("tokens").shape;
    const tokens = Array.from(
      { length: B },
      (_, b) => Array.from(flat.subarray(b * P, (b + 1) * P)),
    );
    return { model, saes, tokens, plainLogits: await tokFile.float32("logits") };
  };

  for (const name of names) {
    Deno.test(`${caseName} SAE ${name}: logits and every hook_sae_* match, with and without the error term`, async () => {
      const { model, saes, tokens } = await load();
      using _m = model;
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
      for (const s of Object.values(saes)) s.dispose();
      assert.deepEqual(errs, [], "entries over tolerance");
    });
  }

  Deno.test(`${caseName} sae_runs: all SAEs, run restores, ablation with/without error term, addSae, resetSaes, withSaes`, async () => {
    const { model, saes, tokens, plainLogits } = await load();
    using _m = model;
    using ref = await SafetensorsFile.open(`${REF}sae_runs.safetensors`);
    const all = names.map((n) => saes[n]);
    const std = saes[first];
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
        fwdHooks: [[`${std.cfg.hookName}.hook_sae_acts_post`, (a) => a.fillAt(-1, [3], 0)]],
      }) as Promise<Tensor>;
    await expect(await ablate(false), "logits_ablate");
    await expect(await ablate(true), "logits_ablate_error_term");
    // The error term without hooks gives the plain model's logits (within float rounding).
    await expect(
      await model.runWithSaes(tokens, { saes: [std], useErrorTerm: true }) as Tensor,
      "plain",
    );
    model.addSae(std);
    assert.deepEqual([...model.attachedSaes.keys()], [std.cfg.hookName]);
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
    for (const s of all) s.dispose();
  });
} // deno-fmt-ignore
