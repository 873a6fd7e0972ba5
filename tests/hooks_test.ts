// Hook semantics: replacement, firing order, prepend, scopes, permanence, caching, errors, and
// that a forward without JS hooks is one submission with no readback.
import assert from "node:assert/strict";
import { gpuInfo, HookNameError, InputError, Tensor } from "../mod.ts";
import { HookedTransformer } from "../src/model/model.ts";
import { configFromHf } from "../src/model/config.ts";
import { processWeights } from "../src/model/processing.ts";
import { loadStateDict } from "../src/model/weights.ts";
import { readJsonFile } from "../src/io/json.ts";
import { maxRelErr } from "./_util.ts";

const DIR = new URL("./reference/gpt2_tiny/hf", import.meta.url).pathname;
const model = await HookedTransformer.fromPretrained(DIR);
const tokens = [[5, 17, 900, 3, 44, 2, 999], [0, 1, 2, 3, 4, 5, 6]];
const [B, P] = [2, 7];

Deno.test("a replacing hook changes downstream tensors as a CPU recomputation says", async () => {
  // 1. Replace the attention pattern with uniform causal attention: hook_z must be pattern · v.
  const uniform = new Float32Array(B * 4 * P * P);
  for (let i = 0; i < B * 4; i++) {
    for (let q = 0; q < P; q++) {
      for (let k = 0; k <= q; k++) uniform[(i * P + q) * P + k] = 1 / (q + 1);
    }
  }
  using patt = Tensor.from(uniform, [B, 4, P, P]);
  using _h = model.hooks([["blocks.1.attn.hook_pattern", () => patt]]);
  const [, cache] = await model.runWithCache(tokens, {
    namesFilter: ["blocks.1.attn.hook_v", "blocks.1.attn.hook_z", "blocks.1.attn.hook_pattern"],
  });
  using _c = cache;
  const [v, z, p] = await Promise.all(["v", "z", "pattern"].map((n) => cache.get(n, 1).toArray()));
  assert.deepEqual([...p], [...uniform], "the cache holds the replaced pattern");
  const zRef = new Float64Array(z.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < 4; h++) {
      for (let q = 0; q < P; q++) {
        for (let e = 0; e < 16; e++) {
          let s = 0;
          for (let k = 0; k <= q; k++) s += v[((b * P + k) * 4 + h) * 16 + e] / (q + 1);
          zRef[((b * P + q) * 4 + h) * 16 + e] = s;
        }
      }
    }
  }
  assert.ok(maxRelErr(z, zRef) < 1e-5);

  // 2. Scale the unembedding input: logits must be (0.5 x) · W_U + b_U.
  const cfg0 = configFromHf(await readJsonFile(`${DIR}/config.json`), "config.json");
  const sd = await loadStateDict(DIR, cfg0);
  processWeights(sd, cfg0, {
    foldLn: true,
    centerWritingWeights: true,
    centerUnembed: true,
    foldValueBiases: true,
  });
  const [WU, bU] = [sd.get("unembed.W_U")!.data, sd.get("unembed.b_U")!.data];
  const [logits, c2] = await model.runWithCache(tokens, {
    namesFilter: "ln_final.hook_normalized",
  });
  using _c2 = c2;
  using _l = logits as Tensor;
  const x = await c2.get("normalized").toArray();
  using scaled = await model.runWithHooks(tokens, {
    fwdHooks: [["unembed.hook_in", (a) => a.scale(0.5)]],
  }) as Tensor;
  const got = await scaled.toArray();
  const ref = new Float64Array(got.length);
  for (let r = 0; r < B * P; r++) {
    for (let n = 0; n < 1000; n++) {
      let s = bU[n];
      for (let d = 0; d < 64; d++) s += 0.5 * x[r * 64 + d] * WU[d * 1000 + n];
      ref[r * 1000 + n] = s;
    }
  }
  assert.ok(maxRelErr(got, ref) < 1e-5);
  assert.equal(model.hookCount, 1, "runWithHooks removed its hooks; only the scope's remains");
}); // deno-fmt-ignore

Deno.test("hooks fire in TransformerLens's firing order, prepend respected", async () => {
  const seen: string[] = [];
  {
    using _h = model.hooks([[() => true, (_a, h) => void seen.push(h.name)]]);
    using _o = await model.forward(tokens);
  }
  assert.deepEqual(seen, model.hookNames());
  assert.deepEqual(seen.slice(0, 4), ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.ln1.hook_scale"]);
  const order: string[] = [];
  model.addHook("blocks.0.hook_mlp_out", () => void order.push("first"));
  model.addHook("blocks.0.hook_mlp_out", () => void order.push("second"));
  model.addHook("blocks.0.hook_mlp_out", () => void order.push("prepended"), { prepend: true });
  using _o = await model.forward(tokens);
  model.resetHooks();
  assert.deepEqual(order, ["prepended", "first", "second"]);
}); // deno-fmt-ignore

Deno.test("a scope that throws still removes its hooks; permanence and resetHooks", async () => {
  model.resetHooks({ includingPermanent: true });
  assert.throws(() => {
    using _h = model.hooks([["blocks.0.hook_resid_pre", (a) => a.scale(0)]]);
    assert.equal(model.hookCount, 1);
    throw new Error("boom");
  }, /boom/);
  assert.equal(model.hookCount, 0);
  // A hook that throws during a run propagates and the run's temporary hooks are gone.
  await assert.rejects(
    () => model.runWithHooks(tokens, { fwdHooks: [["blocks.1.hook_resid_pre", () => { throw new Error("in hook"); }]] }),
    /in hook/,
  );
  assert.equal(model.hookCount, 0);
  model.addHook("hook_embed", () => {}, { isPermanent: true });
  model.addHook("hook_embed", () => {});
  model.resetHooks();
  assert.equal(model.hookCount, 1, "permanent hook survives resetHooks()");
  model.resetHooks({ includingPermanent: true });
  assert.equal(model.hookCount, 0);
}); // deno-fmt-ignore

Deno.test("unknown hook names and bad tokens fail clearly, before any GPU work", async () => {
  assert.throws(() => model.addHook("blocks.0.hook_nope", () => {}), (e) =>
    e instanceof HookNameError && /blocks\.0\.hook_nope/.test(e.message) && /blocks\.0\.hook_resid_pre/.test(e.message));
  assert.throws(() => model.hooks([["hook_embed", () => {}], ["bad", () => {}]]), HookNameError);
  assert.equal(model.hookCount, 0, "a failed hooks() attaches nothing");
  const before = gpuInfo().stats.dispatches;
  await assert.rejects(() => model.forward([[1, 1000]]), (e) => e instanceof InputError && /1000.*vocabulary/.test(e.message));
  await assert.rejects(() => model.forward([[-1]]), InputError);
  await assert.rejects(() => model.forward([Array(65).fill(1)]), (e) => e instanceof InputError && /n_ctx = 64/.test(e.message));
  await assert.rejects(() => model.forward([[]]), (e) => e instanceof InputError && /Empty/.test(e.message));
  await assert.rejects(() => model.forward([[1, 2], [3]]), InputError);
  assert.equal(gpuInfo().stats.dispatches, before, "no GPU work was recorded");
}); // deno-fmt-ignore

Deno.test("a forward without JS hooks is one submission; GPU-only hooks read nothing back", async () => {
  using tok = Tensor.from(tokens.flat(), [B, P], "int32");
  const s0 = gpuInfo().stats;
  using logits = await model.forward(tok);
  const s1 = gpuInfo().stats;
  assert.equal(s1.submits - s0.submits, 1, "the forward pass is one submission");
  assert.equal(s1.readbacks, s0.readbacks, "and no readback");
  await logits.toArray();
  const s2 = gpuInfo().stats;
  assert.equal(s2.readbacks - s0.readbacks, 1);
  using _h = model.hooks([["blocks.0.hook_resid_pre", (a) => a.mul(2)], ["blocks.1.attn.hook_pattern", (a) => a.fillAt(-1, [0], 0)]]);
  using _l2 = await model.forward(tok);
  assert.equal(gpuInfo().stats.readbacks, s2.readbacks, "hooks that only record GPU ops cause no readback");
  assert.equal(gpuInfo().stats.submits - s2.submits, 1, "and the pass is still one submission");
}); // deno-fmt-ignore

Deno.test("runWithCache: namesFilter forms, shorthands, stopAtLayer, removeBatchDim", async () => {
  const [o1, c1] = await model.runWithCache(tokens, { namesFilter: "blocks.0.hook_resid_pre" });
  (o1 as Tensor).dispose();
  assert.deepEqual(c1.keys(), ["blocks.0.hook_resid_pre"]);
  assert.equal(c1.get("resid_pre", 0), c1.get("blocks.0.hook_resid_pre"));
  c1.dispose();
  const [o2, c2] = await model.runWithCache(tokens, { namesFilter: (n) => n.endsWith("hook_scale"), stopAtLayer: 1 });
  (o2 as Tensor).dispose();
  assert.deepEqual(c2.keys(), ["blocks.0.ln1.hook_scale", "blocks.0.ln2.hook_scale"]);
  assert.deepEqual(c2.get("scale", 0, "ln2").shape, [2, 7, 1]);
  assert.throws(() => c2.get("pattern", 0), HookNameError);
  c2.dispose();
  const [o3, c3] = await model.runWithCache([tokens[0]], { removeBatchDim: true, namesFilter: ["blocks.1.attn.hook_pattern", "hook_embed"] });
  (o3 as Tensor).dispose();
  assert.deepEqual(c3.get("pattern", 1).shape, [4, 7, 7]);
  assert.deepEqual(c3.get("embed").shape, [7, 64]);
  c3.dispose();
  await assert.rejects(() => model.runWithCache(tokens, { removeBatchDim: true }), InputError);
});

Deno.test("hooks on a norm's hook_scale / hook_normalized feed the rest of the norm (no fused shortcut)", async () => {
  const filter = ["blocks.0.ln2.hook_normalized", "blocks.0.mlp.hook_pre"];
  const run = async (hooks: [string, (a: Tensor) => Tensor][]) => {
    using _h = model.hooks(hooks);
    const [out, cache] = await model.runWithCache(tokens, { namesFilter: filter, stopAtLayer: 1 });
    (out as Tensor).dispose();
    const [n, pre] = await Promise.all(filter.map((f) => cache.get(f).toArray()));
    cache.dispose();
    return { n, pre };
  };
  const plain = await run([]);
  // Doubling the scale halves the normalised input.
  const s2 = await run([["blocks.0.ln2.hook_scale", (a) => a.scale(2)]]);
  assert.ok(
    maxRelErr(s2.n, plain.n.map((v) => v / 2)) < 1e-6,
    "hook_scale feeds the normalisation",
  );
  // Scaling the normalised input by c moves mlp.hook_pre = c x·W + b linearly in c.
  const h = await run([["blocks.0.ln2.hook_normalized", (a) => a.scale(0.5)]]);
  const q = await run([["blocks.0.ln2.hook_normalized", (a) => a.scale(0.25)]]);
  const d1 = plain.pre.map((v, i) => v - h.pre[i]), d2 = h.pre.map((v, i) => 2 * (v - q.pre[i]));
  assert.ok(maxRelErr(d1, d2) < 1e-4, "hook_normalized feeds what follows the norm");
  assert.ok(maxRelErr(h.pre, plain.pre) > 1e-2, "and changes it");
}); // deno-fmt-ignore
