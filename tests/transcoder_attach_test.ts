// Transcoders attached to a HookedSAETransformer (addTranscoder / withTranscoders): the logits
// with a fresh random transcoder of each architecture spliced in equal the model's logits with its
// output hook replaced by a float64 CPU computation of the transcoder on the input hook's
// activation; with the error term they equal the plain model's. Hook points, provenance, scopes
// and typed attach errors.
import assert from "node:assert/strict";
import { join } from "node:path";
import { HookedSAETransformer, SaeAttachError, Tensor } from "../mod.ts";
import { Transcoder } from "../src/sae/transcoder.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import { provenanceOf } from "../src/model/provenance.ts";
import { maxRelErr, poisonPool, randArray } from "./_util.ts";

const REF = new URL("./reference/gpt2_tiny/", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "hooklens-tc-attach-" });
const IN = "blocks.0.ln2.hook_normalized", OUT = "blocks.0.hook_mlp_out";
const tokens = [[5, 17, 900, 3, 44, 2, 999]];
let seed = 9100;

type Arch = "transcoder" | "skip_transcoder" | "jumprelu_transcoder";
interface Weights {
  W_enc: Float32Array;
  b_enc: Float32Array;
  W_dec: Float32Array;
  b_dec: Float32Array;
  threshold?: Float32Array;
  W_skip?: Float32Array;
}

/** Writes a random transcoder in SAELens's layout; returns its dir and weights. */
async function makeTranscoder(
  arch: Arch,
  name: string,
  dims = { dIn: 64, dSae: 48, dOut: 64 },
  hooks: { in?: string; out?: string } = {},
): Promise<[string, Weights]> {
  const dir = join(tmp, name);
  await Deno.mkdir(dir, { recursive: true });
  const { dIn, dSae, dOut } = dims;
  const w: Weights = {
    W_enc: randArray(dIn * dSae, seed++).map((v) => v * 0.5),
    b_enc: randArray(dSae, seed++).map((v) => v * 0.2),
    W_dec: randArray(dSae * dOut, seed++).map((v) => v * 0.5),
    b_dec: randArray(dOut, seed++).map((v) => v * 0.2),
  };
  if (arch === "jumprelu_transcoder") {
    w.threshold = randArray(dSae, seed++).map((v) => Math.abs(v) * 0.3);
  }
  if (arch === "skip_transcoder") w.W_skip = randArray(dOut * dIn, seed++).map((v) => v * 0.3);
  const shapes: Record<string, number[]> = {
    W_enc: [dIn, dSae],
    b_enc: [dSae],
    W_dec: [dSae, dOut],
    b_dec: [dOut],
    threshold: [dSae],
    W_skip: [dOut, dIn],
  };
  await writeSafetensors(
    join(dir, "sae_weights.safetensors"),
    Object.fromEntries(
      Object.entries(w).map(([n, data]) => [n, { dtype: "F32", shape: shapes[n], data }]),
    ),
  );
  const cfg = {
    d_in: dIn,
    d_sae: dSae,
    d_out: dOut,
    architecture: arch,
    apply_b_dec_to_input: false,
    normalize_activations: "none",
    reshape_activations: "none",
    hook_name: hooks.in ?? IN,
    hook_name_out: hooks.out ?? OUT,
    metadata: { sae_lens_version: "6.18.0" },
  };
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
  return [dir, w];
}

/** float64 transcoder prediction of rows of x [rows, d_in] (with the skip term). */
function cpuTranscoder(w: Weights, x: ArrayLike<number>, dIn: number, dSae: number, dOut: number) {
  const rows = x.length / dIn;
  const out = new Float64Array(rows * dOut);
  const acts = new Float64Array(dSae);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dSae; j++) {
      let s = w.b_enc[j];
      for (let i = 0; i < dIn; i++) s += x[r * dIn + i] * w.W_enc[i * dSae + j];
      acts[j] = s > 0 && (!w.threshold || s > w.threshold[j]) ? s : 0;
    }
    for (let o = 0; o < dOut; o++) {
      let s = w.b_dec[o];
      for (let j = 0; j < dSae; j++) s += acts[j] * w.W_dec[j * dOut + o];
      if (w.W_skip) { for (let i = 0; i < dIn; i++) s += x[r * dIn + i] * w.W_skip[o * dIn + i]; }
      out[r * dOut + o] = s;
    }
  }
  return out;
}

/** The plain model's logits and its activations at IN and OUT. */
async function plainRun(model: HookedSAETransformer) {
  const [logits, cache] = await model.runWithCache(tokens, {
    namesFilter: (n: string) => n === IN || n === OUT,
  });
  try {
    const x = cache.get(IN);
    return {
      logits: await (logits as Tensor).toArray(),
      x: await x.toArray(),
      y: await cache.get(OUT).toArray(),
      shape: [...x.shape],
    };
  } finally {
    (logits as Tensor).dispose();
    cache.dispose();
  }
}

for (const arch of ["transcoder", "skip_transcoder", "jumprelu_transcoder"] as const) {
  Deno.test(`${arch} attached: logits equal the output hook replaced by a float64 transcoder; with the error term, the plain logits`, async () => {
    using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
    const [dir, w] = await makeTranscoder(arch, `attach_${arch}`);
    using tc = await Transcoder.load(dir);
    const plain = await plainRun(model);
    const pred = cpuTranscoder(w, plain.x, 64, 48, 64);
    // The reference: the plain model with OUT replaced by the float64 prediction.
    using ref = await model.runWithHooks(tokens, {
      fwdHooks: [[OUT, () => Tensor.from(Float32Array.from(pred), plain.shape)]],
    }) as Tensor;
    const refLogits = await ref.toArray();
    assert.ok(maxRelErr(refLogits, plain.logits) > 1e-2, "the replacement changes the logits");

    {
      using v = model.withTranscoders([tc]);
      assert.ok(
        model.hasHook(`${OUT}.hook_sae_acts_post`) && model.hasHook(IN) && !model.hasHook(OUT),
      );
      assert.ok(!model.hasHook(`${OUT}.hook_sae_error`), "no error hook without the error term");
      poisonPool(7 * 64 * 4 * 8, 6);
      using got = await v.forward(tokens) as Tensor;
      assert.ok(maxRelErr(await got.toArray(), refLogits) < 1e-4, "logits with the transcoder");
      const p = provenanceOf(got)!;
      assert.deepEqual(
        p.saes.map((s) => [s.hookName, s.inputHook, s.architecture, s.useErrorTerm]),
        [[OUT, IN, arch, false]],
      );
    }
    {
      using v = model.withTranscoders([tc], { useErrorTerm: true });
      assert.ok(model.hasHook(`${OUT}.hook_sae_error`));
      poisonPool(7 * 64 * 4 * 8, 6);
      using got = await v.forward(tokens) as Tensor;
      assert.ok(maxRelErr(await got.toArray(), plain.logits) < 1e-4, "error term: plain logits");
    }
    // Closed: the plain model again.
    assert.equal(model.attachedTranscoders.size, 0);
    assert.ok(model.hasHook(OUT) && !model.hasHook(`${OUT}.hook_sae_output`));
    using after = await model.forward(tokens) as Tensor;
    assert.ok(maxRelErr(await after.toArray(), plain.logits) < 1e-5, "detached when closed");
  }); // deno-fmt-ignore
}

Deno.test("a transcoder's hook points: sae_input is the input hook's activation, acts_post can be edited, the cache names them", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  const [dir, w] = await makeTranscoder("transcoder", "hooks");
  using tc = await Transcoder.load(dir);
  const plain = await plainRun(model);
  model.addTranscoder(tc);
  try {
    assert.deepEqual([...model.attachedTranscoders.keys()], [OUT]);
    assert.equal(model.attachedSaes.size, 0);
    const [logits, cache] = await model.runWithCache(tokens, {
      namesFilter: (n: string) => n.startsWith(OUT),
    });
    (logits as Tensor).dispose();
    try {
      assert.ok(maxRelErr(await cache.get(`${OUT}.hook_sae_input`).toArray(), plain.x) < 1e-5);
      const pred = cpuTranscoder(w, plain.x, 64, 48, 64);
      assert.ok(maxRelErr(await cache.get(`${OUT}.hook_sae_output`).toArray(), pred) < 1e-4);
    } finally {
      cache.dispose();
    }
    // Zeroing every latent leaves b_dec at the output hook.
    using v = model.hooks([[`${OUT}.hook_sae_acts_post`, (a) => a.scale(0)]]);
    const [l3, c3] = await v.runWithCache(tokens, {
      namesFilter: (n: string) => n === `${OUT}.hook_sae_output`,
    });
    (l3 as Tensor).dispose();
    const out = await c3.get(`${OUT}.hook_sae_output`).toArray();
    c3.dispose();
    const want = Array.from({ length: out.length }, (_, i) => w.b_dec[i % 64]);
    assert.ok(maxRelErr(out, want) < 1e-5, "zeroed latents: the output is b_dec");
    // With the error term, the error is the real output minus the hook-free prediction.
    model.addTranscoder(tc, { useErrorTerm: true });
    const [l4, c4] = await v.runWithCache(tokens, {
      namesFilter: (n: string) => n === `${OUT}.hook_sae_output`,
    });
    (l4 as Tensor).dispose();
    const out4 = await c4.get(`${OUT}.hook_sae_output`).toArray();
    c4.dispose();
    const pred = cpuTranscoder(w, plain.x, 64, 48, 64);
    const want4 = Array.from(
      { length: out4.length },
      (_, i) => w.b_dec[i % 64] + plain.y[i] - pred[i],
    );
    assert.ok(maxRelErr(out4, want4) < 1e-4, "edited latents plus the clean error");
  } finally {
    model.resetSaes();
  }
  assert.equal(model.attachedTranscoders.size, 0);
}); // deno-fmt-ignore

Deno.test("a scope closes its transcoder, also on a throw; an unfitting transcoder is a SaeAttachError and changes nothing", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  const [dir] = await makeTranscoder("transcoder", "scope");
  using tc = await Transcoder.load(dir);
  assert.throws(() => {
    using _v = model.withTranscoders([tc]);
    assert.equal(model.attachedTranscoders.size, 1);
    throw new Error("inside");
  }, /inside/);
  assert.equal(model.attachedTranscoders.size, 0);
  assert.ok(model.hasHook(OUT));

  const [wide] = await makeTranscoder("transcoder", "wide", { dIn: 64, dSae: 8, dOut: 32 });
  using tcWide = await Transcoder.load(wide);
  assert.throws(() => model.addTranscoder(tcWide), (e) => e instanceof SaeAttachError && /d_out 32/.test(e.message) && /blocks\.0\.hook_mlp_out has width 64/.test(e.message));
  const [narrow] = await makeTranscoder("transcoder", "narrow", { dIn: 32, dSae: 8, dOut: 64 });
  using tcNarrow = await Transcoder.load(narrow);
  assert.throws(() => model.withTranscoders([tc, tcNarrow]), (e) => e instanceof SaeAttachError && /d_in 32/.test(e.message) && /ln2\.hook_normalized/.test(e.message));
  const [back] = await makeTranscoder("transcoder", "backwards", undefined, { in: "blocks.1.hook_resid_pre", out: "blocks.0.hook_mlp_out" });
  using tcBack = await Transcoder.load(back);
  assert.throws(() => model.addTranscoder(tcBack), (e) => e instanceof SaeAttachError && /does not come after/.test(e.message));
  const [bad] = await makeTranscoder("transcoder", "nohook", undefined, { out: "blocks.9.hook_mlp_out" });
  using tcBad = await Transcoder.load(bad);
  assert.throws(() => model.addTranscoder(tcBad), (e) => e instanceof SaeAttachError && /blocks\.9\.hook_mlp_out/.test(e.message));
  assert.equal(model.attachedTranscoders.size, 0, "nothing half-applied");
  assert.ok(model.hasHook(OUT));
});

/** Mean next-token cross-entropy of one sequence's logits [pos, vocab], in float64. */
function meanLoss(seq: number[], vocab: number): (l: Float32Array) => number {
  return (l) => {
    let s = 0;
    for (let p = 0; p < seq.length - 1; p++) {
      const row = l.subarray(p * vocab, (p + 1) * vocab);
      let m = -Infinity;
      for (const v of row) m = Math.max(m, v);
      let z = 0;
      for (const v of row) z += Math.exp(v - m);
      s += m + Math.log(z) - row[seq[p + 1]];
    }
    return s / (seq.length - 1);
  };
}

Deno.test("gradients through an attached transcoder (input hook, hook_sae_input, latents) match finite differences", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  const [dir] = await makeTranscoder("skip_transcoder", "grads");
  using tc = await Transcoder.load(dir);
  using v = model.withTranscoders([tc]);
  const lossOf = meanLoss(tokens[0], model.cfg.dVocabOut);
  const [loss, cache] = await v.runWithCache(tokens, { inclBwd: true });
  (loss as Tensor).dispose();
  const acts = await cache.get(`${OUT}.hook_sae_acts_post`).toArray();
  const grads: Record<string, Float32Array> = {};
  for (const h of [IN, `${OUT}.hook_sae_input`, `${OUT}.hook_sae_acts_post`]) {
    grads[h] = await cache.get(`${h}_grad`).toArray() as Float32Array;
  }
  cache.dispose();
  assert.ok(
    maxRelErr(grads[IN], grads[`${OUT}.hook_sae_input`]) < 1e-5,
    "the input hook's gradient is the transcoder's",
  );
  const fd = async (hook: string, index: number, eps = 3e-2) => {
    const at = async (delta: number) => {
      using l = await v.runWithHooks(tokens, {
        fwdHooks: [[hook, (a) => {
          const one = new Float32Array(a.size);
          one[index] = delta;
          using d = Tensor.from(one, [...a.shape]);
          return a.add(d);
        }]],
      }) as Tensor;
      return lossOf(await l.toArray() as Float32Array);
    };
    return (await at(eps) - await at(-eps)) / (2 * eps);
  };
  const active = [...acts.keys()].filter((i) => acts[i] > 0.5).slice(0, 2);
  assert.equal(active.length, 2, "some active latents to test");
  const checks: [string, number][] = [
    ...active.map((i) => [`${OUT}.hook_sae_acts_post`, i] as [string, number]),
    [`${OUT}.hook_sae_input`, 2 * 64 + 9],
    [IN, 5 * 64 + 33],
  ];
  for (const [hook, index] of checks) {
    const want = await fd(hook, index), got = grads[hook][index];
    assert.ok(
      Math.abs(want - got) <= 5e-6 + 1e-2 * Math.abs(want),
      `${hook}[${index}]: finite difference ${want}, gradient ${got}`,
    );
  }
}); // deno-fmt-ignore
