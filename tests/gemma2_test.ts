// Gemma-2 (gemma2_tiny, made by TransformerLens): every hook, logits, loss of the raw and processed
// model, stop/start at a layer, the sliding window while decoding with the KV cache, the one-pass
// attention, and the config (layer_types, HF's alternation rule, Gemma-1). Gradients, cache
// helpers and greedy generation are in grads_test, cache_helpers_test and generate_test with the
// other reference models. Tolerance as model_conformance_test: 1e-4 of a tensor's max magnitude.
import assert from "node:assert/strict";
import { ConfigError, HookedTransformer, type Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { configFromHf } from "../src/model/config.ts";
import { maxRelErr } from "./_util.ts";

const TOL = 1e-4;
const REF = new URL("./reference/gemma2_tiny/", import.meta.url).pathname;
const HF = `${REF}hf`;
const hfConfig = JSON.parse(await Deno.readTextFile(`${HF}/config.json`));

/**
 * The reference was made by TransformerLens's HookedTransformer, which has no `blocks.N.mlp.hook_in`
 * (HookedSAETransformer adds it; hooklens has it on every model, see the reference README).
 */
const notInReference = (name: string): boolean => /^blocks\.\d+\.mlp\.hook_in$/.test(name);

async function refTokens(): Promise<number[][]> {
  using f = await SafetensorsFile.open(`${REF}tl_raw.safetensors`);
  const t = await f.int32("tokens");
  const [B, P] = f.info("tokens").shape;
  return Array.from({ length: B }, (_, b) => Array.from(t.subarray(b * P, (b + 1) * P)));
}

async function compareRun(model: HookedTransformer, file: string): Promise<void> {
  using ref = await SafetensorsFile.open(`${REF}${file}`);
  const tokens = await refTokens();
  const [out, cache] = await model.runWithCache(tokens, { returnType: "both" });
  using _c = cache;
  const { logits, loss } = out as { logits: Tensor; loss: Tensor };
  using _l = logits;
  using _s = loss;
  const refHooks = ref.names().filter((n) => n.startsWith("cache.")).map((n) => n.slice(6));
  assert.deepEqual(
    [...refHooks].sort(),
    cache.keys().filter((n) => !notInReference(n)).sort(),
    "same hook points as TransformerLens",
  );
  const got = await cache.toArrays();
  const errs: string[] = [];
  for (const name of refHooks) {
    assert.deepEqual(cache.get(name).shape, ref.info(`cache.${name}`).shape, `${name} shape`);
    const e = maxRelErr(got.get(name)!, await ref.float32(`cache.${name}`));
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

Deno.test("gemma2_tiny config: layer_types, window, soft caps, query_pre_attn_scalar, GQA, head_dim", () => {
  const cfg = configFromHf(hfConfig, "config.json");
  assert.deepEqual(cfg.attnTypes, ["local", "global", "local", "global"]);
  assert.equal(cfg.windowSize, 4);
  assert.equal(cfg.useLocalAttn, true);
  assert.equal(cfg.attnScoresSoftCap, 4);
  assert.equal(cfg.outputLogitsSoftCap, 5);
  assert.equal(cfg.attnScale, Math.sqrt(24));
  assert.equal(cfg.useNormalizationBeforeAndAfter, true);
  assert.deepEqual([cfg.nHeads, cfg.nKeyValueHeads, cfg.dHead, cfg.dModel], [4, 2, 24, 64]);
  assert.equal(cfg.actFn, "gelu_pytorch_tanh");
  assert.equal(cfg.tieWordEmbeddings, true);
  // Without layer_types, Hugging Face's rule: layer 0 slides, then they alternate.
  const { layer_types: _, ...rest } = hfConfig;
  assert.deepEqual(
    configFromHf({ ...rest, num_hidden_layers: 3 }, "c.json").attnTypes,
    ["local", "global", "local"],
  );
  // No local layer: no window.
  const global = configFromHf({ ...hfConfig, layer_types: Array(4).fill("full_attention") }, "c");
  assert.deepEqual([global.attnTypes, global.windowSize, global.useLocalAttn], [null, null, false]);
  // Gemma-1: no post-norms, caps or windows; scale sqrt(head_dim).
  const g1 = configFromHf({
    ...rest,
    architectures: ["GemmaForCausalLM"],
    query_pre_attn_scalar: 9,
  }, "c");
  assert.deepEqual(
    [g1.useNormalizationBeforeAndAfter, g1.attnScoresSoftCap, g1.outputLogitsSoftCap, g1.attnTypes],
    [false, 0, 0, null],
  );
  assert.equal(g1.attnScale, Math.sqrt(24));
  // A broken layer_types or a missing window is refused, naming the field.
  for (
    const [bad, field] of [
      [{ layer_types: ["sliding_attention"] }, "layer_types"],
      [
        { layer_types: ["sliding", "full_attention", "sliding_attention", "full_attention"] },
        "layer_types",
      ],
      [{ sliding_window: null }, "sliding_window"],
      [{ attn_logit_softcapping: -1 }, "attn_logit_softcapping"],
    ] as const
  ) {
    assert.throws(
      () => configFromHf({ ...hfConfig, ...bad }, "c.json"),
      (e: unknown) => e instanceof ConfigError && e.message.includes(field),
      JSON.stringify(bad),
    );
  }
}); // deno-fmt-ignore

Deno.test("gemma2_tiny unprocessed: every hook, logits, loss, loss_per_token match tl_raw; logits match an independent float64 forward", async () => {
  using model = await HookedTransformer.fromPretrainedNoProcessing(HF);
  await compareRun(model, "tl_raw.safetensors");
  using f64 = await SafetensorsFile.open(`${REF}independent_f64_logits.safetensors`);
  using logits = await model.forward(await refTokens());
  const key = f64.names().find((n) => n.includes("logits"))!;
  assert.ok(maxRelErr(await logits.toArray(), await f64.float32(key)) < TOL);
});

Deno.test("gemma2_tiny processed: every hook, logits, loss match tl_processed; stop_at_layer_1 and startAtLayer", async () => {
  using model = await HookedTransformer.fromPretrained(HF);
  assert.equal(model.cfg.normalizationType, "RMSPre");
  await compareRun(model, "tl_processed.safetensors");
  using misc = await SafetensorsFile.open(`${REF}tl_misc.safetensors`);
  const tokens = await refTokens();
  using resid = await model.forward(tokens, { stopAtLayer: 1 });
  assert.deepEqual(resid.shape, misc.info("stop_at_layer_1").shape);
  assert.ok(maxRelErr(await resid.toArray(), await misc.float32("stop_at_layer_1")) < TOL);
  using proc = await SafetensorsFile.open(`${REF}tl_processed.safetensors`);
  using logits = await model.forward(resid, { startAtLayer: 1 });
  assert.ok(maxRelErr(await logits.toArray(), await proc.float32("logits")) < TOL);
});

Deno.test("gemma2_tiny: decoding with the KV cache past the window gives the full forward's logits at every step, unfused and one-pass attention", async () => {
  using model = await HookedTransformer.fromPretrained(HF);
  const prompt = (await refTokens())[0].slice(0, 3);
  const maxNewTokens = 9; // 12 positions, three times the window of 4
  for (const fused of [false, true]) {
    ops.attentionConfig.fused = fused;
    try {
      const steps: Float32Array[] = [];
      let rows: number[][];
      {
        using _h = model.hooks([["unembed.hook_out", async (t) => {
          steps.push((await t.toArray()) as Float32Array);
        }]]);
        rows = await model.generate([prompt], { maxNewTokens, doSample: false, stopAtEos: false });
      }
      assert.equal(steps.length, maxNewTokens);
      const seq = rows[0];
      using full = await model.runWithHooks([seq.slice(0, -1)], {
        fwdHooks: [[
          "unembed.hook_out",
          async (t) => void steps.push((await t.toArray()) as Float32Array),
        ]],
      }) as Tensor;
      const whole = steps.pop()!;
      const V = model.cfg.dVocab;
      // Step s saw positions up to P0 + s - 1; its last row is that position's logits.
      for (let s = 0; s < maxNewTokens; s++) {
        const at = prompt.length + s - 1;
        const step = steps[s].subarray(steps[s].length - V);
        const e = maxRelErr(step, whole.subarray(at * V, (at + 1) * V));
        assert.ok(e < TOL, `fused ${fused}, step ${s} (position ${at}): ${e}`);
      }
      // And the fused forward equals the unfused one on the same tokens.
      ops.attentionConfig.fused = false;
      using plain = await model.forward([seq.slice(0, -1)]);
      assert.ok(maxRelErr(await full.toArray(), await plain.toArray()) < 1e-5);
    } finally {
      ops.attentionConfig.fused = false;
    }
  }
}); // deno-fmt-ignore
