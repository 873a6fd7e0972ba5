// The per-dispatch GPU profile the benchmarks use to say where the time goes.
import assert from "node:assert/strict";
import { initGpu, Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { runtime } from "../src/gpu/runtime.ts";
import { profileDispatches, summarizeProfile } from "../src/gpu/timing.ts";
import { poisonPool, randArray, relErr } from "./_util.ts";

const { timestamps } = await initGpu();

/** float64 softmax(a · b) of [M, K] x [K, N], row by row. */
function refSoftmaxMatmul(a: Float32Array, b: Float32Array, M: number, K: number, N: number) {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    const row = Array.from({ length: N }, (_, n) => {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * b[k * N + n];
      return s;
    });
    const mx = Math.max(...row);
    const e = row.map((v) => Math.exp(v - mx)), z = e.reduce((x, v) => x + v, 0);
    e.forEach((v, n) => (out[m * N + n] = v / z));
  }
  return out;
}

Deno.test({
  name: "profileDispatches times each dispatch under its kernel's name, leaves results unchanged",
  // Without timestamp-query it returns null (checked below only where that is the case).
  ignore: !timestamps,
}, async () => {
  const [M, K, N] = [37, 24, 50];
  const a = randArray(M * K, 7001), b = randArray(K * N, 7002);
  using ta = Tensor.from(a, [M, K]);
  using tb = Tensor.from(b, [K, N]);
  const ref = refSoftmaxMatmul(a, b, M, K, N);
  const run = (): Tensor => {
    using s = ops.matmul(ta, tb);
    return ops.softmax(s);
  };

  poisonPool(M * N * 4, 4);
  let y: Tensor | null = null;
  const p = await profileDispatches(() => {
    y = run();
  });
  assert.ok(p);
  assert.equal(p.truncated, false);
  assert.equal(p.dispatches.length, 2, p.dispatches.map((d) => d.kernel).join(" "));
  assert.match(p.dispatches[0].kernel, /^matmul(_sg)?:/);
  assert.match(p.dispatches[1].kernel, /^softmax:/);
  for (const d of p.dispatches) assert.ok(Number.isFinite(d.ms) && d.ms >= 0, `${d.kernel}`);
  assert.ok(p.dispatches.some((d) => d.ms > 0), "some dispatch took measurable time");
  assert.ok(relErr(await y!.toArray(), ref) < 1e-5, "profiled work computes the same");
  y!.dispose();

  // Only the first `capacity` dispatches are timed; the rest still run.
  poisonPool(M * N * 4, 4);
  const q = await profileDispatches(() => {
    y = run();
  }, 1);
  assert.ok(q);
  assert.equal(q.truncated, true);
  assert.equal(q.dispatches.length, 1);
  assert.ok(relErr(await y!.toArray(), ref) < 1e-5, "untimed dispatches still ran");
  y!.dispose();

  // And recording is back to normal afterwards (no per-dispatch passes or timestamps).
  assert.equal(runtime().profile, null, "profiling left on");
  using after = run();
  assert.ok(relErr(await after.toArray(), ref) < 1e-5);

  const sum = summarizeProfile([...p.dispatches, ...p.dispatches]);
  assert.deepEqual(sum.map((s) => s.count), [2, 2]);
  assert.ok(sum[0].ms >= sum[1].ms);
  assert.ok(
    Math.abs(sum.reduce((x, s) => x + s.ms, 0) - 2 * p.dispatches.reduce((x, d) => x + d.ms, 0)) <
      1e-9,
  );
}); // deno-fmt-ignore

Deno.test({
  name: "profileDispatches runs the work and returns null without timestamp-query",
  ignore: timestamps,
}, async () => {
  let ran = false;
  assert.equal(await profileDispatches(() => void (ran = true)), null);
  assert.ok(ran);
});
