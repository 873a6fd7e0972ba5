/**
 * The general batched strided matmul (shaders/matmul.wgsl, and matmul_sg.wgsl's subgroup entries
 * appended to it): `C = alpha * A·B + bias (+ C)` over two batch levels with per-operand strides,
 * a causal mask, and the SAE encode epilogue. Attention's q·kᵀ and pattern·v read
 * [batch, pos, head, d_head] in place through it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { bmm, matmul } from "./matmul.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, K]
 * using W = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]); // [K, N]
 * using bias = Tensor.from([1, 1, 1], [3]);
 * using y = matmul(x, W, bias); // [.., M, K] x [K, N] + [N]
 * assert.deepEqual([...await y.toArray()], [2, 3, 4]);
 * using a = Tensor.from([1, 2, 3, 4], [2, 1, 2]); // [B, M, K]
 * using b = Tensor.from([1, 1, 2, 2], [2, 2, 1]); // [B, K, N]
 * using c = bmm(a, b);
 * assert.deepEqual([...await c.toArray()], [3, 14]);
 * ```
 * @module
 */
import matmulWgsl from "../../../shaders/matmul.wgsl" with { type: "text" };
import matmulSgWgsl from "../../../shaders/matmul_sg.wgsl" with { type: "text" };
import { ShapeError } from "../../errors.ts";
import { dispatch, type Param, pipeline, type ShaderSource } from "../dispatch.ts";
import { Tensor } from "../tensor.ts";
import { assertF32, useCpuVariants, useSubgroups } from "./launch.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/matmul.wgsl (strides in elements; see {@link Operand}). */
const MATMUL_P = uniforms({
  M: "u32",
  N: "u32",
  K: "u32",
  /** Inner batch count (batch z = b1 * NB2 + b2). */
  NB2: "u32",
  a_off: "u32",
  a_b1: "u32",
  a_b2: "u32",
  a_m: "u32",
  a_k: "u32",
  b_off: "u32",
  b_b1: "u32",
  b_b2: "u32",
  b_k: "u32",
  b_n: "u32",
  c_off: "u32",
  c_b1: "u32",
  c_b2: "u32",
  c_m: "u32",
  c_n: "u32",
  /** 0 none, 1 bias[n], 2 bias[b2 * N + n]. */
  bias_mode: "u32",
  alpha: "f32",
  /** C[m][n] = -inf where n > m + causal_off. */
  causal: "u32",
  causal_off: "u32",
  /** Add into C. */
  accum: "u32",
  /** The encode entry's activation: 1 relu, 2 jumprelu (aux[n]), 3 gated (aux[m, n] > 0). */
  act: "u32",
  /** B's inner batch index is b2 / b_div (grouped-query attention). */
  b_div: "u32",
  /** With causal: also -inf where m + causal_off - n >= window (sliding window; 0: none). */
  window: "u32",
  /** C = softcap * tanh(C / softcap) before the causal mask (attention soft cap; 0: none). */
  softcap: "f32",
});

/** shaders/matmul.wgsl. */
export const MATMUL_SHADER: ShaderSource = shaderSource("matmul", MATMUL_P, matmulWgsl);
/** shaders/matmul.wgsl with the subgroup entries of shaders/matmul_sg.wgsl. */
export const MATMUL_SG_SHADER: ShaderSource = shaderSource(
  "matmul_sg",
  MATMUL_P,
  matmulWgsl,
  matmulSgWgsl,
);

/** One operand of {@link gemm}: a tensor plus element strides (all in elements). */
export interface Operand {
  /** The tensor read (or written). */
  t: Tensor;
  /** Element offset of the first matrix. */
  off?: number;
  /** Stride of the outer batch index. */
  b1?: number;
  /** Stride of the inner batch index. */
  b2?: number;
  /** Stride between rows. */
  row: number;
  /** Stride between columns. */
  col: number;
}

/** Options of {@link gemm}. */
export interface GemmOptions {
  /** Rows of C. */
  M: number;
  /** Columns of C. */
  N: number;
  /** Inner dimension. */
  K: number;
  /** Outer batch count. */
  nb1?: number;
  /** Inner batch count. */
  nb2?: number;
  /** Bias added per column (`[N]`) or per inner batch and column (`[nb2, N]`). */
  bias?: Tensor;
  /** Whether the bias is indexed by the inner batch too. */
  biasPerBatch?: boolean;
  /** Scale of the product. */
  alpha?: number;
  /** Set C[m][n] = -inf where n > m + causalOffset. */
  causal?: boolean;
  /** Offset of the causal mask (query position of row 0). */
  causalOffset?: number;
  /** Add into C instead of overwriting it. */
  accumulate?: boolean;
  /** B's inner batch index is b2 / bGroup (grouped-query attention: query heads per KV head). */
  bGroup?: number;
  /** With `causal`: also -inf where m + causalOffset - n >= window (sliding window; 0: none). */
  window?: number;
  /** C = softCap * tanh(C / softCap) before the causal mask (attention soft cap; 0: none). */
  softCap?: number;
}

/**
 * Records an entry of matmul.wgsl over an M x N output (times `batches`): 64x64 tiles, or on a
 * software adapter its `_cpu` variant's 32x32 tiles of register blocks, or with 8-lane subgroups
 * the `_sg` variant's 16x64 tiles (shaders/matmul_sg.wgsl).
 */
function dispatchMatmul(
  entry: "main" | "encode",
  params: Param[],
  buffers: GPUBuffer[],
  [M, N, batches]: [number, number, number],
): void {
  const cpu = useCpuVariants();
  const sg = cpu && useSubgroups();
  const [rows, cols] = sg ? [16, 64] : cpu ? [32, 32] : [64, 64];
  const shader = sg ? MATMUL_SG_SHADER : MATMUL_SHADER;
  const name = sg ? `${entry}_sg` : cpu ? `${entry}_cpu` : entry;
  dispatch(pipeline(shader, name), params, buffers, [
    Math.ceil(N / cols),
    Math.ceil(M / rows),
    batches,
  ]);
}

/**
 * General batched strided matmul into an existing C: `C = alpha * A·B + bias (+ C)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { gemm } from "./matmul.ts";
 *
 * await initGpu();
 * // C [2, 2] = A [2, 3] · B [3, 2] with explicit strides (here B is read transposed from [2, 3]).
 * using A = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
 * using Bt = Tensor.from([1, 0, 0, 0, 1, 0], [2, 3]);
 * using C = Tensor.empty([2, 2]);
 * gemm({ t: C, row: 2, col: 1 }, { t: A, row: 3, col: 1 }, { t: Bt, row: 1, col: 3 }, {
 *   M: 2,
 *   N: 2,
 *   K: 3,
 * });
 * assert.deepEqual([...await C.toArray()], [1, 2, 4, 5]);
 * ```
 */
export function gemm(C: Operand, A: Operand, B: Operand, o: GemmOptions): void {
  for (const x of [A, B, C]) assertF32(x.t, "matmul");
  if (o.bias) assertF32(o.bias, "matmul bias");
  const nb1 = o.nb1 ?? 1, nb2 = o.nb2 ?? 1;
  const params = MATMUL_P.pack({
    M: o.M,
    N: o.N,
    K: o.K,
    NB2: nb2,
    a_off: A.off,
    a_b1: A.b1,
    a_b2: A.b2,
    a_m: A.row,
    a_k: A.col,
    b_off: B.off,
    b_b1: B.b1,
    b_b2: B.b2,
    b_k: B.row,
    b_n: B.col,
    c_off: C.off,
    c_b1: C.b1,
    c_b2: C.b2,
    c_m: C.row,
    c_n: C.col,
    bias_mode: o.bias ? (o.biasPerBatch ? 2 : 1) : 0,
    alpha: o.alpha ?? 1,
    causal: o.causal,
    causal_off: o.causalOffset,
    accum: o.accumulate,
    b_div: o.bGroup ?? 1,
    window: o.window,
    softcap: o.softCap,
  });
  dispatchMatmul("main", params, [A.t.buffer, B.t.buffer, C.t.buffer, (o.bias ?? A.t).buffer], [
    o.M,
    o.N,
    nb1 * nb2,
  ]);
}

/**
 * `x · w (+ bias)` for x of shape [..., K] and w of shape [K, N]: returns [..., N].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { matmul } from "./matmul.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, K]
 * using W = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]); // [K, N]
 * using y = matmul(x, W);
 * assert.deepEqual(y.shape, [1, 3]);
 * assert.deepEqual([...await y.toArray()], [1, 2, 3]);
 * ```
 */
export function matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  const K = x.shape.at(-1) ?? 0;
  if (w.shape.length !== 2 || w.shape[0] !== K) {
    throw new ShapeError(
      `matmul: [${x.shape.join(", ")}] x [${w.shape.join(", ")}] do not fit (inner dims differ).`,
    );
  }
  const N = w.shape[1];
  if (bias && bias.size !== N) {
    throw new ShapeError(`matmul: bias of ${bias.size} elements for ${N} output columns.`);
  }
  const M = x.size / Math.max(K, 1);
  const out = Tensor.empty([...x.shape.slice(0, -1), N]);
  gemm({ t: out, row: N, col: 1 }, { t: x, row: K, col: 1 }, { t: w, row: N, col: 1 }, {
    M,
    N,
    K,
    bias,
  });
  return out;
}

/**
 * Batched matmul: a [B, M, K] x b [B, K, N] -> [B, M, N].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { bmm } from "./matmul.ts";
 *
 * await initGpu();
 * using a = Tensor.from([1, 2, 3, 4], [2, 1, 2]); // [B, M, K]
 * using b = Tensor.from([1, 1, 2, 2], [2, 2, 1]); // [B, K, N]
 * using c = bmm(a, b);
 * assert.deepEqual(c.shape, [2, 1, 1]);
 * assert.deepEqual([...await c.toArray()], [3, 14]);
 * ```
 */
export function bmm(a: Tensor, b: Tensor): Tensor {
  const [B, M, K] = a.shape;
  const [B2, K2, N] = b.shape;
  if (a.shape.length !== 3 || b.shape.length !== 3 || B !== B2 || K !== K2) {
    throw new ShapeError(`bmm: [${a.shape.join(", ")}] x [${b.shape.join(", ")}] do not fit.`);
  }
  const out = Tensor.empty([B, M, N]);
  gemm(
    { t: out, b1: M * N, row: N, col: 1 },
    { t: a, b1: M * K, row: K, col: 1 },
    { t: b, b1: K * N, row: N, col: 1 },
    { M, N, K, nb1: B },
  );
  return out;
}

/**
 * The SAE encode on the general kernel (its `encode` entry), for shapes the dense kernels do not
 * take: pre = x [M, K] · w [K, N] + b and post = act(pre) in one dispatch, `act` 1 ReLU,
 * 2 JumpReLU (threshold `aux` [N]), 3 gated (gate pre-activation `aux` [M, N] > 0).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { matmulEncode } from "./matmul.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, K]
 * using W = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]); // [K, N]
 * using bEnc = Tensor.from([0, 0, -5], [3]);
 * const [pre, post] = matmulEncode(x, W, bEnc, 1); // 1: ReLU
 * assert.deepEqual([...await pre.toArray()], [1, 2, -2]);
 * assert.deepEqual([...await post.toArray()], [1, 2, 0]);
 * pre.dispose();
 * post.dispose();
 * ```
 */
export function matmulEncode(
  x: Tensor,
  w: Tensor,
  b: Tensor,
  act: 1 | 2 | 3,
  aux?: Tensor,
): [Tensor, Tensor] {
  const [K, N] = w.shape;
  const M = x.size / K;
  const shape = [...x.shape.slice(0, -1), N];
  const pre = Tensor.empty(shape);
  const post = Tensor.empty(shape);
  const params = MATMUL_P.pack({
    M,
    N,
    K,
    NB2: 1,
    a_m: K,
    a_k: 1,
    b_k: N,
    b_n: 1,
    c_m: N,
    c_n: 1,
    bias_mode: 1,
    alpha: 1,
    act,
  });
  dispatchMatmul(
    "encode",
    params,
    [x.buffer, w.buffer, pre.buffer, b.buffer, post.buffer, (aux ?? b).buffer],
    [M, N, 1],
  );
  return [pre, post];
}
