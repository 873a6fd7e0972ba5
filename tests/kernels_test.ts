// Kernels against float64 CPU references on fresh random inputs, outputs poisoned first.
import assert from "node:assert/strict";
import { initGpu, ShapeError, Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { runtime } from "../src/gpu/runtime.ts";
import { flashOnArrays, maxRelErr, poisonPool, randArray, relErr } from "./_util.ts";

const { f16, fallback, subgroupSize } = await initGpu();

/** GPT-2's tanh-approximated GELU in float64 (activation "gelu_new"). */
const refGelu = (v: number): number =>
  0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** Runs `record` with the cached pipelines whose key starts with `prefix` dropped, and returns
 * what it returned and the "shader:entry" pipelines of that prefix it built (sorted): which
 * kernels a call took. */
function builtEntries<T>(prefix: string, record: () => T): { out: T; entries: string[] } {
  const { pipelines } = runtime();
  for (const k of [...pipelines.keys()]) if (k.startsWith(prefix)) pipelines.delete(k);
  const out = record();
  const entries = [...pipelines.keys()].filter((k) => k.startsWith(prefix))
    .map((k) => k.split(":").slice(0, 2).join(":")).sort();
  return { out, entries };
}
let seed = 1000;

type Variants = typeof ops.tuning.cpuVariants;
/** The GPU kernels and the software-adapter variants (ops.tuning.cpuVariants) of matmul, norms, softmax. */
const VARIANTS = [
  ["GPU kernels", { mode: "never", subgroups: "never" }],
  ["software-adapter variants", { mode: "always", subgroups: "never" }],
] as const satisfies [string, Variants][];
/** The same for the general matmul, plus its subgroup variant (shaders/matmul_sg.wgsl) where the
 * device has 8-lane subgroups. */
const MATMUL_VARIANTS: (readonly [string, Variants])[] = [
  ...VARIANTS,
  ...(subgroupSize === 8
    ? [["software-adapter subgroup variants", { mode: "always", subgroups: "auto" }] as const]
    : []),
];

/** Runs `fn` with ops.tuning.cpuVariants set to `v`, restoring it after. */
async function withVariants(v: Variants, fn: () => Promise<void>): Promise<void> {
  const saved = { ...ops.tuning.cpuVariants };
  Object.assign(ops.tuning.cpuVariants, v);
  try {
    await fn();
  } finally {
    Object.assign(ops.tuning.cpuVariants, saved);
  }
}

/** float64 norm of rows of x: scale, normalised, and normalised * w (+ b). */
function refNorm(
  x: Float32Array,
  rows: number,
  d: number,
  kind: "LN" | "RMS",
  w: Float32Array,
  b: Float32Array | null,
): { scale: Float64Array; normalized: Float64Array; weighted: Float64Array } {
  const scale = new Float64Array(rows), normalized = new Float64Array(rows * d);
  const weighted = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    if (kind === "LN") { for (let i = 0; i < d; i++) mu += x[r * d + i] / d; }
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i] - mu) ** 2 / d;
    scale[r] = Math.sqrt(v + 1e-5);
    for (let i = 0; i < d; i++) {
      normalized[r * d + i] = (x[r * d + i] - mu) / scale[r];
      weighted[r * d + i] = normalized[r * d + i] * w[i] + (b ? b[i] : 0);
    }
  }
  return { scale, normalized, weighted };
} // deno-fmt-ignore

function refMatmul(
  a: Float32Array,
  b: Float32Array,
  bias: Float32Array | null,
  M: number,
  K: number,
  N: number,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const av = a[i * K + k];
      if (av === 0) continue;
      const row = i * N;
      const bk = k * N;
      for (let j = 0; j < N; j++) out[row + j] += av * b[bk + j];
    }
    if (bias) { for (let j = 0; j < N; j++) out[i * N + j] += bias[j]; }
  }
  return out;
} // deno-fmt-ignore

for (const [M, K, N] of [[1, 1, 1], [7, 13, 5], [65, 129, 33], [256, 768, 3072]]) {
  for (const [vname, mode] of MATMUL_VARIANTS) {
  Deno.test(`matmul ${M}x${K}x${N} with bias matches float64 (${vname})`, () => withVariants(mode, async () => {
    const a = randArray(M * K, seed++), b = randArray(K * N, seed++), bias = randArray(N, seed++);
    using ta = Tensor.from(a, [M, K]);
    using tb = Tensor.from(b, [K, N]);
    using tbias = Tensor.from(bias, [N]);
    poisonPool(M * N * 4);
    using out = ops.matmul(ta, tb, tbias);
    assert.deepEqual(out.shape, [M, N]);
    const got = await out.toArray();
    const err = relErr(got, refMatmul(a, b, bias, M, K, N));
    assert.ok(err < 1e-5, `rel err ${err}`);
  }));
  }
}

for (const [vname, mode] of MATMUL_VARIANTS) {
  Deno.test(`bmm (batched) matches float64 per batch (${vname})`, () =>
    withVariants(mode, async () => {
      const [B, M, K, N] = [3, 17, 40, 23];
      const a = randArray(B * M * K, seed++), b = randArray(B * K * N, seed++);
      using ta = Tensor.from(a, [B, M, K]);
      using tb = Tensor.from(b, [B, K, N]);
      poisonPool(B * M * N * 4);
      using out = ops.bmm(ta, tb);
      const got = await out.toArray();
      for (let z = 0; z < B; z++) {
        const ref = refMatmul(a.subarray(z * M * K), b.subarray(z * K * N), null, M, K, N);
        const err = relErr(got.subarray(z * M * N, (z + 1) * M * N), ref);
        assert.ok(err < 1e-5, `batch ${z}: rel err ${err}`);
      }
    }));
}

for (const [vname, mode] of MATMUL_VARIANTS) {
  Deno.test(`gemm strided: per-head q·kᵀ in [batch, pos, head, d] layout with scale and causal mask, grouped-query heads too (${vname})`, () =>
    withVariants(mode, async () => {
      const [Bt, P, H, D] = [2, 9, 3, 8];
      // g query heads share one key head (bGroup; 1: ordinary attention).
      for (const g of [1, 3]) {
        const Hk = H / g;
        const q = randArray(Bt * P * H * D, seed++), k = randArray(Bt * P * Hk * D, seed++);
        using tq = Tensor.from(q, [Bt, P, H, D]);
        using tk = Tensor.from(k, [Bt, P, Hk, D]);
        using out = Tensor.from(new Float32Array(Bt * H * P * P).fill(NaN), [Bt, H, P, P]);
        const alpha = 0.37;
        ops.gemm(
          { t: out, b1: H * P * P, b2: P * P, row: P, col: 1 },
          { t: tq, b1: P * H * D, b2: D, row: H * D, col: 1 },
          { t: tk, b1: P * Hk * D, b2: D, row: 1, col: Hk * D },
          { M: P, N: P, K: D, nb1: Bt, nb2: H, alpha, causal: true, bGroup: g },
        );
        const got = await out.toArray();
        const ref = new Float64Array(got.length);
        for (let b = 0; b < Bt; b++) {
          for (let h = 0; h < H; h++) {
            const hk = Math.floor(h / g);
            for (let i = 0; i < P; i++) {
              for (let j = 0; j < P; j++) {
                let s = 0;
                for (let d = 0; d < D; d++) {
                  s += q[((b * P + i) * H + h) * D + d] * k[((b * P + j) * Hk + hk) * D + d];
                }
                ref[((b * H + h) * P + i) * P + j] = j > i ? -Infinity : s * alpha;
              }
            }
          }
        }
        assert.ok(maxRelErr(got, ref) < 1e-5, `group ${g}: max rel err ${maxRelErr(got, ref)}`);
      }
    }));
}

for (const [vname, mode] of MATMUL_VARIANTS) {
  Deno.test(`gemm accumulate adds into C, per-batch bias (${vname})`, () =>
    withVariants(mode, async () => {
      const [B2, M, K, N] = [2, 5, 7, 6];
      const a = randArray(B2 * M * K, seed++), b = randArray(B2 * K * N, seed++);
      const c0 = randArray(B2 * M * N, seed++), bias = randArray(B2 * N, seed++);
      using ta = Tensor.from(a, [B2, M, K]);
      using tb = Tensor.from(b, [B2, K, N]);
      using tc = Tensor.from(c0, [B2, M, N]);
      using tbias = Tensor.from(bias, [B2, N]);
      ops.gemm(
        { t: tc, b2: M * N, row: N, col: 1 },
        { t: ta, b2: M * K, row: K, col: 1 },
        { t: tb, b2: K * N, row: N, col: 1 },
        { M, N, K, nb2: B2, bias: tbias, biasPerBatch: true, accumulate: true },
      );
      const got = await tc.toArray();
      const ref = new Float64Array(got.length);
      for (let z = 0; z < B2; z++) {
        const r = refMatmul(
          a.subarray(z * M * K),
          b.subarray(z * K * N),
          bias.subarray(z * N),
          M,
          K,
          N,
        );
        for (let i = 0; i < M * N; i++) ref[z * M * N + i] = r[i] + c0[z * M * N + i];
      }
      assert.ok(relErr(got, ref) < 1e-5);
    }));
}

Deno.test("elementwise add/sub/mul (same shape and broadcast suffix), scale, affine; clone of any dtype", async () => {
  const n = 7 * 13 * 5;
  const a = randArray(n, seed++), b = randArray(n, seed++), c = randArray(5, seed++);
  using ta = Tensor.from(a, [7, 13, 5]);
  using tb = Tensor.from(b, [7, 13, 5]);
  using tc = Tensor.from(c, [5]);
  const cases: [string, () => Tensor, (i: number) => number][] = [
    ["add", () => ta.add(tb), (i) => a[i] + b[i]],
    ["sub", () => ta.sub(tb), (i) => a[i] - b[i]],
    ["mul", () => ta.mul(tb), (i) => a[i] * b[i]],
    ["add broadcast", () => ta.add(tc), (i) => a[i] + c[i % 5]],
    ["mul broadcast", () => ta.mul(tc), (i) => a[i] * c[i % 5]],
    ["scale", () => ta.scale(-2.5), (i) => a[i] * -2.5],
    ["add scalar", () => ta.add(0.75), (i) => a[i] + 0.75],
    ["sub scalar", () => ta.sub(0.75), (i) => a[i] - 0.75],
    ["clone", () => ta.clone(), (i) => a[i]],
  ];
  for (const [name, f, ref] of cases) {
    poisonPool(n * 4);
    using out = f();
    const got = await out.toArray();
    const r = Float64Array.from({ length: n }, (_, i) => ref(i));
    assert.ok(relErr(got, r) < 1e-6, `${name}: ${relErr(got, r)}`);
  }
  assert.throws(() => ta.add(Tensor.from([1, 2], [2])), /do not broadcast/);
  // clone copies any dtype, odd f16 lengths included, into a buffer of its own.
  for (const dtype of ["int32", "float32", ...(f16 ? ["float16" as const] : [])] as const) {
    const vals = Array.from({ length: 7 }, (_, i) => (i * 37) % 11 - 5);
    using t = Tensor.from(vals, [7], dtype);
    poisonPool(28);
    using c = t.clone();
    assert.notEqual(c.buffer, t.buffer);
    assert.equal(c.dtype, dtype);
    assert.deepEqual(Array.from(await c.toArray()), vals, dtype);
  }
});

Deno.test("fillAt sets exactly the chosen indices along a dim", async () => {
  const shape = [3, 4, 10];
  const a = randArray(120, seed++);
  using t = Tensor.from(a, shape);
  poisonPool(120 * 4);
  using out = t.fillAt(-1, [3, 7, -1], 0.5);
  const got = await out.toArray();
  for (let i = 0; i < 120; i++) {
    const j = i % 10;
    assert.equal(got[i], j === 3 || j === 7 || j === 9 ? 0.5 : a[i]);
  }
  using mid = t.fillAt(1, [0], -1);
  const g2 = await mid.toArray();
  for (let i = 0; i < 120; i++) assert.equal(g2[i], Math.floor(i / 10) % 4 === 0 ? -1 : a[i]);
  assert.throws(() => t.fillAt(2, [10], 0), /out of range/);
});

for (const [vname, mode] of VARIANTS) {
  Deno.test(`norm reductions: LayerNorm / RMSNorm scale and apply match float64 (${vname})`, () =>
    withVariants(mode, async () => {
      for (const [rows, d] of [[1, 1], [7, 13], [65, 129], [3, 768]]) {
        const x = randArray(rows * d, seed++), w = randArray(d, seed++), b = randArray(d, seed++);
        using tx = Tensor.from(x, [rows, d]);
        using tw = Tensor.from(w, [d]);
        using tb = Tensor.from(b, [d]);
        for (const kind of ["LN", "RMS"] as const) {
          poisonPool(rows * 4);
          using sc = ops.normScale(tx, kind, 1e-5);
          poisonPool(rows * d * 4);
          using y = ops.normApply(tx, sc, kind, tw, kind === "LN" ? tb : undefined);
          const [gs, gy] = [await sc.toArray(), await y.toArray()];
          const { scale: rs, weighted: ry } = refNorm(
            x,
            rows,
            d,
            kind,
            w,
            kind === "LN" ? b : null,
          );
          assert.ok(relErr(gs, rs) < 1e-5, `${kind} ${rows}x${d} scale ${relErr(gs, rs)}`);
          assert.ok(relErr(gy, ry) < 1e-5, `${kind} ${rows}x${d} apply ${relErr(gy, ry)}`);
        }
      }
    }));
}

for (const [vname, mode] of VARIANTS) {
  Deno.test(`fused norm (scale, normalised and weighted in one dispatch) matches float64 (${vname})`, () =>
    withVariants(mode, async () => {
      for (const [rows, d] of [[1, 1], [7, 13], [65, 129], [3, 768]]) {
        const x = randArray(rows * d, seed++), w = randArray(d, seed++), b = randArray(d, seed++);
        using tx = Tensor.from(x, [rows, d]);
        using tw = Tensor.from(w, [d]);
        using tb = Tensor.from(b, [d]);
        for (
          const [kind, withW, withB] of [["LN", true, true], ["RMS", true, false], [
            "LN",
            false,
            false,
          ]] as const
        ) {
          poisonPool(rows * 4);
          poisonPool(rows * d * 4, 4);
          const [sc, nz, y] = ops.normFused(
            tx,
            kind,
            1e-5,
            withW ? tw : undefined,
            withB ? tb : undefined,
          );
          const ref = refNorm(x, rows, d, kind, w, withB ? b : null);
          const [rs, rn, ry] = [ref.scale, ref.normalized, ref.weighted];
          const what = `${kind} ${rows}x${d}`;
          assert.ok(relErr(await sc.toArray(), rs) < 1e-5, `${what} scale`);
          assert.ok(relErr(await nz.toArray(), rn) < 1e-5, `${what} normalized`);
          if (withW) assert.ok(relErr(await y!.toArray(), ry) < 1e-5, `${what} weighted`);
          else assert.equal(y, null);
          for (const t of [sc, nz, y]) t?.dispose();
        }
      }
    }));
} // deno-fmt-ignore

for (const [vname, mode] of VARIANTS) {
  Deno.test(`softmax with -inf entries, activations, loss per token and mean (${vname})`, () =>
    withVariants(mode, async () => {
      const [rows, n] = [9, 37];
      const x = randArray(rows * n, seed++).map((v, i) => (i % 5 === 4 ? -Infinity : v * 4));
      using tx = Tensor.from(x, [rows, n]);
      poisonPool(rows * n * 4);
      using sm = ops.softmax(tx);
      const got = await sm.toArray();
      const ref = new Float64Array(rows * n);
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.subarray(r * n, (r + 1) * n));
        const mx = Math.max(...row);
        const s = row.reduce((acc, v) => acc + Math.exp(v - mx), 0);
        row.forEach((v, i) => (ref[r * n + i] = Math.exp(v - mx) / s));
      }
      assert.ok(relErr(got, ref) < 1e-5);

      const a = randArray(1000, seed++).map((v) => v * 6);
      using ta = Tensor.from(a, [1000]);
      const acts: Record<string, (v: number) => number> = {
        gelu_new: refGelu,
        gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
        relu: (v) => Math.max(v, 0),
        silu: (v) => v / (1 + Math.exp(-v)),
      };
      for (const [name, f] of Object.entries(acts)) {
        poisonPool(4000);
        using y = ops.activation(ta, name);
        const g = await y.toArray();
        const e = relErr(g, Float64Array.from(a, f));
        assert.ok(e < 1e-5, `${name} ${e}`);
      }

      const [B, P, V] = [2, 5, 33];
      const logits = randArray(B * P * V, seed++).map((v) => v * 5);
      const toks = [3, 0, 32, 7, 1, 4, 4, 9, 31, 2];
      using tl = Tensor.from(logits, [B, P, V]);
      using tt = Tensor.from(toks, [B, P], "int32");
      poisonPool(B * (P - 1) * 4);
      using lpt = ops.lossPerToken(tl, tt);
      using mean = ops.meanAll(lpt);
      const [gl, gm] = [await lpt.toArray(), await mean.toArray()];
      const rl = new Float64Array(B * (P - 1));
      for (let b = 0; b < B; b++) {
        for (let p = 0; p < P - 1; p++) {
          const row = Array.from(logits.subarray((b * P + p) * V, (b * P + p + 1) * V));
          const mx = Math.max(...row);
          const lse = Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0)) + mx;
          rl[b * (P - 1) + p] = lse - row[toks[b * P + p + 1]];
        }
      }
      assert.ok(relErr(gl, rl) < 1e-5);
      assert.ok(Math.abs(gm[0] - rl.reduce((s, v) => s + v, 0) / rl.length) < 1e-5);
    }));
}

/** erf by its series / continued fraction, to float64 accuracy for the test's range. */
function erf(x: number): number {
  const t = Math.abs(x);
  let sum = t, term = t;
  for (let n = 1; n < 200; n++) {
    term *= -t * t / n;
    sum += term / (2 * n + 1);
    if (Math.abs(term) < 1e-17) break;
  }
  return Math.sign(x) * Math.min(1, (2 / Math.sqrt(Math.PI)) * sum);
}

/** Dense-layer kernel choices; `variants` sets ops.tuning.cpuVariants.mode (which matrix-vector kernel),
 * `subgroups` ops.tuning.cpuVariants.subgroups (which register-blocked kernels). */
type LinearMode = Partial<typeof ops.tuning.linear> & {
  variants?: "never" | "always";
  subgroups?: "auto" | "never";
};
/** 128x128 tiles whatever the shape (no matrix-vector, 64x64 or register-blocked kernel). */
const TILE128 = {
  matvecMaxRows: 0,
  smallTileMaxRows: 0,
  bigTileMinTiles: 0,
  cpuKernel: "never",
} as const;
const LINEAR_MODES = {
  matvec: { matvecMaxRows: 1e9, smallTileMaxRows: 1e9, cpuKernel: "never", variants: "never" },
  matvecCpu: {
    matvecMaxRows: 1e9,
    smallTileMaxRows: 1e9,
    cpuKernel: "never",
    variants: "always",
    matvecTexture: "never",
  },
  // matvec_tex: the software-adapter matrix-vector kernel on a frozen weight's texture copy.
  matvecTex: {
    matvecMaxRows: 1e9,
    smallTileMaxRows: 1e9,
    cpuKernel: "never",
    variants: "always",
    matvecTexture: "auto",
  },
  tile64: { matvecMaxRows: 0, smallTileMaxRows: 1e9, cpuKernel: "never" },
  // K step 8 (16, the default, is tile128bk16 and the other tiled modes).
  tile128: { ...TILE128, bk: 8 },
  tile128bk16: { ...TILE128, bk: 16 },
  // Split-K: 3 slices of 128x128 tiles, 2 of 64x64, and as many as "auto" picks.
  splitK3: { ...TILE128, splitK: 3 },
  splitK64: { matvecMaxRows: 0, smallTileMaxRows: 1e9, cpuKernel: "never", splitK: 2 },
  splitAuto: {
    matvecMaxRows: 0,
    smallTileMaxRows: 0,
    cpuKernel: "never",
    splitK: "auto",
    splitKMinDepth: 256,
  },
  never: { cpuKernel: "never" },
  cpu: { cpuKernel: "large", subgroups: "never" },
  cpuSmall: { cpuKernel: "small", subgroups: "never" },
  // The linear_sg kernels where the device has 8-lane subgroups (see the test that checks it).
  sg: { cpuKernel: "large", subgroups: "auto" },
  sgSmall: { cpuKernel: "small", subgroups: "auto" },
} as const satisfies Record<string, LinearMode>;

/** Records `fn`'s kernels with the dense-layer choices of `mode`, then restores the defaults. */
function withLinear<T>(mode: LinearMode, fn: () => T): T {
  const saved = { ...ops.tuning.linear }, savedVariants = { ...ops.tuning.cpuVariants };
  const { variants, subgroups, ...cfg } = mode;
  Object.assign(ops.tuning.linear, cfg);
  if (variants) ops.tuning.cpuVariants.mode = variants;
  if (subgroups) ops.tuning.cpuVariants.subgroups = subgroups;
  try {
    return fn();
  } finally {
    Object.assign(ops.tuning.linear, saved);
    Object.assign(ops.tuning.cpuVariants, savedVariants);
  }
}
const LINEAR_CASES = [
  [1, 4, 4, 4, 8, "matvec"],
  [3, 772, 260, 260, 8, "matvec"],
  [7, 12, 8, 8, 8, "tile64"],
  [65, 132, 33, 36, 8, "tile64"],
  [130, 68, 200, 200, 16, "tile128"],
  [256, 768, 3072, 3072, 8, "tile128"],
  [129, 772, 260, 260, 16, "tile128"],
  [1, 68, 100, 100, 8, "tile128"],
  [70, 64, 36, 36, 8, "matvec"],
  [1, 4, 4, 4, 8, "cpu"],
  [130, 68, 200, 200, 8, "cpu"],
  [256, 768, 3072, 3072, 8, "cpu"],
  [129, 772, 260, 260, 8, "cpu"],
  [37, 12, 132, 132, 8, "cpu"],
  [1, 4, 4, 4, 8, "cpuSmall"],
  [130, 68, 200, 200, 8, "cpuSmall"],
  [33, 772, 36, 36, 8, "cpuSmall"],
  [65, 132, 33, 36, 8, "cpu"],
  [7, 12, 5, 8, 8, "cpuSmall"],
  [3, 8, 2, 4, 8, "cpuSmall"],
  [1, 4, 4, 4, 8, "sg"],
  [130, 68, 200, 200, 8, "sg"],
  [256, 768, 3072, 3072, 8, "sg"],
  [129, 772, 260, 260, 8, "sg"],
  [37, 12, 132, 132, 8, "sg"],
  [65, 132, 33, 36, 8, "sg"],
  [1, 4, 4, 4, 8, "sgSmall"],
  [130, 68, 200, 200, 8, "sgSmall"],
  [33, 772, 36, 36, 8, "sgSmall"],
  [17, 12, 5, 8, 8, "sgSmall"],
  [3, 8, 2, 4, 8, "sgSmall"],
  [1, 4, 4, 4, 8, "matvecCpu"],
  [3, 772, 260, 260, 8, "matvecCpu"],
  [2, 132, 33, 36, 8, "matvecCpu"],
  [1, 68, 1100, 1100, 8, "matvecCpu"],
  [1, 4, 4, 4, 8, "matvecTex"],
  [3, 772, 260, 260, 8, "matvecTex"],
  [2, 132, 33, 36, 8, "matvecTex"],
  [1, 68, 1100, 1100, 8, "matvecTex"],
  [4, 128, 5003, 5004, 8, "matvecTex"],
  [130, 68, 200, 200, 8, "splitK3"],
  [129, 772, 260, 260, 16, "splitK3"],
  [65, 132, 33, 36, 8, "splitK64"],
  [300, 772, 260, 260, 8, "splitAuto"],
] as const; // deno-fmt-ignore
for (const [M, K, N, LDB, BK, mode] of LINEAR_CASES) {
  Deno.test(`linear (${mode}, BK ${BK}) ${M}x${K}x${N} (LDB ${LDB}) with bias, activation and residual epilogues matches float64`, async () => {
    const a = randArray(M * K, seed++), w = randArray(K * LDB, seed++), bias = randArray(N, seed++);
    const resid = randArray(M * N, seed++);
    using ta = Tensor.from(a, [M, K]);
    using tw = Tensor.from(w, [K, LDB]);
    using tb = Tensor.from(bias, [N]);
    using tr = Tensor.from(resid, [M, N]);
    if (mode === "matvecTex") ops.freezeWeight(tw); // read from its texture copy
    // Reference on the first N columns of the (padded) weight.
    const wN = new Float32Array(K * N);
    for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) wN[k * N + j] = w[k * LDB + j];
    const ref = refMatmul(a, wN, bias, M, K, N);
    poisonPool(M * N * 4, 4);
    const { out: [[y1, post], [y2, sum], [y3]], entries } = builtEntries("linear:matvec", () =>
      withLinear({ ...LINEAR_MODES[mode], bk: BK }, () => [
        ops.linear(ta, tw, tb, { act: "gelu_new" }, N),
        ops.linear(ta, tw, tb, { resid: tr }, N),
        ops.linear(ta, tw, tb, {}, N),
      ])
    );
    if (mode === "matvecTex") {
      assert.deepEqual([...new Set(entries)], ["linear:matvec_pack", "linear:matvec_tex"], "the texture kernel ran");
    }
    for (const y of [y1, y2, y3]) {
      assert.deepEqual(y.shape, [M, N]);
      assert.ok(relErr(await y.toArray(), ref) < 1e-5, `linear ${relErr(await y.toArray(), ref)}`);
    }
    assert.ok(relErr(await post!.toArray(), ref.map(refGelu)) < 1e-5, "act epilogue");
    assert.ok(
      relErr(await sum!.toArray(), ref.map((v, i) => v + resid[i])) < 1e-5,
      "residual epilogue",
    );
    for (const t of [y1, y2, y3, post!, sum!]) t.dispose();
  });
}

Deno.test("matvec_tex: a frozen weight's texture copy is packed once, read by the matrix-vector products of a few rows (gates and q/k/v split too), and freed with the weight; unfrozen or too deep weights, or copies past the byte budget, take matvec_cpu", async () => {
  const [M, K, N] = [3, 132, 1028];
  const a = randArray(M * K, seed++), w = randArray(K * N, seed++), bias = randArray(N, seed++);
  const thr = randArray(N, seed++).map((v) => Math.abs(v) * 2);
  using ta = Tensor.from(a, [M, K]);
  using tb = Tensor.from(bias, [N]);
  using tt = Tensor.from(thr, [N]);
  const ref = refMatmul(a, w, bias, M, K, N);
  const stats = runtime().stats;
  const before = stats.dataBytes;
  const tw = ops.freezeWeight(Tensor.from(w, [K, N]));
  const withWeight = stats.dataBytes;
  const mode = LINEAR_MODES.matvecTex;
  poisonPool(M * N * 4, 4);
  const first = builtEntries("linear:", () => withLinear(mode, () => ops.linear(ta, tw, tb)));
  assert.deepEqual(first.entries, ["linear:matvec_pack", "linear:matvec_tex"]);
  assert.ok(stats.dataBytes > withWeight, "the texture copy is counted with the weights");
  assert.ok(relErr(await first.out[0].toArray(), ref) < 1e-5, "first product");
  // The copy is kept: the next product is one dispatch, no second pack.
  const d0 = stats.dispatches;
  const [y2, d2] = withLinear(
    mode,
    () => ops.linear(ta, tw, tb, { act: "relu", gate: { kind: "threshold", t: tt } }),
  );
  assert.equal(stats.dispatches - d0, 1);
  assert.ok(relErr(await y2.toArray(), ref) < 1e-5, "second product");
  const jump = ref.map((v, j) => (v > thr[j % N] ? Math.max(v, 0) : 0));
  assert.ok(relErr(await d2!.toArray(), jump) < 1e-5, "JumpReLU epilogue");
  // q/k/v from one frozen joint weight.
  const [q, k, v] = withLinear(mode, () => ops.linearSplit(ta, tw, tb, [256, 512, 260]));
  const cols = (lo: number, hi: number) =>
    Array.from(
      { length: M * (hi - lo) },
      (_, i) => ref[Math.floor(i / (hi - lo)) * N + lo + (i % (hi - lo))],
    );
  assert.ok(relErr(await q.toArray(), cols(0, 256)) < 1e-5, "q");
  assert.ok(relErr(await k.toArray(), cols(256, 768)) < 1e-5, "k");
  assert.ok(relErr(await v.toArray(), cols(768, 1028)) < 1e-5, "v");
  tw.dispose();
  assert.equal(stats.dataBytes, before, "the weight and its texture copy are freed together");
  // Unfrozen, or K / 4 wider than the texture limit: the storage-buffer kernel.
  const deepK = 4 * (runtime().gpu.device.limits.maxTextureDimension2D + 1);
  const xd = randArray(deepK, seed++), wd = randArray(deepK * 8, seed++);
  using txd = Tensor.from(xd, [1, deepK]);
  using twd = ops.freezeWeight(Tensor.from(wd, [deepK, 8]));
  using twu = Tensor.from(w, [K, N]);
  const deep = builtEntries("linear:", () => withLinear(mode, () => ops.linear(txd, twd)));
  const plain = builtEntries("linear:", () => withLinear(mode, () => ops.linear(ta, twu, tb)));
  // Frozen, but the copies' byte budget is spent.
  using twb = ops.freezeWeight(Tensor.from(w, [K, N]));
  const over = builtEntries(
    "linear:",
    () => withLinear({ ...mode, matvecTextureMaxBytes: 1000 }, () => ops.linear(ta, twb, tb)),
  );
  assert.deepEqual(deep.entries, ["linear:matvec_cpu"]);
  assert.deepEqual(plain.entries, ["linear:matvec_cpu"]);
  assert.deepEqual(over.entries, ["linear:matvec_cpu"]);
  assert.ok(relErr(await over.out[0].toArray(), ref) < 1e-5);
  assert.ok(
    relErr(await deep.out[0].toArray(), refMatmul(xd, wd, new Float32Array(8), 1, deepK, 8)) < 1e-5,
  );
  assert.ok(relErr(await plain.out[0].toArray(), ref) < 1e-5);
  for (const t of [first.out[0], y2, d2!, q, k, v, deep.out[0], plain.out[0], over.out[0]]) {
    t.dispose();
  }
}); // deno-fmt-ignore

Deno.test("split-K: the SAE encode's gates (JumpReLU threshold, gated) apply to the summed slices, and auto splits only outputs of few tiles", async () => {
  const [M, K, N] = [130, 772, 72];
  const a = randArray(M * K, seed++), w = randArray(K * N, seed++), bias = randArray(N, seed++);
  const thr = randArray(N, seed++).map((v) => Math.abs(v) * 2), gate = randArray(M * N, seed++);
  using ta = Tensor.from(a, [M, K]);
  using tw = Tensor.from(w, [K, N]);
  using tb = Tensor.from(bias, [N]);
  using tt = Tensor.from(thr, [N]);
  using tg = Tensor.from(gate, [M, N]);
  const ref = refMatmul(a, w, bias, M, K, N);
  for (const mode of ["splitK3", "splitK64"] as const) {
    poisonPool(M * N * 4, 4);
    const [[y1, d1], [y2, d2]] = withLinear(LINEAR_MODES[mode], () => [
      ops.linear(ta, tw, tb, { act: "relu", gate: { kind: "threshold", t: tt } }),
      ops.linear(ta, tw, tb, { act: "relu", gate: { kind: "gate", t: tg } }),
    ]);
    for (const y of [y1, y2]) assert.ok(relErr(await y.toArray(), ref) < 1e-5, `${mode} pre`);
    const jump = ref.map((v, j) => (v > thr[j % N] ? Math.max(v, 0) : 0));
    const gated = ref.map((v, i) => (gate[i] > 0 ? Math.max(v, 0) : 0));
    assert.ok(relErr(await d1!.toArray(), jump) < 1e-5, `${mode} JumpReLU`);
    assert.ok(relErr(await d2!.toArray(), gated) < 1e-5, `${mode} gated`);
    for (const t of [y1, d1!, y2, d2!]) t.dispose();
  }
  // "auto" with slices of >= 256 k: [130, 72] is 2 tiles of 128x128, so it is split (3 slices,
  // one dispatch of partials and one sum); with bigTileMinTiles 2 it has enough tiles to run
  // unsplit.
  const SPLIT = ["linear:main", "linear:splitk_sum"], UNSPLIT = ["linear:main"];
  for (const [minTiles, want] of [[160, SPLIT], [2, UNSPLIT]] as const) {
    poisonPool(M * N * 4);
    const { out: [y], entries } = builtEntries(
      "linear:",
      () =>
        withLinear(
          { ...LINEAR_MODES.splitAuto, bigTileMinTiles: minTiles },
          () => ops.linear(ta, tw, tb),
        ),
    );
    assert.deepEqual(entries, [...want], `bigTileMinTiles ${minTiles}`);
    assert.ok(relErr(await y.toArray(), ref) < 1e-5, `auto, bigTileMinTiles ${minTiles}`);
    y.dispose();
  }
}); // deno-fmt-ignore

Deno.test({
  name:
    "a software adapter with 8-lane subgroups gets them, and dense layers and the general matmul take the subgroup kernels by default",
  // lavapipe on this project's machines (256-bit SIMD): where this fails, the "sg" cases above
  // quietly ran the linear_cpu kernels instead. (A GPU adapter gets no subgroups: nothing to check.)
  ignore: !fallback,
}, async () => {
  assert.equal(subgroupSize, 8, "lavapipe's subgroups were not enabled");
  const [M, K, N] = [40, 64, 96];
  const a = randArray(M * K, seed++), w = randArray(K * N, seed++);
  using ta = Tensor.from(a, [M, K]);
  using tw = Tensor.from(w, [K, N]);
  // Every dense shader ("linear", "linear_cpu", "linear_sg"): only the subgroup one may be built.
  poisonPool(M * N * 4);
  const dense = builtEntries("linear", () => ops.linear(ta, tw)[0]);
  assert.deepEqual(dense.entries, ["linear_sg:small"]);
  assert.ok(relErr(await dense.out.toArray(), refMatmul(a, w, null, M, K, N)) < 1e-5);
  dense.out.dispose();
  // The general matmul (attention, odd shapes) likewise.
  poisonPool(M * N * 4);
  const general = builtEntries("matmul", () => ops.matmul(ta, tw));
  assert.deepEqual(general.entries, ["matmul_sg:main_sg"]);
  assert.ok(relErr(await general.out.toArray(), refMatmul(a, w, null, M, K, N)) < 1e-5);
  general.out.dispose();
});

Deno.test("by default the tiled GPU kernels split sums over K of outputs with few tiles into slices of at least 256", async () => {
  // [300, 40] is 3 tiles of 128x128: K 772 is split in three slices of >= 256 (splitKMinDepth),
  // K 508 is not (64x64 tiles instead, see bigTileMinTiles).
  const SPLIT = ["linear:main", "linear:splitk_sum"], TILE64 = ["linear:main64"];
  for (const [K, want] of [[772, SPLIT], [508, TILE64]] as const) {
    const [M, N] = [300, 40];
    const a = randArray(M * K, seed++), w = randArray(K * N, seed++), bias = randArray(N, seed++);
    using ta = Tensor.from(a, [M, K]);
    using tw = Tensor.from(w, [K, N]);
    using tb = Tensor.from(bias, [N]);
    poisonPool(M * N * 4, 3);
    const { out: [y, d], entries } = builtEntries(
      "linear:",
      () => withLinear(LINEAR_MODES.never, () => ops.linear(ta, tw, tb, { act: "gelu_new" })),
    );
    assert.deepEqual(entries, [...want], `K ${K}`);
    const ref = refMatmul(a, w, bias, M, K, N);
    assert.ok(relErr(await y.toArray(), ref) < 1e-5, `K ${K}`);
    assert.ok(relErr(await d!.toArray(), ref.map(refGelu)) < 1e-5, `K ${K} act`);
    y.dispose();
    d!.dispose();
  }
}); // deno-fmt-ignore

Deno.test("the tiled GPU kernel takes 128x128 tiles only for outputs that fill bigTileMinTiles of them", async () => {
  // Fewer tiles leave a large GPU's compute units idle (see ops.tuning.linear): [300, 768] is 18
  // such tiles, [1024, 2560] 160.
  for (const [M, N, entry] of [[300, 768, "linear:main64"], [1024, 2560, "linear:main"]] as const) {
    const K = 8;
    const a = randArray(M * K, seed++), w = randArray(K * N, seed++);
    using ta = Tensor.from(a, [M, K]);
    using tw = Tensor.from(w, [K, N]);
    poisonPool(M * N * 4);
    const { out: [y], entries } = builtEntries("linear:", () =>
      withLinear(LINEAR_MODES.never, () => ops.linear(ta, tw)));
    assert.deepEqual(entries, [entry], `[${M}, ${N}]`);
    assert.ok(relErr(await y.toArray(), refMatmul(a, w, null, M, K, N)) < 1e-5);
    y.dispose();
  }
});

Deno.test("linear falls back to the general kernel when K is not a multiple of 4, epilogues included", async () => {
  const [M, K, N] = [9, 13, 7];
  const a = randArray(M * K, seed++),
    w = randArray(K * N, seed++),
    bias = randArray(N, seed++),
    resid = randArray(M * N, seed++);
  using ta = Tensor.from(a, [M, K]);
  using tw = Tensor.from(w, [K, N]);
  using tb = Tensor.from(bias, [N]);
  using tr = Tensor.from(resid, [M, N]);
  const ref = refMatmul(a, w, bias, M, K, N);
  const [y1, relu] = ops.linear(ta, tw, tb, { act: "relu" });
  const [y2, sum] = ops.linear(ta, tw, tb, { resid: tr });
  assert.ok(relErr(await y1.toArray(), ref) < 1e-5 && relErr(await y2.toArray(), ref) < 1e-5);
  assert.ok(relErr(await relu!.toArray(), ref.map((v) => Math.max(v, 0))) < 1e-5);
  assert.ok(relErr(await sum!.toArray(), ref.map((v, i) => v + resid[i])) < 1e-5);
  for (const t of [y1, y2, relu!, sum!]) t.dispose();
}); // deno-fmt-ignore

Deno.test({ name: "f16 weight storage: dense layers on f16 weights equal float64 on the f16-rounded weights", ignore: !f16 }, async () => {
  const [M, K, N] = [70, 132, 196];
  const a = randArray(M * K, seed++), w = randArray(K * N, seed++), bias = randArray(N, seed++);
  const w16 = Float32Array.from(Float16Array.from(w)); // what the GPU holds
  using ta = Tensor.from(a, [M, K]);
  using tw = Tensor.from(w, [K, N], "float16");
  using tb = Tensor.from(bias, [N]);
  const ref = refMatmul(a, w16, bias, M, K, N);
  ops.freezeWeight(tw); // for matvecTex (the other modes do not read texture copies)
  for (const mode of ["matvec", "matvecCpu", "matvecTex", "tile64", "tile128", "cpu", "cpuSmall", "sg", "sgSmall", "splitK3"] as const) {
    poisonPool(M * N * 4);
    const [y] = withLinear(LINEAR_MODES[mode], () => ops.linear(ta, tw, tb));
    assert.ok(relErr(await y.toArray(), ref) < 1e-5, `${mode}: f32 accumulation over f16 weights`);
    y.dispose();
  }
  // Against the f32 weights the difference is f16 rounding, not more.
  const e = relErr(ref, refMatmul(a, w, bias, M, K, N));
  assert.ok(e > 0 && e < 2e-3, `f16 rounding ${e}`);
});

Deno.test("embedding gathers: token rows (f32 and f16 tables, ids clamped to the vocab) and positions with an offset", async () => {
  const [V, D, B, P] = [37, 70, 2, 5];
  const table = randArray(V * D, seed++);
  const ids = Int32Array.from({ length: B * P }, (_, i) => (i * 11) % V);
  ids[3] = V + 5; // out of range: the kernel clamps to the last row rather than reading past it
  using tid = Tensor.from(ids, [B, P], "int32");
  assert.throws(
    () => ops.embedTokens(tid, tid),
    (e) => e instanceof ShapeError && /int32 \[2, 5\]/.test(e.message),
  );
  for (const dtype of f16 ? ["float32", "float16"] as const : ["float32"] as const) {
    const held = dtype === "float16" ? Float32Array.from(Float16Array.from(table)) : table;
    using tt = Tensor.from(table, [V, D], dtype);
    poisonPool(B * P * D * 4);
    using e = ops.embedTokens(tt, tid);
    assert.deepEqual(e.shape, [B, P, D]);
    const got = await e.toArray();
    for (let t = 0; t < B * P; t++) {
      const row = Math.min(ids[t], V - 1);
      assert.deepEqual(
        got.subarray(t * D, (t + 1) * D),
        held.subarray(row * D, (row + 1) * D),
        `${dtype} token ${t}`,
      );
    }
    poisonPool(B * P * D * 4);
    using p = ops.embedPositions(tt, B, P, 3);
    const pos = await p.toArray();
    for (let t = 0; t < B * P; t++) {
      const row = (t % P) + 3;
      assert.deepEqual(
        pos.subarray(t * D, (t + 1) * D),
        held.subarray(row * D, (row + 1) * D),
        `${dtype} position ${t}`,
      );
    }
  }
}); // deno-fmt-ignore

for (const [vname, mode] of VARIANTS) {
  Deno.test(`backward row kernels: softmax, norm apply, norm scale and loss gradients match float64 (${vname})`, () => withVariants(mode, async () => {
    const [rows, n] = [70, 37];
    const x = randArray(rows * n, seed++), g = randArray(rows * n, seed++);
    // softmax: out = p * (g - sum(g * p)) for a pattern p (rows of a softmax).
    const p = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) {
      const e = Array.from(x.subarray(r * n, (r + 1) * n), (v) => Math.exp(v));
      const s = e.reduce((a, v) => a + v, 0);
      e.forEach((v, i) => (p[r * n + i] = v / s));
    }
    using tp = Tensor.from(p, [rows, n]);
    using tg = Tensor.from(g, [rows, n]);
    using tx = Tensor.from(x, [rows, n]);
    poisonPool(rows * n * 4);
    using gs = ops.softmaxGrad(tg, tp);
    const refS = new Float64Array(rows * n);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += g[r * n + i] * p[r * n + i];
      for (let i = 0; i < n; i++) refS[r * n + i] = p[r * n + i] * (g[r * n + i] - s);
    }
    assert.ok(maxRelErr(await gs.toArray(), refS) < 1e-5, "softmax grad");
    for (const kind of ["LN", "RMS"] as const) {
      const sc = Float32Array.from({ length: rows }, (_, r) => 0.5 + (r % 7) / 7);
      const gScale = randArray(rows, seed++);
      using tsc = Tensor.from(sc, [rows, 1]);
      using tgs = Tensor.from(gScale, [rows, 1]);
      poisonPool(rows * n * 4);
      poisonPool(rows * 4);
      const [gx, gsc] = ops.normApplyGrad(tg, tx, tsc, kind);
      poisonPool(rows * n * 4);
      using gx2 = ops.normScaleGrad(tgs, tx, tsc, kind);
      const refX = new Float64Array(rows * n), refSc = new Float64Array(rows);
      const refX2 = new Float64Array(rows * n);
      for (let r = 0; r < rows; r++) {
        let mg = 0, mx = 0;
        if (kind === "LN") {
          for (let i = 0; i < n; i++) { mg += g[r * n + i] / n; mx += x[r * n + i] / n; }
        }
        let s = 0;
        for (let i = 0; i < n; i++) {
          refX[r * n + i] = (g[r * n + i] - mg) / sc[r];
          s += g[r * n + i] * (x[r * n + i] - mx);
          refX2[r * n + i] = gScale[r] * (x[r * n + i] - mx) / (n * sc[r]);
        }
        refSc[r] = -s / (sc[r] * sc[r]);
      }
      assert.ok(maxRelErr(await gx.toArray(), refX) < 1e-5, `${kind} apply grad x`);
      assert.ok(maxRelErr(await gsc.toArray(), refSc) < 1e-5, `${kind} apply grad scale`);
      assert.ok(maxRelErr(await gx2.toArray(), refX2) < 1e-5, `${kind} scale grad`);
      gx.dispose();
      gsc.dispose();
    }
    // Mean next-token loss: (softmax(logits) - onehot(next token)) * scale, 0 on last positions.
    const [B, P, V] = [5, 14, 37];
    const toks = Array.from({ length: B * P }, (_, i) => (i * 7 + 3) % V);
    using tl = Tensor.from(x.subarray(0, B * P * V), [B, P, V]);
    using tt = Tensor.from(toks, [B, P], "int32");
    poisonPool(B * P * V * 4);
    using gl = ops.lossGrad(tl, tt, 0.25);
    const refL = new Float64Array(B * P * V);
    for (let r = 0; r < B * P; r++) {
      if (r % P === P - 1) continue;
      const row = Array.from(x.subarray(r * V, (r + 1) * V));
      const mx = Math.max(...row), e = row.map((v) => Math.exp(v - mx)), z = e.reduce((a, v) => a + v);
      for (let i = 0; i < V; i++) refL[r * V + i] = (e[i] / z - (i === toks[r + 1] ? 1 : 0)) * 0.25;
    }
    assert.ok(maxRelErr(await gl.toArray(), refL) < 1e-5, "loss grad");
  }));
}

Deno.test("kvWrite puts keys and values at the cache offset of every batch row and leaves the other rows", async () => {
  // [batch, pos, cap, heads, d_head, offset]: one token, a few in a batch, rows of more than 256
  // elements (two workgroups across), the first positions.
  const cases = [[1, 1, 9, 2, 4, 5], [3, 4, 7, 2, 8, 2], [2, 3, 5, 3, 100, 2], [2, 2, 6, 1, 4, 0]];
  for (const [B, P, cap, H, E, off] of cases) {
    const inner = H * E;
    const k = randArray(B * P * inner, seed++), v = randArray(B * P * inner, seed++);
    const oldK = randArray(B * cap * inner, seed++), oldV = randArray(B * cap * inner, seed++);
    using tk = Tensor.from(k, [B, P, H, E]);
    using tv = Tensor.from(v, [B, P, H, E]);
    using ck = Tensor.from(oldK, [B, cap, H, E]);
    using cv = Tensor.from(oldV, [B, cap, H, E]);
    ops.kvWrite(tk, tv, ck, cv, off);
    const [gk, gv] = [await ck.toArray(), await cv.toArray()];
    for (let b = 0; b < B; b++) {
      for (let r = 0; r < cap; r++) {
        const written = r >= off && r < off + P;
        for (let i = 0; i < inner; i++) {
          const at = (b * cap + r) * inner + i, src = (b * P + r - off) * inner + i;
          const where = `${[B, P, cap, off]} batch ${b} row ${r}`;
          assert.equal(gk[at], written ? k[src] : oldK[at], `k ${where}`);
          assert.equal(gv[at], written ? v[src] : oldV[at], `v ${where}`);
        }
      }
    }
  }
  using k1 = Tensor.from(randArray(8, seed++), [1, 2, 1, 4]);
  using c1 = Tensor.empty([1, 3, 1, 4]);
  using c2 = Tensor.empty([1, 3, 1, 4]);
  assert.throws(() => ops.kvWrite(k1, k1, c1, c2, 2), ShapeError); // no room at offset 2
  using c3 = Tensor.empty([1, 3, 2, 4]);
  assert.throws(() => ops.kvWrite(k1, k1, c1, c3, 0), ShapeError); // caches of two shapes
}); // deno-fmt-ignore

Deno.test("linearSplit: one product into three outputs equals float64 on each column block, every kernel", async () => {
  for (
    const [M, K, parts] of [[1, 16, [8, 4, 4]], [3, 68, [64, 32, 32]], [70, 132, [48, 16, 16]], [
      257,
      64,
      [128, 64, 64],
    ]] as const
  ) {
    const N = parts[0] + parts[1] + parts[2];
    const a = randArray(M * K, seed++), w = randArray(K * N, seed++), bias = randArray(N, seed++);
    using ta = Tensor.from(a, [M, K]);
    using tw = Tensor.from(w, [K, N]);
    using tb = Tensor.from(bias, [N]);
    const ref = refMatmul(a, w, bias, M, K, N);
    for (
      const mode of [
        "matvec",
        "matvecCpu",
        "tile64",
        "tile128",
        "cpu",
        "cpuSmall",
        "sg",
        "sgSmall",
        "splitK3",
        "splitK64",
      ] as const
    ) {
      poisonPool(M * parts[0] * 4, 2);
      poisonPool(M * parts[1] * 4, 4);
      const outs = withLinear(LINEAR_MODES[mode], () => ops.linearSplit(ta, tw, tb, [...parts]));
      let c0 = 0;
      for (const [i, o] of outs.entries()) {
        const n = parts[i];
        assert.deepEqual(o.shape, [M, n]);
        const part = new Float64Array(M * n);
        for (let r = 0; r < M; r++) {
          for (let j = 0; j < n; j++) part[r * n + j] = ref[r * N + c0 + j];
        }
        const e = relErr(await o.toArray(), part);
        assert.ok(e < 1e-5, `${mode} ${M}x${K} part ${i}: ${e}`);
        c0 += n;
        o.dispose();
      }
    }
  }
  using x = Tensor.from(new Float32Array(8), [2, 4]);
  using w = Tensor.from(new Float32Array(48), [4, 12]);
  assert.throws(() => ops.linearSplit(x, w, undefined, [4, 4, 2]), ShapeError);
}); // deno-fmt-ignore

Deno.test("linearBack on a column block of a joint weight (the q/k/v backward): g · W[:, off:off+n]ᵀ equals float64, every kernel", async () => {
  const cases = [[3, 12, 40, "matvec"], [9, 12, 40, "tile64"], [70, 136, 40, "tile64"], [130, 136, 40, "tile128"], [130, 20, 40, "tile128bk16"],
    [9, 12, 40, "cpuSmall"], [9, 12, 40, "cpu"], [130, 136, 40, "cpu"], [70, 8, 40, "cpuSmall"],
    [9, 12, 40, "sgSmall"], [9, 12, 40, "sg"], [130, 136, 40, "sg"], [70, 8, 40, "sgSmall"],
    [130, 136, 40, "splitK3"], [70, 136, 40, "splitK64"]] as const;
  for (const [M, K, N, mode] of cases) {
    const w = randArray(K * N, seed++);
    using tw = Tensor.from(w, [K, N]);
    for (const [off, n] of [[0, 16], [16, 8], [24, 16]]) {
      const g = randArray(M * n, seed++);
      using tg = Tensor.from(g, [M, n]);
      poisonPool(M * K * 4);
      using dx = withLinear(LINEAR_MODES[mode], () => ops.linearBack(tg, tw, n, off));
      const ref = new Float64Array(M * K);
      for (let m = 0; m < M; m++) {
        for (let k = 0; k < K; k++) {
          let s = 0;
          for (let j = 0; j < n; j++) s += g[m * n + j] * w[k * N + off + j];
          ref[m * K + k] = s;
        }
      }
      assert.ok(relErr(await dx.toArray(), ref) < 1e-5, `${mode} ${M}x${K}: off ${off}`);
    }
  }
}); // deno-fmt-ignore

Deno.test("flashAttention (one pass, online softmax) equals float64 causal attention: GQA, KV-cache offset, ragged blocks", async () => {
  for (
    const [B, P, Pk, H, Hkv, E, offset] of [[2, 19, 19, 4, 2, 16, 0], [1, 3, 21, 4, 4, 8, 18], [
      1,
      33,
      33,
      2,
      1,
      64,
      0,
    ]]
  ) {
    const q = randArray(B * P * H * E, seed++),
      k = randArray(B * Pk * Hkv * E, seed++),
      v = randArray(B * Pk * Hkv * E, seed++);
    const alpha = 1 / Math.sqrt(E);
    const z = await flashOnArrays(q, k, v, { B, P, Pk, H, Hkv, E, offset });
    const ref = new Float64Array(B * P * H * E);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < P; i++) {
          const hk = Math.floor(h / (H / Hkv));
          const s: number[] = [];
          for (let j = 0; j <= Math.min(Pk - 1, offset + i); j++) {
            let d = 0;
            for (let e = 0; e < E; e++) {
              d += q[((b * P + i) * H + h) * E + e] * k[((b * Pk + j) * Hkv + hk) * E + e];
            }
            s.push(d * alpha);
          }
          const mx = Math.max(...s);
          const w = s.map((x) => Math.exp(x - mx)), sum = w.reduce((a, x) => a + x, 0);
          for (let e = 0; e < E; e++) {
            let acc = 0;
            for (let j = 0; j < w.length; j++) {
              acc += w[j] / sum * v[((b * Pk + j) * Hkv + hk) * E + e];
            }
            ref[((b * P + i) * H + h) * E + e] = acc;
          }
        }
      }
    }
    const err = maxRelErr(z, ref);
    assert.ok(err < 1e-5, `B ${B} P ${P} Pk ${Pk} H ${H}/${Hkv} E ${E} offset ${offset}: ${err}`);
  }
});

Deno.test("linearBlock: a column block of a joint weight, read in place, equals float64, every kernel", async () => {
  for (
    const [M, K, mode] of [
      [3, 12, "matvec"],
      [9, 12, "tile64"],
      [130, 16, "tile128"],
      [130, 20, "tile128bk16"],
      [9, 12, "cpuSmall"],
      [130, 16, "cpu"],
      [40, 8, "cpuSmall"],
      [9, 12, "sgSmall"],
      [130, 16, "sg"],
      [40, 8, "sgSmall"],
      [130, 68, "splitK3"],
    ] as const
  ) {
    const N = 40;
    const a = randArray(M * K, seed++), w = randArray(K * N, seed++), bias = randArray(16, seed++);
    using ta = Tensor.from(a, [M, K]);
    using tw = Tensor.from(w, [K, N]);
    for (const [off, n] of [[0, 16], [16, 8], [24, 16]]) {
      using tbn = Tensor.from(bias.subarray(0, n), [n]);
      poisonPool(M * n * 4);
      using y = withLinear(LINEAR_MODES[mode], () => ops.linearBlock(ta, tw, off, n, tbn));
      const ref = new Float64Array(M * n);
      for (let m = 0; m < M; m++) {
        for (let j = 0; j < n; j++) {
          let s = bias[j];
          for (let k = 0; k < K; k++) s += a[m * K + k] * w[k * N + off + j];
          ref[m * n + j] = s;
        }
      }
      assert.ok(relErr(await y.toArray(), ref) < 1e-5, `${mode} ${M}x${K}: off ${off}`);
    }
  }
  using x = Tensor.from(new Float32Array(8), [2, 4]);
  using w = Tensor.from(new Float32Array(160), [4, 40]);
  assert.throws(
    () => ops.linearBlock(x, w, 32, 16),
    (e) => e instanceof ShapeError && /within its columns/.test(e.message),
  );
}); // deno-fmt-ignore
