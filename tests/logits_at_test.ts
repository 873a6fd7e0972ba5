// forward's `logitsAt`: only the asked positions go through the unembedding. Checked on the demo
// model (vocabulary 50257: W_U padded to 50260 columns, so the dense kernels' CROP stores write the
// logits) against its full logits and a float64 unembedding of the final norm's output, and the
// unembedding's kernel alone on the shapes that select it, outputs poisoned first.
import assert from "node:assert/strict";
import { HookedTransformer, InputError, Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { readJsonFile } from "../src/io/json.ts";
import { configFromHf } from "../src/model/config.ts";
import { processWeights } from "../src/model/processing.ts";
import { loadStateDict } from "../src/model/weights.ts";
import { maxRelErr, poisonPool, randArray, relErr } from "./_util.ts";

const DEMO = new URL("../models/demo-pycode/hf", import.meta.url).pathname;
const model = await HookedTransformer.fromPretrained(DEMO);
const V = model.cfg.dVocab;
const P = 128;
const tokens = [
  Array.from({ length: P }, (_, i) => (i * 104729 + 7) % V),
  Array.from({ length: P }, (_, i) => (i * 7919 + 3) % V),
];

/** Rows `pos` of each batch row of logits [B, P, V] (flat). */
function rowsOf(full: Float32Array, B: number, pos: number[]): Float32Array {
  const out = new Float32Array(B * pos.length * V);
  for (let b = 0; b < B; b++) {
    pos.forEach((p, j) =>
      out.set(full.subarray((b * P + p) * V, (b * P + p + 1) * V), (b * pos.length + j) * V)
    );
  }
  return out;
} // deno-fmt-ignore

Deno.test("logitsAt: the last position and a list of positions equal those rows of the full logits, and the full logits equal float64 x · W_U", async () => {
  const [full, cache] = await model.runWithCache(tokens, { namesFilter: "ln_final.hook_normalized" });
  using _c = cache;
  using _f = full as Tensor;
  const all = await (full as Tensor).toArray() as Float32Array;
  assert.deepEqual((full as Tensor).shape, [2, P, V]);
  // float64 unembedding of the final norm's output, with the processed W_U and b_U (ln_final's
  // bias folded in).
  const x = await cache.get("ln_final.hook_normalized").toArray();
  const cfg = configFromHf(await readJsonFile(`${DEMO}/config.json`), "config.json");
  const sd = await loadStateDict(DEMO, cfg);
  processWeights(sd, cfg, { foldLn: true, centerWritingWeights: true, centerUnembed: true, foldValueBiases: true });
  const [wu, bu] = [sd.get("unembed.W_U")!.data, sd.get("unembed.b_U")!.data];
  const D = model.cfg.dModel;
  for (const row of [0, 1, 77, P - 1, P + 5, 2 * P - 1]) {
    const ref = Float64Array.from(bu);
    for (let k = 0; k < D; k++) {
      const a = x[row * D + k];
      for (let n = 0; n < V; n++) ref[n] += a * wu[k * V + n];
    }
    assert.ok(relErr(all.subarray(row * V, (row + 1) * V), ref) < 1e-5, `row ${row}`);
  }
  poisonPool(2 * P * V * 4, 4);
  using last = await model.forward(tokens, { logitsAt: "last" });
  assert.deepEqual(last.shape, [2, 1, V]);
  assert.ok(maxRelErr(await last.toArray(), rowsOf(all, 2, [P - 1])) < 1e-5);
  using some = await model.forward(tokens, { logitsAt: [0, -1, 5, 5] });
  assert.deepEqual(some.shape, [2, 4, V]);
  assert.ok(maxRelErr(await some.toArray(), rowsOf(all, 2, [0, P - 1, 5, 5])) < 1e-5);
  using same = await model.forward(tokens, { logitsAt: "all" });
  assert.deepEqual([...await same.toArray()], [...all], '"all" is the default');
});

Deno.test('logitsAt "last" in a padded batch is each row\'s last real token (right and left padding)', async () => {
  for (const side of ["right", "left"] as const) {
    const real = 100;
    const row1 = Array.from(
      { length: P },
      (_, i) => Number(side === "right" ? i < real : i >= P - real),
    );
    const attentionMask = [Array(P).fill(1), row1];
    using full = await model.forward(tokens, { attentionMask });
    const all = await full.toArray() as Float32Array;
    using last = await model.forward(tokens, { attentionMask, logitsAt: "last" });
    assert.deepEqual(last.shape, [2, 1, V]);
    const got = await last.toArray();
    const end1 = side === "right" ? real - 1 : P - 1;
    assert.ok(maxRelErr(got.subarray(0, V), all.subarray((P - 1) * V, P * V)) < 1e-5, side);
    assert.ok(
      maxRelErr(got.subarray(V), all.subarray((P + end1) * V, (P + end1 + 1) * V)) < 1e-5,
      side,
    );
  }
}); // deno-fmt-ignore

Deno.test("logitsAt: unembed.hook_out has the reduced shape (and its replacement is returned), unembed.hook_in every position", async () => {
  const seen: Record<string, readonly number[]> = {};
  const hooks = model.hooks([
    ["unembed.hook_in", (t) => void (seen.in = t.shape)],
    ["unembed.hook_out", (t) => {
      seen.out = t.shape;
      return t.scale(2);
    }],
  ]);
  const [out, cache] = await model.runWithCache(tokens, {
    logitsAt: [3, -2],
    namesFilter: "unembed.hook_out",
  });
  hooks[Symbol.dispose]();
  using _c = cache;
  using o = out as Tensor;
  assert.deepEqual(seen, { in: [2, P, model.cfg.dModel], out: [2, 2, V] });
  assert.deepEqual(cache.get("unembed.hook_out").shape, [2, 2, V]);
  using plain = await model.forward(tokens, { logitsAt: [3, -2] });
  assert.ok(maxRelErr(await o.toArray(), (await plain.toArray()).map((v) => 2 * v)) < 1e-6);
}); // deno-fmt-ignore

Deno.test("logitsAt: a loss, a backward pass, an empty list or a position out of range is an InputError naming the option", async () => {
  const cases: [string, () => Promise<unknown>][] = [
    ["loss", () => model.forward(tokens, { logitsAt: "last", returnType: "loss" })],
    ["both", () => model.forward(tokens, { logitsAt: [1], returnType: "both" })],
    ["inclBwd", () => model.runWithCache(tokens, { logitsAt: "last", inclBwd: true, returnType: { logitDiff: { correct: [1], incorrect: [2] } } })],
    ["empty", () => model.forward(tokens, { logitsAt: [] })],
    ["range", () => model.forward(tokens, { logitsAt: [P] })],
    ["negative range", () => model.forward(tokens, { logitsAt: [-P - 1] })],
    ["fraction", () => model.forward(tokens, { logitsAt: [1.5] })],
  ];
  for (const [label, run] of cases) {
    await assert.rejects(run, (e: Error) => e instanceof InputError && /logitsAt/.test(e.message), label);
  }
  using ok = await model.forward(tokens, { logitsAt: [-P] });
  assert.deepEqual(ok.shape, [2, 1, V]);
}); // deno-fmt-ignore

// The unembedding's product on the CPU kernels' CROP stores (N not a multiple of 4, the weight
// padded to LDB): the large block (more than 32 rows, >= 2^24 multiply-adds), the small block and
// the matrix-vector kernel for few rows; a wide SAE-encoder-like product too.
const UNEMBED_CASES = [
  [128, 128, 50257, 50260],
  [40, 128, 50257, 50260],
  [9, 128, 50257, 50260],
  [1, 128, 50257, 50260],
  [64, 256, 16383, 16384],
] as const;
for (const [M, K, N, LDB] of UNEMBED_CASES) {
  Deno.test(`unembedding-shaped product ${M}x${K}x${N} (weight padded to ${LDB}) with a bias equals float64`, async () => {
    const a = randArray(M * K, 7000 + M),
      w = randArray(K * LDB, 7100 + M),
      bias = randArray(N, 7200 + M);
    using ta = Tensor.from(a, [M, K]);
    using tw = Tensor.from(w, [K, LDB]);
    using tb = Tensor.from(bias, [N]);
    const ref = new Float64Array(M * N);
    for (let m = 0; m < M; m++) {
      const r = ref.subarray(m * N, (m + 1) * N);
      r.set(bias);
      for (let k = 0; k < K; k++) {
        const x = a[m * K + k], o = k * LDB;
        for (let n = 0; n < N; n++) r[n] += x * w[o + n];
      }
    }
    poisonPool(M * N * 4, 4);
    using y = ops.linear(ta, tw, tb, {}, N)[0];
    assert.deepEqual(y.shape, [M, N]);
    assert.ok(relErr(await y.toArray(), ref) < 1e-5);
  }); // deno-fmt-ignore
}
