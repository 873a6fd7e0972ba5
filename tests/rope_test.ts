// Rope scaling (Llama-3.1's "llama3", "linear"): the frequencies against a float64 computation,
// the rotation the model really applies (hook_q -> hook_rot_q), llama3_tiny's logits against a
// float64 re-implementation of HF's forward, and refusal of rope types hooklens does not compute.
import assert from "node:assert/strict";
import { ConfigError, HookedTransformer, type Tensor } from "../mod.ts";
import { configFromHf } from "../src/model/config.ts";
import { ropeScalingFromHf, rotaryFrequencies } from "../src/model/rope.ts";
import { rotaryTables } from "../src/model/processing.ts";
import { readJsonFile } from "../src/io/json.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

const REF = new URL("./reference/llama3_tiny/", import.meta.url).pathname;
const TOL = 1e-4;

/** Llama-3.1's scaled inverse frequencies in float64, straight from the published formula. */
function llama3InvFreqF64(
  dim: number,
  theta: number,
  s: { factor: number; low: number; high: number; ctx: number },
): { inv: number[]; band: ("unchanged" | "smoothed" | "scaled")[] } {
  const inv: number[] = [], band: ("unchanged" | "smoothed" | "scaled")[] = [];
  for (let i = 0; i < dim; i += 2) {
    const f = 1 / theta ** (i / dim);
    const wavelen = 2 * Math.PI / f;
    if (wavelen < s.ctx / s.high) {
      inv.push(f), band.push("unchanged");
    } else if (wavelen > s.ctx / s.low) {
      inv.push(f / s.factor), band.push("scaled");
    } else {
      const smooth = (s.ctx / wavelen - s.low) / (s.high - s.low);
      inv.push((1 - smooth) * f / s.factor + smooth * f), band.push("smoothed");
    }
  }
  return { inv, band };
}

async function tokens(): Promise<number[][]> {
  using f = await SafetensorsFile.open(`${REF}tl_raw.safetensors`);
  const t = await f.int32("tokens");
  const [B, P] = f.info("tokens").shape;
  return Array.from({ length: B }, (_, b) => Array.from(t.subarray(b * P, (b + 1) * P)));
}

Deno.test("llama3 rope: frequencies in all three bands match a float64 computation", async () => {
  const hf = await readJsonFile(`${REF}hf/config.json`) as Record<string, never>;
  const cfg = configFromHf(hf, "config.json");
  assert.deepEqual(cfg.ropeScaling, {
    ropeType: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 48,
  });
  const { inv, band } = llama3InvFreqF64(16, 500000, { factor: 8, low: 1, high: 4, ctx: 48 });
  assert.deepEqual(new Set(band), new Set(["unchanged", "smoothed", "scaled"]), band.join());
  const freq = rotaryFrequencies(16, cfg.rotaryBase, cfg.ropeScaling);
  const got = Array.from(freq, (x) => 1 / x);
  assert.ok(maxRelErr(got, inv) < 1e-6, `inv_freq ${maxRelErr(got, inv)}`);
  for (let j = 0; j < inv.length; j++) {
    assert.ok(Math.abs(got[j] - inv[j]) / inv[j] < 1e-6, `pair ${j} (${band[j]})`);
  }
  // The reference's own float64 frequencies (HF's _compute_llama3_parameters) agree.
  using sanity = await SafetensorsFile.open(`${REF}rope_sanity.safetensors`);
  const ref = await sanity.float32("inv_freq_llama3_f64");
  assert.ok(maxRelErr(inv, ref) < 1e-6);
});

Deno.test("llama3 rope: the model rotates hook_q / hook_k by the scaled float64 angles", async () => {
  using model = await HookedTransformer.fromPretrainedNoProcessing(`${REF}hf`);
  const toks = await tokens();
  const [logits, cache] = await model.runWithCache(toks, {
    namesFilter: (n) => /^blocks\.[01]\.attn\.hook_(rot_)?[qk]$/.test(n),
  });
  using _l = logits as Tensor;
  using _c = cache;
  const { inv } = llama3InvFreqF64(16, 500000, { factor: 8, low: 1, high: 4, ctx: 48 });
  for (const name of ["blocks.0.attn.hook_q", "blocks.1.attn.hook_k"]) {
    const x = await cache.get(name).toArray();
    const [B, P, H, D] = cache.get(name).shape;
    const rotName = name.replace("hook_", "hook_rot_");
    const got = await cache.get(rotName).toArray();
    const want = new Float64Array(x.length);
    const half = D / 2;
    for (let b = 0; b < B; b++) {
      for (let p = 0; p < P; p++) {
        for (let h = 0; h < H; h++) {
          const o = ((b * P + p) * H + h) * D;
          for (let j = 0; j < half; j++) {
            const a = p * inv[j], c = Math.cos(a), s = Math.sin(a);
            want[o + j] = x[o + j] * c - x[o + j + half] * s;
            want[o + j + half] = x[o + j + half] * c + x[o + j] * s;
          }
        }
      }
    }
    assert.ok(maxRelErr(got, want) < 1e-5, `${rotName}: ${maxRelErr(got, want)}`);
  }
});

Deno.test("llama3 rope: logits match HF's forward in float64; without the scaling they do not", async () => {
  using sanity = await SafetensorsFile.open(`${REF}rope_sanity.safetensors`);
  const toks = await tokens();
  using model = await HookedTransformer.fromPretrainedNoProcessing(`${REF}hf`);
  using logits = await model.forward(toks);
  const got = await logits.toArray();
  const hf = await sanity.float32("logits_f64_numpy_llama3");
  assert.ok(maxRelErr(got, hf) < TOL, `vs HF float64 ${maxRelErr(got, hf)}`);
  const unscaled = await sanity.float32("logits_tl_raw_no_rope_scaling");
  assert.ok(maxRelErr(got, unscaled) > 0.05, "the scaling changes the logits");

  // The same weights with rope_scaling removed reproduce TransformerLens's unscaled run: the
  // comparison above would catch a model that ignored the scaling.
  const dir = await Deno.makeTempDir();
  try {
    const cfg = await readJsonFile(`${REF}hf/config.json`) as Record<string, unknown>;
    delete cfg.rope_scaling;
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg));
    await Deno.symlink(`${REF}hf/model.safetensors`, `${dir}/model.safetensors`);
    using plain = await HookedTransformer.fromPretrainedNoProcessing(dir);
    assert.equal(plain.cfg.ropeScaling, null);
    using l2 = await plain.forward(toks);
    assert.ok(maxRelErr(await l2.toArray(), unscaled) < TOL);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rope scaling: both config forms, linear, and refusal of unknown types", () => {
  const base = {
    architectures: ["LlamaForCausalLM"],
    hidden_size: 64,
    num_attention_heads: 4,
    num_hidden_layers: 1,
    intermediate_size: 128,
    max_position_embeddings: 64,
    vocab_size: 100,
  };
  const llama3 = {
    rope_type: "llama3",
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 48,
  };
  const a = configFromHf({ ...base, rope_theta: 500000, rope_scaling: llama3 }, "config.json");
  const b = configFromHf(
    { ...base, rope_parameters: { ...llama3, rope_theta: 500000 } },
    "config.json",
  );
  assert.deepEqual(a.ropeScaling, b.ropeScaling);
  assert.equal(a.rotaryBase, b.rotaryBase);
  assert.equal(
    configFromHf({ ...base, rope_scaling: null }, "config.json").ropeScaling,
    null,
  );
  assert.equal(
    configFromHf({ ...base, rope_parameters: { rope_type: "default" } }, "c.json").ropeScaling,
    null,
  );

  // Linear (older `type` key): position p with factor 2 sees the unscaled angle of p / 2.
  const lin = ropeScalingFromHf({ rope_scaling: { type: "linear", factor: 2 } }, "config.json");
  assert.deepEqual(lin, { ropeType: "linear", factor: 2 });
  const plain = rotaryTables(32, 16, 10000), scaled = rotaryTables(64, 16, 10000, lin);
  for (let p = 0; p < 32; p++) {
    const want = plain.cos.subarray(p * 16, p * 16 + 16);
    const got = scaled.cos.subarray(2 * p * 16, 2 * p * 16 + 16);
    assert.ok(maxRelErr(got, want) < 1e-6, `position ${2 * p}`);
  }

  for (
    const [cfg, field] of [
      [{ rope_scaling: { rope_type: "yarn", factor: 4 } }, "rope_scaling.rope_type"],
      [{ rope_scaling: { type: "dynamic", factor: 2 } }, "rope_scaling.type"],
      [{ rope_parameters: { rope_type: "longrope" } }, "rope_parameters.rope_type"],
      [{ rope_scaling: { rope_type: "llama3", factor: 8 } }, "rope_scaling.low_freq_factor"],
      [{ rope_scaling: { rope_type: "linear", factor: "2" } }, "rope_scaling.factor"],
      [{ rope_scaling: "linear" }, "rope_scaling"],
    ] as const
  ) {
    assert.throws(
      () => configFromHf({ ...base, ...cfg }, "/m/config.json"),
      (e: unknown) =>
        e instanceof ConfigError && e.file === "/m/config.json" && e.field === field &&
        /rope|number|object/.test(e.message),
      JSON.stringify(cfg),
    );
  }
  assert.throws(
    () => configFromHf({ ...base, rope_scaling: { rope_type: "yarn" } }, "config.json"),
    /unsupported rope type "yarn"; hooklens computes default, linear, llama3/,
  );
});
