// Kernel benchmarks at GPT-2-small shapes: dense layers (tiled kernel, both K steps, and the
// general strided kernel), attention, norms, SAE encode/decode (d_in 768, d_sae 24576, 1024 tokens).
import { Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { SPARSE_DECODE_MAX_ROWS } from "../src/sae/sae.ts";
import { bench, FULL, info, randn, randomSae, suite, withLinearConfig } from "./_common.ts";

suite("kernels");
const S = FULL ? 1 : 8; // shape divisor on a software adapter
const T = 1024 / S; // tokens

function mat(rows: number, cols: number, seed: number): Tensor {
  return Tensor.from(randn(rows * cols, 0.05, seed), [rows, cols]).keep();
}

const shapes: [number, number, number][] = [[T, 768, 3072], [T, 3072, 768], [T, 768, 768], [
  T,
  768,
  2304,
]];
if (FULL) shapes.push([T, 768, 50260], [4096, 4096, 4096]);
// 128x128 tiles whatever the shape (no matrix-vector, 64x64 or register-blocked kernel).
const big = {
  matvecMaxRows: 0,
  smallTileMaxRows: 0,
  bigTileMinTiles: 0,
  cpuKernel: "never",
} as const;
for (const [M, K, N] of shapes) {
  const a = mat(M, K, 1), w = mat(K, N, 2), bias = mat(1, N, 3).reshape([N]).keep();
  const work = { flops: 2 * M * K * N, bytes: 4 * (M * K + K * N + M * N) };
  bench(`linear ${M}x${K}x${N} (default choice)`, work, () => ops.linear(a, w, bias)[0].dispose(), {
    n: 8,
  });
  const variants = [
    ["128x128 tiles, BK 8", { ...big, bk: 8 }],
    ["128x128 tiles, BK 16", { ...big, bk: 16 }],
    ["64x64 tiles", { matvecMaxRows: 0, smallTileMaxRows: 1e9, cpuKernel: "never" }],
    ["split-K auto below 264 tiles", { ...big, splitK: "auto", bigTileMinTiles: 264 }],
    ["128x128 tiles, split-K 4", { ...big, splitK: 4 }],
    ["register-blocked CPU kernel", { matvecMaxRows: 0, cpuKernel: "large", subgroups: "never" }],
    ["small register-blocked CPU kernel", {
      matvecMaxRows: 0,
      cpuKernel: "small",
      subgroups: "never",
    }],
    ["subgroup CPU kernel", { matvecMaxRows: 0, cpuKernel: "large", subgroups: "auto" }],
    ["small subgroup CPU kernel", { matvecMaxRows: 0, cpuKernel: "small", subgroups: "auto" }],
  ] as const; // deno-fmt-ignore
  // On a GPU the large register blocks (made for lavapipe) ran at 3-10% of the tiled kernels on
  // the H100 (2026-11-28), and there are no 8-lane subgroups: those rows would time nothing new.
  const timed = info.fallback
    ? variants
    : variants.filter(([label]) => label === "small register-blocked CPU kernel" || !label.includes("CPU"));
  for (const [label, cfg] of timed) {
    bench(`linear ${M}x${K}x${N} (${label})`, work, () => {
      withLinearConfig(cfg, () => ops.linear(a, w, bias)[0].dispose());
    }, { n: 8 });
  }
  if (M * K * N <= 1024 * 768 * 3072) {
    bench(
      `linear ${M}x${K}x${N} (general strided kernel)`,
      work,
      () => ops.matmul(a, w, bias).dispose(),
      { n: 5 },
    );
  }
}
if (!FULL) {
  // The performance issue's target for a software adapter is this full-size layer.
  const [M, K, N] = [1024, 768, 3072];
  const a = mat(M, K, 31), w = mat(K, N, 32), bias = mat(1, N, 33).reshape([N]).keep();
  const work = { flops: 2 * M * K * N, bytes: 4 * (M * K + K * N + M * N) };
  const modes = [
    ["default choice", {}],
    ["register-blocked CPU kernel without subgroups", { subgroups: "never" }],
    ["128x128 tiles", { cpuKernel: "never" }],
  ] as const;
  for (const [label, cfg] of modes) {
    bench(`linear ${M}x${K}x${N} full size (${label})`, work, () => {
      withLinearConfig(cfg, () => ops.linear(a, w, bias)[0].dispose());
    }, { n: 5, pipelined: 2 });
  }
}
{
  // f16 weight storage (shader-f16), f32 arithmetic.
  const [M, K, N] = [T, 768, 3072];
  const a = mat(M, K, 21), w16 = Tensor.from(randn(K * N, 0.05, 22), [K, N], "float16").keep();
  bench(`linear ${M}x${K}x${N} with f16 weights`, {
    flops: 2 * M * K * N,
    bytes: 4 * M * K + 2 * K * N + 4 * M * N,
  }, () => ops.linear(a, w16)[0].dispose());
  const x1 = mat(1, 768, 23);
  bench(`linear 1x768x${N} (matrix-vector) with f16 weights`, {
    flops: 2 * 768 * N,
    bytes: 2 * 768 * N,
  }, () => ops.linear(x1, w16)[0].dispose());
}
for (const N of [768, 3072, 50260].filter((n) => FULL || n < 50000)) {
  // One token (generation with a KV cache): the matrix-vector kernel.
  const x1 = mat(1, 768, 13), w1 = mat(768, N, 14);
  bench(
    `linear 1x768x${N} (matrix-vector)`,
    { flops: 2 * 768 * N, bytes: 4 * 768 * N },
    () => ops.linear(x1, w1)[0].dispose(),
  );
  if (info.fallback) {
    // A model's weights are frozen: on a software adapter these read a texture copy instead.
    const wf = ops.freezeWeight(mat(768, N, 14));
    bench(
      `linear 1x768x${N} (matrix-vector, texture copy of a frozen weight)`,
      { flops: 2 * 768 * N, bytes: 4 * 768 * N },
      () => ops.linear(x1, wf)[0].dispose(),
    );
  }
}
if (info.fallback) {
  // One position's logits of the demo model (d_model 128, vocabulary 50257 padded to 50260; GPT-2
  // small's W_U exceeds lavapipe's 128 MiB binding in float32): storage buffer against texture.
  const x1 = mat(1, 128, 15), w = mat(128, 50260, 16), wf = ops.freezeWeight(mat(128, 50260, 16));
  for (
    const [label, wt] of [["storage buffer", w], ["texture copy of a frozen weight", wf]] as const
  ) {
    bench(
      `linear 1x128x50257 (demo unembedding of one position, ${label})`,
      { flops: 2 * 128 * 50257, bytes: 4 * 128 * 50260 },
      () => ops.linear(x1, wt, undefined, {}, 50257)[0].dispose(),
    );
  }
}
{
  const [M, K, N] = [T, 768, 3072];
  const a = mat(M, K, 4), w = mat(K, N, 5), bias = mat(1, N, 6).reshape([N]).keep();
  bench(`linear ${M}x${K}x${N} + gelu_new epilogue`, { flops: 2 * M * K * N }, () => {
    const [y, p] = ops.linear(a, w, bias, { act: "gelu_new" });
    y.dispose();
    p!.dispose();
  });
}

// Attention core at 12 heads x 64: scores (causal), softmax, pattern · V.
for (const [B, P] of [[8 / (FULL ? 1 : 4), 128], [FULL ? 8 : 1, FULL ? 1024 : 256]]) {
  const H = 12, E = 64;
  const q = Tensor.from(randn(B * P * H * E, 1, 7), [B, P, H, E]).keep();
  const k = Tensor.from(randn(B * P * H * E, 1, 8), [B, P, H, E]).keep();
  const v = Tensor.from(randn(B * P * H * E, 1, 9), [B, P, H, E]).keep();
  const unfused = () => {
    const scores = Tensor.empty([B, H, P, P]);
    ops.gemm(
      { t: scores, b1: H * P * P, b2: P * P, row: P, col: 1 },
      { t: q, b1: P * H * E, b2: E, row: H * E, col: 1 },
      { t: k, b1: P * H * E, b2: E, row: 1, col: H * E },
      { M: P, N: P, K: E, nb1: B, nb2: H, alpha: 0.125, causal: true },
    );
    const pattern = ops.softmax(scores);
    const z = Tensor.empty([B, P, H, E]);
    ops.gemm(
      { t: z, b1: P * H * E, b2: E, row: H * E, col: 1 },
      { t: pattern, b1: H * P * P, b2: P * P, row: P, col: 1 },
      { t: v, b1: P * H * E, b2: E, row: H * E, col: 1 },
      { M: P, N: E, K: P, nb1: B, nb2: H },
    );
    for (const t of [scores, pattern, z]) t.dispose();
  };
  const flops = { flops: 4 * B * H * P * P * E };
  bench(`attention ${B}x${P}, 12 heads x 64 (scores, softmax, z)`, flops, unfused);
  if (!FULL) {
    bench(
      `attention ${B}x${P}, 12 heads x 64 (scores, softmax, z), no subgroups`,
      flops,
      () => withLinearConfig({ subgroups: "never" }, unfused),
    );
  }
  bench(
    `attention ${B}x${P}, 12 heads x 64, fused (one pass)`,
    flops,
    () => {
      const s = { B, P, Pk: P, H, Hkv: H, E, kvStride: P * H * E, alpha: 0.125, offset: 0 };
      ops.flashAttention(q, k, v, s).dispose();
    },
  );
}

{
  const x = mat(T, 768, 10);
  bench(`layer norm ${T}x768 (scale + apply)`, { bytes: 3 * 4 * T * 768 }, () => {
    const s = ops.normScale(x, "LN", 1e-5);
    const y = ops.normApply(x, s, "LN");
    s.dispose();
    y.dispose();
  });
}

{
  const dSae = 24576 / S;
  const sae = await randomSae(768, dSae, "blocks.8.hook_resid_pre");
  const x = Tensor.from(randn(T * 768, 1, 11), [T, 768]).keep();
  const wEnc = mat(768, dSae, 12),
    bEnc = Tensor.from(new Float32Array(dSae).fill(-2.5), [dSae]).keep();
  bench(
    `SAE encode ${T}x768x${dSae} (fused matmul + bias + ReLU)`,
    { flops: 2 * T * 768 * dSae },
    () => {
      const [pre, post] = ops.saeEncode(x, wEnc, bEnc, "relu");
      pre.dispose();
      post.dispose();
    },
  );
  const acts = await sae.encode(x);
  const nnz = Array.from(await acts.toArray()).filter((v) => v !== 0).length / T;
  console.log(`SAE decode benchmark: ${nnz.toFixed(1)} active latents per token`);
  // Up to SPARSE_DECODE_MAX_ROWS tokens the decode sums only the active rows of W_dec; above, it
  // is a dense [T, 768] layer summed over d_sae (few output tiles over a deep sum: on a GPU split
  // over K by default, timed here against the same product unsplit).
  const sparse = T <= SPARSE_DECODE_MAX_ROWS;
  const decodeWork = { flops: 2 * T * (sparse ? nnz : dSae) * 768 };
  const how = sparse ? `sparse (L0 ${nnz.toFixed(0)})` : "dense";
  bench(`SAE decode ${T}x${dSae}->768 ${how}`, decodeWork, () => sae.decodeFlat(acts).dispose());
  if (!sparse && !info.fallback) {
    bench(`SAE decode ${T}x${dSae}->768 ${how}, without split-K`, decodeWork, () => {
      withLinearConfig({ splitK: "off" }, () => sae.decodeFlat(acts).dispose());
    });
  }
  bench(
    `SAE top-k (k 64) over ${T}x${dSae}`,
    { bytes: 8 * T * dSae },
    () => ops.topK(acts, 64).dispose(),
  );
}
