// SAE kernels and loading against a float64 CPU implementation of SAELens's semantics, on fresh
// random SAEs of every architecture and option; typed errors; attach/scope state safety.
import assert from "node:assert/strict";
import { join } from "node:path";
import { HookedSAETransformer, SAE, SaeAttachError, Tensor, WeightsError } from "../mod.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import * as ops from "../src/gpu/ops.ts";
import { initRuntime } from "../src/gpu/runtime.ts";
import { kernelRole } from "./_fingerprint.ts";
import { maxRelErr, poisonPool, randArray, recordDispatches, rng } from "./_util.ts";

const REF = new URL("./reference/gpt2_tiny/", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "hooklens-sae-" });
let seed = 500;

type Arch = "standard" | "topk" | "jumprelu" | "gated";
interface Spec {
  arch: Arch;
  dIn: number;
  dSae: number;
  k?: number;
  norm?: string;
  bdec?: boolean;
  rescale?: boolean;
  hook?: string;
  reshape?: string;
  cfg?: Record<string, unknown>;
  /** ops.tuning.cpuVariants for the general encode kernel (default: the adapter's choice). */
  variants?: { mode: "never" | "always"; subgroups: "auto" | "never" };
}

/** Writes a random SAE in SAELens's layout; returns its dir and weights. */
async function makeSae(s: Spec, name: string): Promise<[string, Record<string, Float32Array>]> {
  const dir = join(tmp, name);
  await Deno.mkdir(dir, { recursive: true });
  const { dIn, dSae } = s;
  const w: Record<string, Float32Array> = {
    W_enc: randArray(dIn * dSae, seed++).map((v) => v * 0.5),
    W_dec: randArray(dSae * dIn, seed++).map((v) => v * 0.5),
    b_dec: randArray(dIn, seed++).map((v) => v * 0.2),
  };
  if (s.arch !== "gated") w.b_enc = randArray(dSae, seed++).map((v) => v * 0.2);
  if (s.arch === "jumprelu") w.threshold = randArray(dSae, seed++).map((v) => Math.abs(v) * 0.3);
  if (s.arch === "gated") {
    w.b_gate = randArray(dSae, seed++).map((v) => v * 0.2);
    w.r_mag = randArray(dSae, seed++).map((v) => v * 0.3);
    w.b_mag = randArray(dSae, seed++).map((v) => v * 0.2);
  }
  const shapes: Record<string, number[]> = {
    W_enc: [dIn, dSae],
    W_dec: [dSae, dIn],
    b_dec: [dIn],
    b_enc: [dSae],
    threshold: [dSae],
    b_gate: [dSae],
    r_mag: [dSae],
    b_mag: [dSae],
  }; // deno-fmt-ignore
  await writeSafetensors(
    join(dir, "sae_weights.safetensors"),
    Object.fromEntries(Object.entries(w).map(([n, data]) => [n, { dtype: "F32", shape: shapes[n], data }])),
  );
  const cfg = s.cfg ?? {
    d_in: dIn,
    d_sae: dSae,
    architecture: s.arch,
    apply_b_dec_to_input: s.bdec ?? true,
    normalize_activations: s.norm ?? "none",
    reshape_activations: s.reshape ?? "none",
    metadata: { hook_name: s.hook ?? "blocks.0.hook_resid_pre", sae_lens_version: "6.18.0" },
    ...(s.arch === "topk" ? { k: s.k, rescale_acts_by_decoder_norm: s.rescale ?? false } : {}),
  }; // deno-fmt-ignore
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
  return [dir, w];
}

/** SAELens's forward in float64: acts_post and the output, per row. */
function cpuSae(s: Spec, w: Record<string, Float32Array>, x: Float32Array) {
  const { dIn, dSae } = s;
  const rows = x.length / dIn;
  const post = new Float64Array(rows * dSae), out = new Float64Array(rows * dIn);
  const norms = Array.from(
    { length: dSae },
    (_, j) => Math.hypot(...w.W_dec.subarray(j * dIn, (j + 1) * dIn)),
  );
  for (let r = 0; r < rows; r++) {
    const xr = Array.from(x.subarray(r * dIn, (r + 1) * dIn));
    let sin = xr.slice(), mu = 0, sd = 1, c = 1;
    if (s.norm === "constant_norm_rescale") {
      c = Math.sqrt(dIn) / Math.hypot(...xr);
      sin = xr.map((v) => v * c);
    } else if (s.norm === "layer_norm") {
      mu = xr.reduce((a, b) => a + b, 0) / dIn;
      sd = Math.sqrt(xr.reduce((a, b) => a + (b - mu) ** 2, 0) / (dIn - 1));
      sin = xr.map((v) => (v - mu) / (sd + 1e-5));
    }
    const cen = sin.map((v, d) => (s.bdec ?? true ? v - w.b_dec[d] : v));
    const lin = (W: (i: number) => number, b: Float32Array) =>
      Array.from(
        { length: dSae },
        (_, j) => cen.reduce((acc, v, d) => acc + v * W(d * dSae + j), b[j]),
      );
    let p: number[];
    if (s.arch === "gated") {
      const gate = lin((i) => w.W_enc[i], w.b_gate);
      const mag = lin((i) => w.W_enc[i] * Math.exp(w.r_mag[i % dSae]), w.b_mag);
      p = mag.map((v, j) => (gate[j] > 0 ? Math.max(v, 0) : 0));
    } else {
      const pre = lin((i) => w.W_enc[i], w.b_enc);
      if (s.arch === "topk") {
        const sel = s.rescale ? pre.map((v, j) => v * norms[j]) : pre;
        const order = sel.map((v, j) => [v, j]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(
          0,
          s.k,
        );
        p = new Array(dSae).fill(0);
        for (const [v, j] of order) p[j] = Math.max(v, 0);
      } else if (s.arch === "jumprelu") {
        p = pre.map((v, j) => (v > w.threshold[j] ? Math.max(v, 0) : 0));
      } else p = pre.map((v) => Math.max(v, 0));
    }
    p.forEach((v, j) => (post[r * dSae + j] = v));
    for (let d = 0; d < dIn; d++) {
      let acc = w.b_dec[d];
      for (let j = 0; j < dSae; j++) {
        acc += (s.rescale ? p[j] / norms[j] : p[j]) * w.W_dec[j * dIn + d];
      }
      if (s.norm === "constant_norm_rescale") acc /= c;
      else if (s.norm === "layer_norm") acc = acc * sd + mu;
      out[r * dIn + d] = acc;
    }
  }
  return { post, out };
} // deno-fmt-ignore

const CASES: Spec[] = [
  { arch: "standard", dIn: 24, dSae: 40 },
  { arch: "standard", dIn: 24, dSae: 40, bdec: false, norm: "constant_norm_rescale" },
  { arch: "standard", dIn: 24, dSae: 40, norm: "layer_norm" },
  { arch: "topk", dIn: 24, dSae: 300, k: 7 },
  { arch: "topk", dIn: 24, dSae: 40, k: 5, rescale: true, norm: "layer_norm" },
  { arch: "jumprelu", dIn: 24, dSae: 40, bdec: false },
  { arch: "gated", dIn: 24, dSae: 40, norm: "constant_norm_rescale" },
  // d_in not a multiple of 4: the general (strided) encode kernel instead of the tiled one, as
  // written for GPUs and in its software-adapter variant.
  { arch: "jumprelu", dIn: 10, dSae: 30, variants: { mode: "never", subgroups: "never" } },
  { arch: "gated", dIn: 10, dSae: 30, variants: { mode: "never", subgroups: "never" } },
  { arch: "jumprelu", dIn: 10, dSae: 30, variants: { mode: "always", subgroups: "never" } },
  { arch: "gated", dIn: 10, dSae: 30, variants: { mode: "always", subgroups: "never" } },
  // (the subgroup variant, shaders/matmul_sg.wgsl, where the device has 8-lane subgroups)
  { arch: "jumprelu", dIn: 10, dSae: 70, variants: { mode: "always", subgroups: "auto" } },
  { arch: "gated", dIn: 10, dSae: 70, variants: { mode: "always", subgroups: "auto" } },
];

for (const [i, s] of CASES.entries()) {
  const variant = !s.variants
    ? ""
    : s.variants.mode === "never"
    ? ", GPU kernel"
    : s.variants.subgroups === "never"
    ? ", software-adapter kernel"
    : ", software-adapter subgroup kernel";
  Deno.test(`SAE ${s.arch}, d_in ${s.dIn} (norm ${s.norm ?? "none"}, b_dec in ${s.bdec ?? true}${s.rescale ? ", rescaled" : ""}${variant}) matches float64`, async () => {
    const saved = { ...ops.tuning.cpuVariants };
    Object.assign(ops.tuning.cpuVariants, s.variants ?? saved);
    using _restore = {
      [Symbol.dispose]: () => {
        Object.assign(ops.tuning.cpuVariants, saved);
      },
    };
    const [dir, w] = await makeSae(s, `case${i}`);
    using sae = await SAE.load(dir);
    const rows = 13;
    const x = randArray(rows * s.dIn, seed++).map((v) => v * 3);
    using tx = Tensor.from(x, [rows, s.dIn]);
    const ref = cpuSae(s, w, x);
    poisonPool(rows * s.dSae * 4);
    using acts = await sae.encode(tx);
    assert.ok(maxRelErr(await acts.toArray(), ref.post) < 1e-5, "acts_post");
    poisonPool(rows * s.dIn * 4);
    using out = await sae.forward(tx);
    assert.ok(maxRelErr(await out.toArray(), ref.out) < 1e-5, "output");
    sae.useErrorTerm = true;
    using withErr = await sae.forward(tx);
    assert.ok(
      maxRelErr(await withErr.toArray(), x) < 1e-5,
      "output with error term equals the input",
    );
  });
} // deno-fmt-ignore

Deno.test("sparse decode: rows with more active latents than the list holds decode densely, same result", async () => {
  const s: Spec = { arch: "standard", dIn: 16, dSae: 64 };
  const [dir, w] = await makeSae(s, "cap");
  const x = randArray(9 * 16, seed++).map((v) => v * 3);
  const ref = cpuSae(s, w, x);
  // Capacity 2 decodes every row densely, 64 every row from its list, 31 some rows each way.
  const active = Array.from({ length: 9 }, (_, r) => ref.post.subarray(r * 64, (r + 1) * 64).filter((v) => v > 0).length);
  assert.ok(active.every((n) => n > 2) && active.some((n) => n > 31) && active.some((n) => n <= 31), `active latents per row ${active}`);
  const saved = ops.tuning.cpuVariants.mode;
  // Every uniform block this test makes is new to the recorder (rows 9, d_sae 64).
  using rec = recordDispatches((await initRuntime()).gpu.device);
  // The GPU compaction (workgroup prefix sum) and the software-adapter one (a scan per row).
  for (const mode of ["never", "always"] as const) {
    ops.tuning.cpuVariants.mode = mode;
    for (const cap of [2, 31, 64]) {
      using sae = await SAE.load(dir, { decodeCapacity: cap });
      using tx = Tensor.from(x, [9, 16]);
      rec.dispatches.length = 0;
      using out = await sae.forward(tx);
      assert.ok(maxRelErr(await out.toArray(), ref.out) < 1e-5, `${mode}: capacity ${cap}`);
      // The list the decode read held `cap` latents a row (field k of shaders/sae.wgsl's P).
      const lists = rec.dispatches.filter((d) => ["sae:compact", "sae:decode"].includes(kernelRole(d.kernel)));
      assert.deepEqual(lists.map((d) => [kernelRole(d.kernel), d.params?.[3]]), [["sae:compact", cap], ["sae:decode", cap]], `${mode}: capacity ${cap} is the list the decode read`);
    }
  }
  ops.tuning.cpuVariants.mode = saved;
}); // deno-fmt-ignore

Deno.test("top-k kernel: radix select keeps exactly k per row, ties to the lowest index, negatives ReLU'd", async () => {
  const rows = 6, n = 1000, k = 17;
  const r = rng(9);
  const x = new Float32Array(rows * n).map(() => (r() - 0.7) * 10);
  x.fill(2.5, 3 * n + 10, 3 * n + 40); // row 3: 30 equal values
  for (let i = 0; i < n; i++) x[5 * n + i] = -1 - i / n; // row 5: all negative
  using t = Tensor.from(x, [rows, n]);
  poisonPool(rows * n * 4);
  using y = ops.topK(t, k);
  const got = await y.toArray();
  for (let row = 0; row < rows; row++) {
    const vals = Array.from(x.subarray(row * n, (row + 1) * n)).map((v, j) => [v, j]);
    vals.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    const want = new Float32Array(n);
    for (const [v, j] of vals.slice(0, k)) want[j] = Math.max(v, 0);
    assert.deepEqual(
      Array.from(got.subarray(row * n, (row + 1) * n)),
      Array.from(want),
      `row ${row}`,
    );
  }
});

Deno.test("pre-6.0 flat configs load (hook_point, activation_fn_str topk, activation_fn_kwargs.k, boolean normalize)", async () => {
  const s: Spec = { arch: "topk", dIn: 8, dSae: 16, k: 3 };
  const [dir] = await makeSae({
    ...s,
    cfg: {
      d_in: 8,
      d_sae: 16,
      hook_point: "blocks.0.hook_mlp_out",
      activation_fn_str: "topk",
      activation_fn_kwargs: { k: 3 },
      normalize_activations: false,
      sae_lens_version: "3.13.0",
      model_name: "gpt2",
    },
  }, "pre6"); // deno-fmt-ignore
  using sae = await SAE.load(dir);
  assert.equal(sae.cfg.architecture, "topk");
  assert.equal(sae.cfg.k, 3);
  assert.equal(sae.cfg.hookName, "blocks.0.hook_mlp_out");
  assert.equal(sae.cfg.normalizeActivations, "none");
  assert.equal(sae.cfg.modelName, "gpt2");
});

Deno.test("missing, extra and mis-shaped SAE tensors give typed errors naming file and tensor", async () => {
  const [dir] = await makeSae({ arch: "standard", dIn: 8, dSae: 16 }, "bad");
  const file = join(dir, "sae_weights.safetensors");
  const good = { dtype: "F32" as const, data: new Float32Array(8 * 16) };
  const write = (t: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }>) =>
    writeSafetensors(file, t);
  await write({
    W_enc: { ...good, shape: [8, 16] },
    b_enc: { ...good, shape: [16], data: new Float32Array(16) },
    b_dec: { ...good, shape: [8], data: new Float32Array(8) },
  });
  await assert.rejects(
    () => SAE.load(dir),
    (e) =>
      e instanceof WeightsError && e.message.includes(file) && /\[W_dec\].*missing/.test(e.message),
  );
  await write({
    W_enc: { ...good, shape: [16, 8] },
    W_dec: { ...good, shape: [16, 8] },
    b_enc: { ...good, shape: [16], data: new Float32Array(16) },
    b_dec: { ...good, shape: [8], data: new Float32Array(8) },
  });
  await assert.rejects(
    () => SAE.load(dir),
    (e) =>
      e instanceof WeightsError && /\[W_enc\].*shape \[16, 8\], expected \[8, 16\]/.test(e.message),
  );
  await write({
    W_enc: { ...good, shape: [8, 16] },
    W_dec: { ...good, shape: [16, 8] },
    b_enc: { ...good, shape: [16], data: new Float32Array(16) },
    b_dec: { ...good, shape: [8], data: new Float32Array(8) },
    junk: { ...good, shape: [1], data: new Float32Array(1) },
  });
  await assert.rejects(
    () => SAE.load(dir),
    (e) => e instanceof WeightsError && /\[junk\].*unexpected/.test(e.message),
  );
  const nan = new Float32Array(8 * 16);
  nan[5] = NaN;
  await write({
    W_enc: { ...good, shape: [8, 16], data: nan },
    W_dec: { ...good, shape: [16, 8] },
    b_enc: { ...good, shape: [16], data: new Float32Array(16) },
    b_dec: { ...good, shape: [8], data: new Float32Array(8) },
  });
  await assert.rejects(
    () => SAE.load(dir),
    (e) => e instanceof WeightsError && /\[W_enc\].*non-finite/.test(e.message),
  );
}); // deno-fmt-ignore

Deno.test("attaching an SAE that does not fit fails with both shapes/names and changes nothing", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  const good = await SAE.load(`${REF}saes/std_resid_pre1`);
  const [wrongDir] = await makeSae({ arch: "standard", dIn: 32, dSae: 16, hook: "blocks.0.hook_resid_post" }, "wrongdim");
  const [noHookDir] = await makeSae({ arch: "standard", dIn: 64, dSae: 16, hook: "blocks.7.hook_resid_post" }, "nohook");
  using wrong = await SAE.load(wrongDir);
  using noHook = await SAE.load(noHookDir);
  model.addSae(good, { useErrorTerm: true });
  const names = model.hookNames();
  assert.ok(names.includes("blocks.1.hook_resid_pre.hook_sae_error"));
  assert.throws(() => model.addSae(wrong), (e) => e instanceof SaeAttachError && /d_in 32/.test(e.message) && /blocks\.0\.hook_resid_post has width 64/.test(e.message));
  assert.throws(() => model.addSae(noHook), (e) => e instanceof SaeAttachError && /blocks\.7\.hook_resid_post/.test(e.message) && /blocks\.0\.hook_resid_pre/.test(e.message));
  assert.throws(() => model.withSaes([good, wrong]), SaeAttachError);
  assert.deepEqual(model.hookNames(), names, "nothing was half-applied");
  assert.deepEqual([...model.attachedSaes.keys()], ["blocks.1.hook_resid_pre"]);
  model.resetSaes();
  good.dispose();
}); // deno-fmt-ignore

Deno.test("a throw inside `using ctx = model.withSaes(...)` restores the previous SAEs and error-term settings", async () => {
  using model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  using std = await SAE.load(`${REF}saes/std_resid_pre1`);
  using topk = await SAE.load(`${REF}saes/topk_mlp_out0`);
  model.addSae(std, { useErrorTerm: true });
  const before = model.hookNames();
  using tok = Tensor.from([1, 2, 3, 4], [1, 4], "int32");
  using l0 = await model.forward(tok);
  const ref = await l0.toArray();
  await assert.rejects(async () => {
    using _ctx = model.withSaes([std, topk], { useErrorTerm: false });
    assert.ok(model.hookNames().includes("blocks.0.hook_mlp_out.hook_sae_acts_post"));
    assert.ok(!model.hookNames().includes("blocks.1.hook_resid_pre.hook_sae_error"));
    using _l = await model.forward(tok);
    throw new Error("analysis failed");
  }, /analysis failed/);
  assert.deepEqual(model.hookNames(), before);
  assert.deepEqual([...model.attachedSaes.keys()], ["blocks.1.hook_resid_pre"]);
  using l1 = await model.forward(tok);
  assert.deepEqual(await l1.toArray(), ref, "same outputs as before the scope");
});

Deno.test("many tokens decode with the dense kernel, same result as SAELens", async () => {
  for (
    const s of [{ arch: "standard", dIn: 24, dSae: 40 }, {
      arch: "topk",
      dIn: 24,
      dSae: 40,
      k: 5,
      rescale: true,
    }] as Spec[]
  ) {
    const [dir, w] = await makeSae(s, `dense-${s.arch}`);
    using sae = await SAE.load(dir);
    const rows = 100; // above SPARSE_DECODE_MAX_ROWS
    const x = randArray(rows * s.dIn, seed++).map((v) => v * 3);
    using tx = Tensor.from(x, [rows, s.dIn]);
    poisonPool(rows * s.dIn * 4);
    using rec = recordDispatches((await initRuntime()).gpu.device);
    using out = await sae.forward(tx);
    assert.ok(maxRelErr(await out.toArray(), cpuSae(s, w, x).out) < 1e-5, s.arch);
    // The reconstruction came from a dense product (its last dispatch), not the sparse decode.
    const kernels = rec.dispatches.map((d) => kernelRole(d.kernel));
    assert.equal(kernels.at(-1), "linear", `${s.arch}: ${kernels}`);
    assert.ok(
      !kernels.some((k) => k.startsWith("sae:compact") || k.startsWith("sae:decode")),
      `${s.arch}: ${kernels}`,
    );
  }
}); // deno-fmt-ignore

Deno.test("an SAE at a norm's hook_normalized feeds the norm's weight and bias (unprocessed LayerNorm)", async () => {
  using model = await HookedSAETransformer.fromPretrainedNoProcessing(`${REF}hf`);
  const hook = "blocks.0.ln2.hook_normalized";
  const [dir] = await makeSae({ arch: "standard", dIn: 64, dSae: 48, hook }, "at_ln2");
  using sae = await SAE.load(dir);
  const tokens = [[5, 17, 900, 3, 44, 2, 999]];
  const pre = async (opts: { saes?: SAE[]; hook?: (a: Tensor) => Promise<Tensor> }) => {
    using _h = opts.hook ? model.hooks([[hook, opts.hook]]) : { [Symbol.dispose]: () => {} };
    using _s = model.withSaes(opts.saes ?? []);
    const [out, cache] = await model.runWithCache(tokens, { namesFilter: "blocks.0.mlp.hook_pre", stopAtLayer: 1 });
    (out as Tensor).dispose();
    const v = await cache.get("blocks.0.mlp.hook_pre").toArray();
    cache.dispose();
    return v;
  };
  const withSae = await pre({ saes: [sae] });
  // The same replacement by a plain hook (which never takes a shortcut past the norm's weight).
  const byHook = await pre({ hook: (a) => sae.forward(a) });
  const plain = await pre({});
  assert.ok(maxRelErr(withSae, byHook) < 1e-5, "SAE output went through ln2's weight and bias");
  assert.ok(maxRelErr(withSae, plain) > 1e-2, "and differs from the plain run");
});
