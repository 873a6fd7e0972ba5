// The padding kernels (src/gpu/kernels/padding.ts, rotaryRows, embedPositionsRows, flash
// attention's key mask, softmax of fully masked rows) against float64 CPU computations on fresh
// random inputs, outputs poisoned (NaN) first.
import assert from "node:assert/strict";
import { initGpu, Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { flashOnArrays, maxRelErr, poisonPool, randArray, rng } from "./_util.ts";

const { embedPositionsRows, gatherPositions, maskKeys, rotaryRows } = ops;

await initGpu();
let seed = 9100;

/** A random left- or right-padded 0/1 mask [B, P] with at least one real token per row. */
function randomMask(B: number, P: number, left: boolean, r: () => number): number[][] {
  return Array.from({ length: B }, () => {
    const n = 1 + Math.floor(r() * P);
    return Array.from({ length: P }, (_, p) => (left ? p >= P - n : p < n) ? 1 : 0);
  });
}

Deno.test("maskKeys sets exactly the pad keys' scores to -inf, for a KV cache's wider mask too", async () => {
  const r = rng(seed++);
  for (const [B, H, Q, K, stride] of [[3, 2, 5, 7, 7], [2, 3, 1, 6, 11]]) {
    const mask = randomMask(B, stride, r() < 0.5, r);
    const x = randArray(B * H * Q * K, seed++);
    using t = Tensor.from(x, [B, H, Q, K]);
    using m = Tensor.from(mask.flat(), [B, stride], "int32");
    maskKeys(t, m, stride);
    const got = await t.toArray();
    for (let i = 0; i < x.length; i++) {
      const b = Math.floor(i / (H * Q * K)), k = i % K;
      const want = mask[b][k] ? x[i] : -Infinity;
      assert.equal(got[i], want, `B ${B} K ${K} stride ${stride} at ${i}`);
    }
  }
});

/** Float64 NeoX rotary of one head vector at `pos`. */
function rotate(
  x: ArrayLike<number>,
  base: number,
  R: number,
  pos: number,
  inv: boolean,
): number[] {
  const out = Array.from(x);
  const half = R / 2;
  for (let e = 0; e < half; e++) {
    const theta = pos / Math.pow(base, (2 * e) / R);
    const c = Math.cos(theta), s = inv ? -Math.sin(theta) : Math.sin(theta);
    out[e] = x[e] * c - x[e + half] * s;
    out[e + half] = x[e + half] * c + x[e] * s;
  }
  return out;
}

Deno.test("rotaryRows rotates each row's token t by position max(t + offset, start) - start (and back)", async () => {
  const r = rng(seed++);
  const nCtx = 32, R = 8, base = 10000;
  const cos = new Float32Array(nCtx * R), sin = new Float32Array(nCtx * R);
  for (let p = 0; p < nCtx; p++) {
    for (let e = 0; e < R; e++) {
      const theta = p / Math.pow(base, (2 * (e % (R / 2))) / R);
      cos[p * R + e] = Math.cos(theta);
      sin[p * R + e] = Math.sin(theta);
    }
  }
  using table = Tensor.from([...cos, ...sin], [2 * nCtx, R]);
  for (const [B, P, H, E, offset] of [[3, 6, 2, 12, 0], [2, 1, 3, 8, 9]]) {
    const starts = Array.from({ length: B }, () => Math.floor(r() * (P + offset)));
    const x = randArray(B * P * H * E, seed++);
    using tx = Tensor.from(x, [B, P, H, E]);
    using ts = Tensor.from(starts, [B], "int32");
    for (const inv of [false, true]) {
      poisonPool(x.length * 4);
      using y = rotaryRows(tx, table, R, offset, ts, inv);
      const want = new Float64Array(x.length);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < P; t++) {
          const pos = Math.max(t + offset, starts[b]) - starts[b];
          for (let h = 0; h < H; h++) {
            const at = ((b * P + t) * H + h) * E;
            want.set(rotate(x.subarray(at, at + E), base, R, pos, inv), at);
          }
        }
      }
      const err = maxRelErr(await y.toArray(), want);
      assert.ok(err < 1e-5, `B ${B} P ${P} offset ${offset} inverse ${inv}: ${err}`);
    }
  }
});

Deno.test("embedPositionsRows gathers position rows counted from each row's start", async () => {
  const r = rng(seed++);
  const nCtx = 20, d = 70;
  const table = randArray(nCtx * d, seed++);
  using tt = Tensor.from(table, [nCtx, d]);
  for (const [B, P, offset] of [[4, 7, 0], [3, 1, 12]]) {
    const starts = Array.from({ length: B }, () => Math.floor(r() * (P + offset)));
    using ts = Tensor.from(starts, [B], "int32");
    poisonPool(B * P * d * 4);
    using y = embedPositionsRows(tt, B, P, offset, ts);
    const want = new Float64Array(B * P * d);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < P; t++) {
        const row = Math.max(t + offset, starts[b]) - starts[b];
        want.set(table.subarray(row * d, (row + 1) * d), (b * P + t) * d);
      }
    }
    assert.equal(maxRelErr(await y.toArray(), want), 0, `B ${B} P ${P} offset ${offset}`);
  }
});

Deno.test("flashAttention with a key mask equals float64 masked attention; a query seeing no key gets 0", async () => {
  const r = rng(seed++);
  for (
    const [B, P, Pk, H, Hkv, E, offset, stride, left] of [
      [3, 19, 19, 4, 2, 16, 0, 19, 1],
      [3, 19, 19, 2, 2, 8, 0, 19, 0],
      [2, 1, 21, 4, 4, 8, 20, 25, 1],
    ]
  ) {
    const mask = randomMask(B, stride, left === 1, r);
    for (const row of mask) for (let j = Pk; j < stride; j++) row[j] = 1;
    const q = randArray(B * P * H * E, seed++),
      k = randArray(B * Pk * Hkv * E, seed++),
      v = randArray(B * Pk * Hkv * E, seed++);
    using tm = Tensor.from(mask.flat(), [B, stride], "int32");
    const alpha = 1 / Math.sqrt(E);
    const z = await flashOnArrays(q, k, v, { B, P, Pk, H, Hkv, E, offset }, {
      mask: { t: tm, stride },
    });
    const ref = new Float64Array(B * P * H * E);
    let empty = 0;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const hk = Math.floor(h / (H / Hkv));
        for (let i = 0; i < P; i++) {
          const s: [number, number][] = [];
          for (let j = 0; j <= Math.min(Pk - 1, offset + i); j++) {
            if (!mask[b][j]) continue;
            let d = 0;
            for (let e = 0; e < E; e++) {
              d += q[((b * P + i) * H + h) * E + e] * k[((b * Pk + j) * Hkv + hk) * E + e];
            }
            s.push([j, d * alpha]);
          }
          if (!s.length) {
            empty++;
            continue; // stays 0
          }
          const mx = Math.max(...s.map(([, x]) => x));
          const w = s.map(([j, x]) => [j, Math.exp(x - mx)]);
          const sum = w.reduce((a, [, x]) => a + x, 0);
          for (let e = 0; e < E; e++) {
            let acc = 0;
            for (const [j, wj] of w) acc += wj / sum * v[((b * Pk + j) * Hkv + hk) * E + e];
            ref[((b * P + i) * H + h) * E + e] = acc;
          }
        }
      }
    }
    const err = maxRelErr(z, ref);
    assert.ok(err < 1e-5, `B ${B} P ${P} Pk ${Pk} offset ${offset} (${empty} empty rows): ${err}`);
  }
});

Deno.test("softmax gives a row of -inf zeros (a left pad's query), other rows as before, both variants", async () => {
  const rows = 5, n = 9;
  const x = randArray(rows * n, seed++);
  for (let j = 0; j < n; j++) x[2 * n + j] = -Infinity;
  x[4 * n + 3] = -Infinity;
  const want = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const row = Array.from(x.subarray(r * n, (r + 1) * n));
    const mx = Math.max(...row);
    if (mx === -Infinity) continue;
    const w = row.map((v) => Math.exp(v - mx)), sum = w.reduce((a, v) => a + v, 0);
    w.forEach((v, j) => want[r * n + j] = v / sum);
  }
  using tx = Tensor.from(x, [rows, n]);
  for (const mode of ["always", "never"] as const) {
    ops.tuning.cpuVariants.mode = mode;
    try {
      poisonPool(rows * n * 4);
      using p = ops.softmax(tx);
      const err = maxRelErr(await p.toArray(), want);
      assert.ok(err < 1e-6, `${mode}: ${err}`);
    } finally {
      ops.tuning.cpuVariants.mode = "auto";
    }
  }
});

Deno.test("gatherPositions copies one position per row on the GPU", async () => {
  const [B, P, V] = [3, 5, 11];
  const x = randArray(B * P * V, seed++);
  using t = Tensor.from(x, [B, P, V]);
  const at = [4, 0, -1];
  poisonPool(B * V * 4);
  using g = gatherPositions(t, at);
  assert.deepEqual(g.shape, [B, V]);
  const want = new Float64Array(B * V);
  at.forEach((p, b) => {
    const q = p < 0 ? P + p : p;
    want.set(x.subarray((b * P + q) * V, (b * P + q + 1) * V), b * V);
  });
  assert.equal(maxRelErr(await g.toArray(), want), 0);
  assert.throws(() => gatherPositions(t, [0, 1]), /one position per batch row/);
  assert.throws(() => gatherPositions(t, [0, 5, 1]), /outside 0..4/);
});
