// Gemma-2's kernel options against float64 CPU computations on fresh random inputs, outputs
// poisoned (NaN) first: the attention scores' soft cap and sliding window in the strided matmul
// (every variant), in the one-pass attention, and the elementwise soft cap with its gradient.
import assert from "node:assert/strict";
import { initGpu, Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { flashOnArrays, maxRelErr, poisonPool, randArray } from "./_util.ts";

const { subgroupSize } = await initGpu();
let seed = 7100;

type Variants = typeof ops.tuning.cpuVariants;
const VARIANTS: (readonly [string, Variants])[] = [
  ["GPU kernels", { mode: "never", subgroups: "never" }],
  ["software-adapter variants", { mode: "always", subgroups: "never" }],
  ...(subgroupSize === 8
    ? [["software-adapter subgroup variants", { mode: "always", subgroups: "auto" }] as const]
    : []),
];

async function withVariants(v: Variants, fn: () => Promise<void>): Promise<void> {
  const saved = { ...ops.tuning.cpuVariants };
  Object.assign(ops.tuning.cpuVariants, v);
  try {
    await fn();
  } finally {
    Object.assign(ops.tuning.cpuVariants, saved);
  }
}

/** Key j visible from the query at position `qpos`: causal, and inside the window (0: none). */
const visible = (qpos: number, j: number, window: number): boolean =>
  j <= qpos && (window === 0 || qpos - j < window);

/** float64 scores [B, H, P, Pk]: cap * tanh(alpha q·k / cap) (no cap when 0), masked -inf. */
function refScores(
  q: Float32Array,
  k: Float32Array,
  [B, P, Pk, H, Hkv, E]: number[],
  { alpha, cap, window, offset }: { alpha: number; cap: number; window: number; offset: number },
): Float64Array {
  const out = new Float64Array(B * H * P * Pk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / (H / Hkv));
      for (let i = 0; i < P; i++) {
        for (let j = 0; j < Pk; j++) {
          let s = 0;
          for (let e = 0; e < E; e++) {
            s += q[((b * P + i) * H + h) * E + e] * k[((b * Pk + j) * Hkv + hk) * E + e];
          }
          s *= alpha;
          if (cap > 0) s = cap * Math.tanh(s / cap);
          out[((b * H + h) * P + i) * Pk + j] = visible(offset + i, j, window) ? s : -Infinity;
        }
      }
    }
  }
  return out;
}

// Shapes: no KV cache; a KV cache's step (queries at an offset into more keys); GQA throughout.
const CASES = [
  { B: 2, P: 11, Pk: 11, H: 4, Hkv: 2, E: 24, offset: 0 },
  { B: 1, P: 3, Pk: 21, H: 4, Hkv: 1, E: 8, offset: 18 },
];

for (const [vname, mode] of VARIANTS) {
  Deno.test(`gemm scores: soft cap, then causal mask with a sliding window, KV offset and GQA, equal float64 (${vname})`, () =>
    withVariants(mode, async () => {
      for (const c of CASES) {
        for (const [cap, window] of [[4, 4], [0, 3], [2.5, 0], [50, 1]]) {
          const { B, P, Pk, H, Hkv, E, offset } = c;
          const q = randArray(B * P * H * E, seed++).map((x) => 3 * x);
          const k = randArray(B * Pk * Hkv * E, seed++).map((x) => 3 * x);
          using tq = Tensor.from(q, [B, P, H, E]);
          using tk = Tensor.from(k, [B, Pk, Hkv, E]);
          using out = Tensor.from(new Float32Array(B * H * P * Pk).fill(NaN), [B, H, P, Pk]);
          const alpha = 1 / Math.sqrt(E);
          ops.gemm(
            { t: out, b1: H * P * Pk, b2: P * Pk, row: Pk, col: 1 },
            { t: tq, b1: P * H * E, b2: E, row: H * E, col: 1 },
            { t: tk, b1: Pk * Hkv * E, b2: E, row: 1, col: Hkv * E },
            {
              M: P,
              N: Pk,
              K: E,
              nb1: B,
              nb2: H,
              alpha,
              causal: true,
              causalOffset: offset,
              bGroup: H / Hkv,
              window,
              softCap: cap,
            },
          );
          const got = await out.toArray();
          const ref = refScores(q, k, [B, P, Pk, H, Hkv, E], { alpha, cap, window, offset });
          const err = maxRelErr(got, ref);
          assert.ok(err < 1e-5, `${JSON.stringify(c)} cap ${cap} window ${window}: ${err}`);
          // The cap holds: every visible score lies within it.
          if (cap > 0) assert.ok(got.every((s) => s === -Infinity || Math.abs(s) <= cap));
        }
      }
    }));
} // deno-fmt-ignore

Deno.test("flashAttention with soft cap and sliding window equals float64 attention (GQA, KV offset, windows across key blocks)", async () => {
  const cases = [...CASES, { B: 1, P: 37, Pk: 37, H: 2, Hkv: 2, E: 16, offset: 0 }];
  for (const c of cases) {
    for (const [cap, window] of [[4, 4], [0, 20], [3, 0]]) {
      const { B, P, Pk, H, Hkv, E, offset } = c;
      const q = randArray(B * P * H * E, seed++).map((x) => 3 * x);
      const k = randArray(B * Pk * Hkv * E, seed++).map((x) => 3 * x);
      const v = randArray(B * Pk * Hkv * E, seed++);
      const alpha = 1 / Math.sqrt(E);
      const z = await flashOnArrays(q, k, v, c, { window, softCap: cap });
      const s = refScores(q, k, [B, P, Pk, H, Hkv, E], { alpha, cap, window, offset });
      const ref = new Float64Array(B * P * H * E);
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const hk = Math.floor(h / (H / Hkv));
          for (let i = 0; i < P; i++) {
            const row = s.subarray(((b * H + h) * P + i) * Pk, ((b * H + h) * P + i + 1) * Pk);
            const mx = Math.max(...row);
            const w = Array.from(row, (x) => Math.exp(x - mx));
            const sum = w.reduce((a, x) => a + x, 0);
            for (let e = 0; e < E; e++) {
              let acc = 0;
              for (let j = 0; j < Pk; j++) acc += w[j] / sum * v[((b * Pk + j) * Hkv + hk) * E + e];
              ref[((b * P + i) * H + h) * E + e] = acc;
            }
          }
        }
      }
      const err = maxRelErr(z, ref);
      assert.ok(err < 1e-5, `${JSON.stringify(c)} cap ${cap} window ${window}: ${err}`);
    }
  }
}); // deno-fmt-ignore

Deno.test("softCap and softCapGrad equal float64; -inf stays -inf and passes no gradient", async () => {
  const n = 1000, cap = 5;
  const x = randArray(n, seed++).map((v) => 12 * v);
  x[3] = -Infinity;
  x[10] = 1e30;
  const g = randArray(n, seed++);
  using tx = Tensor.from(x, [10, 100]);
  using tg = Tensor.from(g, [10, 100]);
  poisonPool(n * 4);
  using y = ops.softCap(tx, cap);
  const got = await y.toArray();
  const ref = Array.from(x, (v) => v === -Infinity ? v : cap * Math.tanh(v / cap));
  assert.ok(maxRelErr(got, ref) < 1e-6, `softCap ${maxRelErr(got, ref)}`);
  assert.equal(got[3], -Infinity);
  poisonPool(n * 4);
  using gx = ops.softCapGrad(tg, y, cap);
  const gGot = await gx.toArray();
  const gRef = Array.from(g, (v, i) => x[i] === -Infinity ? 0 : v * (1 - Math.tanh(x[i] / cap) ** 2));
  assert.ok(maxRelErr(gGot, gRef) < 1e-5, `softCapGrad ${maxRelErr(gGot, gRef)}`);
  assert.equal(gGot[3], 0);
});
