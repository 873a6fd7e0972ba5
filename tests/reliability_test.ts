// Concurrency, resources and determinism: overlapping calls give the sequential results, the
// buffer pool stays flat over hundreds of cycles, and outputs are bit-identical across runs.
import assert from "node:assert/strict";
import { gpuInfo, HookedSAETransformer, SAE, Tensor } from "../mod.ts";
import { runtime, trimPool } from "../src/gpu/runtime.ts";
import { tuning } from "../src/gpu/tuning.ts";
import { countDeviceCalls } from "./_util.ts";

const REF = new URL("./reference/gpt2_tiny/", import.meta.url).pathname;
const model = await HookedSAETransformer.fromPretrained(`${REF}hf`);
const sae = await SAE.load(`${REF}saes/std_resid_pre1`);
const tokens = [[5, 17, 900, 3, 44, 2, 999, 10], [0, 1, 2, 3, 4, 5, 6, 7]];

async function cachedRun(i: number): Promise<Float32Array[]> {
  const [out, cache] = await model.runWithCache(tokens, {
    namesFilter: ["blocks.1.hook_resid_post", `blocks.${i % 2}.attn.hook_pattern`],
    fwdHooks: [[`blocks.${i % 2}.hook_resid_pre`, (a) => a.scale(1 + i / 10)]],
  });
  using _c = cache;
  using logits = out as Tensor;
  const arrays = await cache.toArrays();
  return [await logits.toArray() as Float32Array, ...[...arrays.values()] as Float32Array[]];
}

Deno.test("20 overlapping runWithCache calls with different hooks equal the same calls one by one", async () => {
  const sequential: Float32Array[][] = [];
  for (let i = 0; i < 20; i++) sequential.push(await cachedRun(i));
  const overlapping = await Promise.all(Array.from({ length: 20 }, (_, i) => cachedRun(i)));
  for (let i = 0; i < 20; i++) {
    assert.equal(overlapping[i].length, 3);
    overlapping[i].forEach((a, j) =>
      assert.deepEqual(a, sequential[i][j], `call ${i}, tensor ${j}`)
    );
  }
  // Different hooks really gave different results.
  assert.notDeepEqual(sequential[0][0], sequential[1][0]);
  assert.equal(model.hookCount, 0, "no hook left behind");
});

Deno.test("500 cycles of runWithCache + dispose and of withSaes scopes keep the buffer pool flat", async () => {
  const cycle = async () => {
    const [out, cache] = await model.runWithCache(tokens, {
      namesFilter: (n) => n.includes("resid"),
    });
    (out as Tensor).dispose();
    cache.dispose();
    using _ctx = model.withSaes([sae], { useErrorTerm: true });
    using _logits = await model.forward(tokens);
  };
  for (let i = 0; i < 20; i++) await cycle();
  await (await model.forward(tokens)).toArray(); // settle: everything submitted
  const before = gpuInfo().stats;
  for (let i = 0; i < 480; i++) await cycle();
  using last = await model.forward(tokens);
  await last.toArray();
  const after = gpuInfo().stats;
  assert.ok(
    after.poolBuffers <= before.poolBuffers + 2,
    `pool grew from ${before.poolBuffers} to ${after.poolBuffers} buffers`,
  );
  assert.ok(
    after.poolBytes <= before.poolBytes * 1.05 + 65536,
    `pool grew from ${before.poolBytes} to ${after.poolBytes} bytes`,
  );
  assert.equal(after.dataBytes, before.dataBytes, "uploaded (non-pooled) buffers leaked");
  assert.equal(model.attachedSaes.size, 0);
});

Deno.test("a model's weights are counted in dataBytes while loaded and given back by dispose()", async () => {
  const before = gpuInfo().stats.dataBytes;
  const m = await HookedSAETransformer.fromPretrained(`${REF}hf`);
  const { dModel, dVocab } = m.cfg;
  // At least W_E and W_U (f32) are held on the GPU.
  assert.ok(gpuInfo().stats.dataBytes - before >= 2 * dModel * dVocab * 4, "weights counted");
  m.dispose();
  assert.equal(gpuInfo().stats.dataBytes, before);
});

Deno.test("the same inputs give bit-identical outputs across runs", async () => {
  const run = async () => {
    using _ctx = model.withSaes([sae]);
    const [out, cache] = await model.runWithCacheWithSaes(tokens, {
      saes: [sae],
      namesFilter: (n) => n.endsWith("hook_sae_acts_post"),
    });
    using _c = cache;
    using logits = out as Tensor;
    return [
      await logits.toArray(),
      await cache.get("blocks.1.hook_resid_pre.hook_sae_acts_post").toArray(),
    ];
  };
  const a = await run();
  const b = await run();
  assert.deepEqual(a[0], b[0]);
  assert.deepEqual(a[1], b[1]);
  const g1 = await model.generate(tokens, { maxNewTokens: 5, seed: 3, stopAtEos: false });
  const g2 = await model.generate(tokens, { maxNewTokens: 5, seed: 3, stopAtEos: false });
  assert.deepEqual(g1, g2);
}); // deno-fmt-ignore

Deno.test("a forward, runWithSaes or generate repeated on the same tokens gets the same buffers and makes no new bind groups", async () => {
  // Creating a bind group costs the CPU ~50-75 us (Deno 2.9): a generate call records thousands of
  // dispatches, so their bind groups must come from the cache when the call is repeated, which
  // takes the pool handing each tensor the same buffer as before.
  using made = countDeviceCalls(runtime().gpu.device, "createBindGroup");
  using t = Tensor.from(new Int32Array(tokens.flat()), [2, 8], "int32");
  const calls: [string, () => Promise<unknown>][] = [
    ["forward", async () => (await model.forward(t)).dispose()],
    ["runWithSaes", async () => ((await model.runWithSaes(t, { saes: [sae] })) as Tensor).dispose()],
    ["generate", () => model.generate(t, { maxNewTokens: 12, doSample: false, stopAtEos: false })],
  ];
  for (const [name, call] of calls) {
    await call(); // makes its buffers and bind groups
    await call(); // the pool's free buffers were freed in another order than they are taken
    made.count = 0;
    await call();
    assert.equal(made.count, 0, `${name}: ${made.count} bind groups made again`);
  }
});

Deno.test("the pool keeps the buffers of calls that alternate, and gives back a one-off large call's within keepCalls calls", async () => {
  // Above tuning.pool.freeLimitBytes of free buffers the pool trims at the end of a call: with a
  // limit of 0 it does so after every call here. runWithCache (all hooks) and a forward alternate,
  // as in an interpretability session: they must keep their buffers (and so their bind groups).
  const r = runtime();
  using created = countDeviceCalls(r.gpu.device, "createBuffer", (d) => d.label === "pool");
  const saved = { ...tuning.pool };
  tuning.pool.freeLimitBytes = 0;
  const rwc = async (toks: number[][]) => {
    const [out, cache] = await model.runWithCache(toks);
    (out as Tensor).dispose();
    cache.dispose();
  };
  try {
    for (let i = 0; i < 3; i++) {
      await rwc(tokens);
      (await model.forward(tokens)).dispose();
    }
    created.count = 0;
    for (let i = 0; i < 3; i++) {
      await rwc(tokens);
      (await model.forward(tokens)).dispose();
    }
    assert.equal(created.count, 0, `${created.count} pool buffers made again by alternating calls`);
    const before = r.stats.poolBytes;
    await rwc(
      Array.from(
        { length: 6 },
        (_, b) => Array.from({ length: 40 }, (_, p) => (b * 31 + p * 7) % 1000),
      ),
    );
    assert.ok(r.stats.poolBytes > before, "the large call takes more memory");
    for (let i = 0; i < tuning.pool.keepCalls; i++) (await model.forward(tokens)).dispose();
    assert.ok(
      r.stats.poolBytes <= before,
      `the large call's buffers are given back (${r.stats.poolBytes} > ${before} bytes)`,
    );
  } finally {
    Object.assign(tuning.pool, saved);
  }
}); // deno-fmt-ignore

Deno.test({
  name:
    "on Linux the GPU is taken through Vulkan alone: no EGL library that a Vulkan-only process lacks (libEGL's exit handler aborted ~1 process in 10)",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // The EGL libraries a child process maps once it has a GPU: through hooklens (which should
    // pick Vulkan itself), and through WebGPU directly with Vulkan chosen by the user. They must
    // agree: on Mesa (lavapipe) the OpenGL backend adds libEGL_mesa, whose exit handler aborted.
    // (On the H100 machine libEGL was mapped through hooklens with Vulkan alone: NVIDIA's Vulkan
    // driver loads it, so "no libEGL at all" cannot be the test.)
    const device = new URL("../src/gpu/device.ts", import.meta.url).href;
    const report = `console.log(JSON.stringify({
        egl: [...new Set(Deno.readTextFileSync("/proc/self/maps").match(/[^/\\s]*libEGL[^/\\s]*/g))].sort(),
        backend: Deno.env.get("DENO_WEBGPU_BACKEND"),
      }));`;
    const viaHooklens = `import { getDevice } from "${device}";
      const gpu = await getDevice();
      if (!gpu.adapterDescription) throw new Error("no adapter description");
      ${report}`;
    const vulkanOnly = `if (!(await navigator.gpu.requestAdapter())) throw new Error("no adapter");
      ${report}`;
    const run = async (code: string, extra: Record<string, string>) => {
      // The child inherits no DENO_WEBGPU_BACKEND (this process has set it already).
      const env: Record<string, string> = { ...extra };
      for (const k of ["PATH", "HOME", "XDG_RUNTIME_DIR", "DENO_DIR"]) {
        const v = Deno.env.get(k);
        if (v !== undefined) env[k] = v;
      }
      const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], env, clearEnv: true })
        .output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
    };
    const got = await run(viaHooklens, {});
    const want = await run(vulkanOnly, { DENO_WEBGPU_BACKEND: "vulkan" });
    assert.equal(got.backend, "vulkan");
    assert.deepEqual(got.egl, want.egl, "hooklens maps EGL libraries that a Vulkan-only process does not");
  },
});

Deno.test("readback reuses its staging buffers, each read returning its own tensor's values (also several at once); trimPool gives them back, and none are kept beyond stagingKeepBytes", async () => {
  const r = runtime();
  using created = countDeviceCalls(r.gpu.device, "createBuffer", (d) => d.label === "staging");
  const n = 300_000; // one staging bucket (2 MiB) for all of them
  const tensors = [0, 1, 2].map((i) =>
    Tensor.from(Float32Array.from({ length: n }, (_, j) => i * 1e6 + j), [n])
  );
  try {
    for (const t of tensors) await t.toArray(); // fills the kept staging buffers
    created.count = 0;
    for (let round = 0; round < 3; round++) {
      for (const [i, t] of tensors.entries()) {
        const v = await t.toArray();
        assert.equal(v[0], i * 1e6);
        assert.equal(v[n - 1], i * 1e6 + n - 1);
      }
      const all = await Promise.all(tensors.map((t) => t.toArray()));
      all.forEach((v, i) => assert.equal(v[n - 7], i * 1e6 + n - 7));
    }
    assert.equal(created.count, 2, "the first concurrent reads made two more, then none");
    const saved = tuning.pool.stagingKeepBytes;
    tuning.pool.stagingKeepBytes = 0;
    try {
      trimPool(); // gives the kept ones back
      created.count = 0;
      await tensors[0].toArray();
      await tensors[0].toArray();
      assert.equal(created.count, 2, "with nothing kept, every read makes its own");
    } finally {
      tuning.pool.stagingKeepBytes = saved;
    }
  } finally {
    for (const t of tensors) t.dispose();
  }
});
