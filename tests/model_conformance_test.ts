// Model conformance: every tensor TransformerLens computed for gpt2_tiny (GPT-2), rmsgqa_tiny
// (Llama: RMSNorm, rotary, grouped-query attention, gated MLP), neox_tiny (GPT-NeoX: partial
// rotary, parallel attention + MLP), llama3_tiny and gemma2_tiny, within 1e-4 of the tensor's max magnitude (the reference
// README: a correct float32 implementation lands within ~1e-5).
import assert from "node:assert/strict";
import { HookedTransformer } from "../src/model/model.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

const TOL = 1e-4;

async function refTokens(REF: string): Promise<number[][]> {
  using f = await SafetensorsFile.open(`${REF}tl_raw.safetensors`);
  const t = await f.int32("tokens");
  const [B, P] = f.info("tokens").shape;
  return Array.from({ length: B }, (_, b) => Array.from(t.subarray(b * P, (b + 1) * P)));
}

async function compareRun(REF: string, model: HookedTransformer, file: string): Promise<void> {
  using ref = await SafetensorsFile.open(`${REF}${file}`);
  const tokens = await refTokens(REF);
  const [out, cache] = await model.runWithCache(tokens, { returnType: "both" });
  using _c = cache;
  const { logits, loss } = out as {
    logits: import("../mod.ts").Tensor;
    loss: import("../mod.ts").Tensor;
  };
  using _l = logits;
  using _s = loss;
  const refHooks = ref.names().filter((n) => n.startsWith("cache.")).map((n) => n.slice(6));
  // Cases made with a plain HookedTransformer (llama3_tiny) lack `blocks.N.mlp.hook_in`, which
  // HookedSAETransformer adds (reference README); every other hook point must be the same.
  const mlpIn = /^blocks\.\d+\.mlp\.hook_in$/;
  const ours = refHooks.some((n) => mlpIn.test(n))
    ? cache.keys()
    : cache.keys().filter((n) => !mlpIn.test(n));
  // Every hook point of the reference exists, with the same shape, and matches.
  assert.deepEqual(
    [...refHooks].sort(),
    [...ours].sort(),
    "same hook points as TransformerLens",
  );
  const got = await cache.toArrays();
  const errs: string[] = [];
  for (const name of refHooks) {
    const r = await ref.float32(`cache.${name}`);
    assert.deepEqual(cache.get(name).shape, ref.info(`cache.${name}`).shape, `${name} shape`);
    const e = maxRelErr(got.get(name)!, r);
    if (!(e < TOL)) errs.push(`${name}: ${e}`);
  }
  assert.deepEqual(errs, [], `${file}: hooks over tolerance`);
  const eL = maxRelErr(await logits.toArray(), await ref.float32("logits"));
  assert.ok(eL < TOL, `logits ${eL}`);
  const l = (await loss.toArray())[0], rl = (await ref.float32("loss"))[0];
  assert.ok(Math.abs(l - rl) / Math.abs(rl) < TOL, `loss ${l} vs ${rl}`);
  using lpt = await model.forward(tokens, { returnType: "loss", lossPerToken: true });
  assert.deepEqual(lpt.shape, ref.info("loss_per_token").shape);
  assert.ok(maxRelErr(await lpt.toArray(), await ref.float32("loss_per_token")) < TOL);
}

// llama3_tiny: Llama-3.1 rope scaling (rope_type "llama3"); gemma2_tiny: Gemma-2 (post-norms, soft
// caps, sliding window). Neither has hf_logits: tests/rope_test.ts and tests/gemma2_test.ts compare
// their logits with a float64 re-implementation of HF's forward instead.
for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "llama3_tiny", "gemma2_tiny"]) {
  const REF = new URL(`./reference/${name}/`, import.meta.url).pathname;
  const hasHf = name !== "llama3_tiny" && name !== "gemma2_tiny";

  Deno.test(`${name} unprocessed: every hook, logits, loss, loss_per_token match tl_raw${hasHf ? "; logits match HF" : ""}`, async () => {
    using model = await HookedTransformer.fromPretrainedNoProcessing(`${REF}hf`);
    await compareRun(REF, model, "tl_raw.safetensors");
    if (!hasHf) return;
    using hf = await SafetensorsFile.open(`${REF}hf_logits.safetensors`);
    using logits = await model.forward(await refTokens(REF));
    assert.ok(maxRelErr(await logits.toArray(), await hf.float32("logits")) < TOL);
  });

  Deno.test(`${name} processed: every hook, logits, loss match tl_processed; stop_at_layer_1 matches`, async () => {
    using model = await HookedTransformer.fromPretrained(`${REF}hf`);
    assert.ok(model.cfg.normalizationType.endsWith("Pre"));
    await compareRun(REF, model, "tl_processed.safetensors");
    using misc = await SafetensorsFile.open(`${REF}tl_misc.safetensors`);
    const tokens = await refTokens(REF);
    using resid = await model.forward(tokens, { stopAtLayer: 1 });
    assert.deepEqual(resid.shape, misc.info("stop_at_layer_1").shape);
    assert.ok(maxRelErr(await resid.toArray(), await misc.float32("stop_at_layer_1")) < TOL);
    // Starting at layer 1 from that residual gives the full model's logits.
    using proc = await SafetensorsFile.open(`${REF}tl_processed.safetensors`);
    using logits = await model.forward(resid, { startAtLayer: 1 });
    assert.ok(maxRelErr(await logits.toArray(), await proc.float32("logits")) < TOL);
  });
} // deno-fmt-ignore
