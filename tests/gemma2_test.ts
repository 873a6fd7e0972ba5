// Gemma-2 (gemma2_tiny, made by TransformerLens) beyond what the shared conformance tests check with
// the other reference models (every hook of tl_raw / tl_processed, stop_at_layer, gradients, cache
// helpers, greedy generation, processed weights, fusion): the config (layer_types, HF's alternation
// rule, Gemma-1), an independent float64 forward, the sliding window while decoding with the KV
// cache and in the one-pass attention, the hooks' firing order, Gemma-1 against a float64 forward,
// and the Gemma Scope SAE's spliced-logit variants. Tolerance as model_conformance_test: 1e-4 of
// a tensor's max magnitude.
import assert from "node:assert/strict";
import { ConfigError, HookedSAETransformer, HookedTransformer, SAE, type Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "../src/io/safetensors.ts";
import { configFromHf } from "../src/model/config.ts";
import { maxRelErr } from "./_util.ts";

const TOL = 1e-4;
const REF = new URL("./reference/gemma2_tiny/", import.meta.url).pathname;
const HF = `${REF}hf`;
const hfConfig = JSON.parse(await Deno.readTextFile(`${HF}/config.json`));

async function refTokens(): Promise<number[][]> {
  using f = await SafetensorsFile.open(`${REF}tl_raw.safetensors`);
  const t = await f.int32("tokens");
  const [B, P] = f.info("tokens").shape;
  return Array.from({ length: B }, (_, b) => Array.from(t.subarray(b * P, (b + 1) * P)));
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

Deno.test("gemma2_tiny unprocessed: logits match an independent float64 forward of HF's Gemma-2 (the fixture's cross-check)", async () => {
  using model = await HookedTransformer.fromPretrainedNoProcessing(HF);
  using f64 = await SafetensorsFile.open(`${REF}independent_f64_logits.safetensors`);
  assert.deepEqual(Array.from(await f64.int32("tokens")), (await refTokens()).flat());
  using logits = await model.forward(await refTokens());
  assert.ok(maxRelErr(await logits.toArray(), await f64.float32("logits_f64")) < TOL);
});

Deno.test("gemma2_tiny: decoding with the KV cache past the window gives the full forward's logits at every step, unfused and one-pass attention", async () => {
  using model = await HookedTransformer.fromPretrained(HF);
  const prompt = (await refTokens())[0].slice(0, 3);
  const maxNewTokens = 9; // 12 positions, three times the window of 4
  for (const fused of [false, true]) {
    ops.tuning.attention.fused = fused;
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
      ops.tuning.attention.fused = false;
      using plain = await model.forward([seq.slice(0, -1)]);
      assert.ok(maxRelErr(await full.toArray(), await plain.toArray()) < 1e-5);
    } finally {
      ops.tuning.attention.fused = false;
    }
  }
}); // deno-fmt-ignore

Deno.test("gemma2_tiny: hooks fire in hookNames order, ln1_post before hook_attn_out and ln2_post before hook_mlp_out", async () => {
  using model = await HookedTransformer.fromPretrained(HF);
  const seen: string[] = [];
  using _h = model.hooks([[() => true, (_t, { name }) => void seen.push(name)]]);
  (await model.forward([[2, 5, 9]]) as Tensor).dispose();
  assert.deepEqual(seen, model.hookNames());
  const at = (n: string) => seen.indexOf(n);
  assert.ok(at("blocks.0.attn.hook_z") < at("blocks.0.ln1_post.hook_scale"));
  assert.ok(at("blocks.0.ln1_post.hook_normalized") < at("blocks.0.hook_attn_out"));
  assert.ok(at("blocks.0.mlp.hook_post") < at("blocks.0.ln2_post.hook_scale"));
  assert.ok(at("blocks.0.ln2_post.hook_normalized") < at("blocks.0.hook_mlp_out"));
}); // deno-fmt-ignore

/** x / sqrt(mean(x²) + eps) * (1 + w), float64 (Gemma's RMSNorm; HF stores w - 1). */
function rmsNorm64(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const s = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * s * (1 + w[i]));
}

/** y = W x for a torch Linear weight W [out, in]. */
function matVec(w: Float32Array, x: Float64Array, out: number): Float64Array {
  const n = x.length, y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[o * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

/**
 * Hugging Face's GemmaForCausalLM forward in float64, written from its definition: embedding times
 * sqrt(hidden), RMSNorm (1 + w), rotary (rotate_half), causal GQA attention scaled by
 * head_dim^-0.5, gelu-tanh gated MLP, tied unembedding. Logits [P, V] of one row.
 */
function gemma1Forward64(
  t: (n: string) => Float32Array,
  c: Record<string, number>,
  tokens: number[],
): Float64Array[] {
  const { hidden_size: D, num_attention_heads: H, num_key_value_heads: Hkv, head_dim: E } = c;
  const { intermediate_size: F, vocab_size: V, num_hidden_layers: L, rms_norm_eps: eps } = c;
  const emb = t("model.embed_tokens.weight");
  let h = tokens.map((id) =>
    Float64Array.from(emb.subarray(id * D, (id + 1) * D), (v) => v * Math.sqrt(D))
  );
  const rope = (x: Float64Array, heads: number, pos: number) => {
    const out = new Float64Array(x.length), half = E / 2;
    for (let n = 0; n < heads; n++) {
      for (let i = 0; i < E; i++) {
        const ang = pos / c.rope_theta ** ((2 * (i % half)) / E);
        const rot = i < half ? -x[n * E + i + half] : x[n * E + i - half];
        out[n * E + i] = x[n * E + i] * Math.cos(ang) + rot * Math.sin(ang);
      }
    }
    return out;
  };
  const gelu = (v: number) =>
    0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    const x = h.map((r) => rmsNorm64(r, t(p + "input_layernorm.weight"), eps));
    const q = x.map((r, i) => rope(matVec(t(p + "self_attn.q_proj.weight"), r, H * E), H, i));
    const k = x.map((r, i) => rope(matVec(t(p + "self_attn.k_proj.weight"), r, Hkv * E), Hkv, i));
    const v = x.map((r) => matVec(t(p + "self_attn.v_proj.weight"), r, Hkv * E));
    h = h.map((r, i) => {
      const z = new Float64Array(H * E);
      for (let n = 0; n < H; n++) {
        const g = Math.floor(n / (H / Hkv));
        const s = Array.from({ length: i + 1 }, (_, j) => {
          let d = 0;
          for (let e = 0; e < E; e++) d += q[i][n * E + e] * k[j][g * E + e];
          return d / Math.sqrt(E);
        });
        const mx = Math.max(...s),
          w = s.map((a) => Math.exp(a - mx)),
          sum = w.reduce((a, b) => a + b);
        for (let j = 0; j <= i; j++) {
          for (let e = 0; e < E; e++) z[n * E + e] += w[j] / sum * v[j][g * E + e];
        }
      }
      const o = matVec(t(p + "self_attn.o_proj.weight"), z, D);
      return r.map((a, d) => a + o[d]);
    });
    h = h.map((r) => {
      const y = rmsNorm64(r, t(p + "post_attention_layernorm.weight"), eps);
      const gate = matVec(t(p + "mlp.gate_proj.weight"), y, F),
        up = matVec(t(p + "mlp.up_proj.weight"), y, F);
      const down = matVec(t(p + "mlp.down_proj.weight"), gate.map((g, f) => gelu(g) * up[f]), D);
      return r.map((a, d) => a + down[d]);
    });
  }
  return h.map((r) => matVec(emb, rmsNorm64(r, t("model.norm.weight"), eps), V));
}

Deno.test("Gemma-1 (GemmaForCausalLM) on gemma2_tiny's weights: logits equal a float64 HF-semantics forward, raw and processed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hooklens-gemma1-" });
  try {
    using f = await SafetensorsFile.open(`${HF}/model.safetensors`);
    // Gemma-1's block: input_layernorm, attention, post_attention_layernorm (before the MLP), MLP.
    const tensors: Record<string, TensorToWrite> = {};
    const data = new Map<string, Float32Array>();
    for (const n of f.names()) {
      if (/post_attention_layernorm|post_feedforward_layernorm/.test(n)) continue;
      const name = n.replace("pre_feedforward_layernorm", "post_attention_layernorm");
      data.set(name, await f.float32(n));
      tensors[name] = { dtype: "F32", shape: [...f.info(n).shape], data: data.get(name)! };
    }
    await writeSafetensors(`${dir}/model.safetensors`, tensors);
    const {
      layer_types: _l,
      attn_logit_softcapping: _a,
      final_logit_softcapping: _f,
      query_pre_attn_scalar: _q,
      sliding_window: _s,
      ...g1
    } = hfConfig;
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ ...g1, architectures: ["GemmaForCausalLM"], model_type: "gemma" }),
    );
    const tokens = (await refTokens())[1].slice(0, 9);
    const want = gemma1Forward64((n) => data.get(n)!, g1, tokens);
    const V = g1.vocab_size;
    const logSoftmax = (r: ArrayLike<number>) => {
      const mx = Math.max(...Array.from(r));
      const lse = mx + Math.log(Array.from(r).reduce((a, v) => a + Math.exp(v - mx), 0));
      return Array.from(r, (v) => v - lse);
    };
    using raw = await HookedTransformer.fromPretrainedNoProcessing(dir);
    assert.equal(raw.hookNames().some((n) => n.includes("_post.")), false, "no post-norms");
    using l1 = await raw.forward([tokens]);
    const got = await l1.toArray();
    assert.ok(
      maxRelErr(got, want.flatMap((r) => Array.from(r))) < TOL,
      `raw ${maxRelErr(got, want.flatMap((r) => Array.from(r)))}`,
    );
    // Processed (center_unembed applies without a soft cap): the same log-probabilities.
    using proc = await HookedTransformer.fromPretrained(dir);
    using l2 = await proc.forward([tokens]);
    const g2 = await l2.toArray();
    for (let i = 0; i < tokens.length; i++) {
      const e = maxRelErr(logSoftmax(g2.subarray(i * V, (i + 1) * V)), logSoftmax(want[i]));
      assert.ok(e < TOL, `processed position ${i}: ${e}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}); // deno-fmt-ignore

// The Gemma Scope SAE of gemma2_tiny (params.npz) spliced into the raw model at
// blocks.1.hook_resid_post: TransformerLens's raw model with a hook returning the reconstruction;
// the reconstruction plus the error; the most active latent ablated before decoding, without and
// with the error term. (The SAE's own tensors are checked in gemma_scope_test.ts.)
Deno.test("gemma2_tiny + Gemma Scope SAE: replaced, error-term and ablated logits match the reference", async () => {
  using model = await HookedSAETransformer.fromPretrainedNoProcessing(`${REF}hf`);
  using sae = await SAE.load(`${REF}saes/gemmascope_blocks_1_hook_resid_post`);
  using ref = await SafetensorsFile.open(
    `${REF}sae_gemmascope_blocks_1_hook_resid_post.safetensors`,
  );
  const flat = await ref.int32("tokens");
  const [B, P] = ref.info("tokens").shape;
  const tokens = Array.from({ length: B }, (_, b) => Array.from(flat.subarray(b * P, (b + 1) * P)));
  const latent = (await ref.int32("ablated_latent"))[0];
  const acts = `${sae.cfg.hookName}.hook_sae_acts_post`;
  const ablate = (a: Tensor) => a.fillAt(-1, [latent], 0);
  const variants: [string, boolean, boolean][] = [
    ["logits_sae_replaced", false, false],
    ["logits_sae_error_term", true, false],
    ["logits_ablate", false, true],
    ["logits_ablate_error_term", true, true],
  ];
  const got = new Map<string, Float32Array>();
  for (const [key, useErrorTerm, ablated] of variants) {
    using logits = await model.runWithHooksWithSaes(tokens, {
      saes: [sae],
      useErrorTerm,
      fwdHooks: ablated ? [[acts, ablate]] : [],
    }) as Tensor;
    got.set(key, await logits.toArray() as Float32Array);
    const e = maxRelErr(got.get(key)!, await ref.float32(key));
    assert.ok(e < TOL, `${key}: ${e}`);
  }
  using clean = await model.forward(tokens);
  const c = await clean.toArray();
  assert.ok(maxRelErr(c, await ref.float32("logits_clean")) < TOL, "clean logits");
  // Each variant differs from the clean run as the reference's does (the SAE and the ablation act).
  assert.ok(
    maxRelErr(got.get("logits_sae_replaced")!, c) > 1e-3,
    "the reconstruction changes the logits",
  );
  assert.ok(
    maxRelErr(got.get("logits_ablate_error_term")!, c) > 1e-4,
    "the ablation changes the logits",
  );
});
