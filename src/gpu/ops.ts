/**
 * Kernel launches: each function records one or two dispatches of a WGSL kernel from `shaders/`
 * and returns new tensors. Nothing here waits on the GPU.
 *
 * @example
 * ```ts
 * import { matmul } from "./ops.ts";
 * const y = matmul(x, w, bias); // [.., M, K] x [K, N] + [N]
 * ```
 * @module
 */
import { ShapeError } from "../errors.ts";
import {
  createDataBuffer,
  deferDestroy,
  dispatch,
  f32,
  type Param,
  pipeline,
  runtime,
  type ShaderSource,
} from "./runtime.ts";
import { SHADERS } from "./shaders.ts";
import { numel, Tensor } from "./tensor.ts";

/** Workgroup grid for `n` threads of 256 folded into 2D. */
function grid256(n: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / 256));
  const x = Math.min(groups, 65535);
  return [x, Math.ceil(groups / x)];
}

/** Workgroup grid for one workgroup per row, folded into 2D at 65535. */
function gridRows(rows: number): [number, number] {
  const x = Math.min(Math.max(rows, 1), 65535);
  return [x, Math.ceil(rows / 65535) || 1];
}

/**
 * Kernel variants for software adapters (lavapipe): there an invocation is one lane of a CPU SIMD
 * register, a barrier is a coroutine switch and every buffer load a loop over the lanes, so row
 * kernels (softmax, norms) take one row per invocation and the general matmul a register block
 * with no workgroup memory (see the `*_cpu` and `*_rows` entries). "auto" takes them on a software
 * adapter; tests and benchmarks force either way. `subgroups`: where the device has 8-lane
 * subgroups (see GpuDevice.subgroupSize), "auto" takes the variants that load an operand once a
 * subgroup and broadcast it (shaders/linear_sg.wgsl, matmul_sg.wgsl), "never" the others.
 *
 * @example
 * ```ts
 * cpuVariants.mode = "never"; // the GPU kernels, even on lavapipe
 * ```
 */
export const cpuVariants: { mode: "auto" | "always" | "never"; subgroups: "auto" | "never" } = {
  mode: "auto",
  subgroups: "auto",
};

function useCpuVariants(): boolean {
  return cpuVariants.mode === "always" ||
    (cpuVariants.mode === "auto" && runtime().gpu.isFallback);
}

/** Whether the software-adapter kernels take their subgroup variants (see {@link cpuVariants}). */
function useSubgroups(): boolean {
  return cpuVariants.subgroups === "auto" && runtime().gpu.subgroupSize === 8;
}

/**
 * Records a row kernel: `entry` with one workgroup per row, or on a software adapter its
 * `${entry}_rows` variant with one row per invocation of 64-wide workgroups (see lane_row in
 * shaders/reduce.wgsl).
 */
function dispatchRows(
  shader: ShaderSource,
  entry: string,
  params: Param[],
  buffers: (GPUBuffer | undefined)[],
  rows: number,
): void {
  const cpu = useCpuVariants();
  dispatch(
    pipeline(shader, cpu ? `${entry}_rows` : entry),
    params,
    buffers,
    gridRows(cpu ? Math.ceil(rows / 64) : rows),
  );
}

function assertF32(t: Tensor, what: string): void {
  if (t.dtype !== "float32") {
    throw new ShapeError(`${what} needs a float32 tensor, got ${t.dtype} [${t.shape.join(", ")}].`);
  }
}

const BINARY_OPS = { add: 0, sub: 1, mul: 2 } as const;

/**
 * `a op b` elementwise; b's shape must equal a's or be a suffix of it (broadcast).
 *
 * @example
 * ```ts
 * const y = binary(x, bias, "add");
 * ```
 */
export function binary(a: Tensor, b: Tensor, op: keyof typeof BINARY_OPS): Tensor {
  assertF32(a, op);
  assertF32(b, op);
  const sa = a.shape, sb = b.shape;
  const suffix = sb.length <= sa.length && sb.every((d, i) => d === sa[sa.length - sb.length + i]);
  if (!suffix) {
    throw new ShapeError(
      `${op}: shapes [${sa.join(", ")}] and [${sb.join(", ")}] do not broadcast ` +
        "(the second must equal the first or a suffix of it).",
    );
  }
  const out = Tensor.empty(sa);
  const n = a.size;
  dispatch(
    pipeline(SHADERS.elementwise, "binary"),
    [n, Math.max(1, b.size), BINARY_OPS[op], f32(0), f32(0), 1, 1, 0],
    [a.buffer, b.buffer, out.buffer],
    grid256(n),
  );
  return out;
}

/**
 * `a * w + b` with w and b of shape [d] broadcast over the last dimension of a.
 *
 * @example
 * ```ts
 * const y = scaleShift(normalized, w, b);
 * ```
 */
export function scaleShift(a: Tensor, w: Tensor, b: Tensor): Tensor {
  assertF32(a, "scaleShift");
  const d = a.shape.at(-1) ?? 1;
  if (w.size !== d || b.size !== d) {
    throw new ShapeError(`scaleShift: weight/bias of ${w.size}/${b.size} for last dim ${d}.`);
  }
  const out = Tensor.empty(a.shape);
  dispatch(
    pipeline(SHADERS.elementwise, "scale_shift"),
    [a.size, d, 0, f32(0), f32(0), 1, 1, 0],
    [a.buffer, w.buffer, out.buffer, undefined, b.buffer],
    grid256(a.size),
  );
  return out;
}

/**
 * `a * s + t` elementwise.
 *
 * @example
 * ```ts
 * const y = affine(x, 2, 1);
 * ```
 */
export function affine(a: Tensor, s: number, t: number): Tensor {
  assertF32(a, "affine");
  const out = Tensor.empty(a.shape);
  dispatch(
    pipeline(SHADERS.elementwise, "affine"),
    [a.size, 1, 0, f32(s), f32(t), 1, 1, 0],
    [a.buffer, undefined, out.buffer],
    grid256(a.size),
  );
  return out;
}

/**
 * Copy of `a` with the entries at `indices` along `dim` set to `value`.
 *
 * @example
 * ```ts
 * const ablated = fillAt(acts, -1, [3], 0);
 * ```
 */
export function fillAt(a: Tensor, dim: number, indices: number[], value: number): Tensor {
  assertF32(a, "fillAt");
  const r = a.shape.length;
  const d = dim < 0 ? dim + r : dim;
  if (d < 0 || d >= r) {
    throw new ShapeError(`fillAt: dim ${dim} out of range for shape [${a.shape.join(", ")}].`);
  }
  const dimn = a.shape[d];
  const mask = new Uint32Array(Math.max(4, dimn));
  for (const i of indices) {
    const j = i < 0 ? i + dimn : i;
    if (!Number.isInteger(j) || j < 0 || j >= dimn) {
      throw new ShapeError(`fillAt: index ${i} out of range for dim ${dim} of size ${dimn}.`);
    }
    mask[j] = 1;
  }
  const inner = numel(a.shape.slice(d + 1));
  const out = Tensor.empty(a.shape);
  const maskBuf = createDataBuffer(mask, "fillAt mask");
  dispatch(
    pipeline(SHADERS.elementwise, "fill_at"),
    [a.size, 1, 0, f32(value), f32(0), inner, dimn, 0],
    [a.buffer, undefined, out.buffer, maskBuf],
    grid256(a.size),
  );
  deferDestroy(maskBuf);
  return out;
}

/** Activation functions by TransformerLens/HF name. */
export const ACT_CODES: Readonly<Record<string, number>> = {
  gelu_new: 0,
  gelu_pytorch_tanh: 0,
  gelu: 1,
  relu: 2,
  silu: 3,
  swish: 3,
  gelu_fast: 4,
  quick_gelu: 5,
};

/**
 * Applies an activation function elementwise (optionally times `gate`, for gated MLPs).
 *
 * @example
 * ```ts
 * const post = activation(pre, "gelu_new");
 * ```
 */
export function activation(a: Tensor, fn: string, gate?: Tensor): Tensor {
  assertF32(a, "activation");
  const code = ACT_CODES[fn];
  if (code === undefined) {
    throw new ShapeError(
      `Unsupported activation "${fn}": supported are ${Object.keys(ACT_CODES).join(", ")}.`,
    );
  }
  const out = Tensor.empty(a.shape);
  dispatch(
    pipeline(SHADERS.elementwise, gate ? "gated" : "unary"),
    [a.size, 1, code, f32(0), f32(0), 1, 1, 0],
    [a.buffer, gate?.buffer, out.buffer],
    grid256(a.size),
  );
  return out;
}

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
  const shader = sg ? SHADERS.matmul_sg : SHADERS.matmul;
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
 * gemm({ t: c, row: n, col: 1 }, { t: a, row: k, col: 1 }, { t: b, row: n, col: 1 }, { M: m, N: n, K: k });
 * ```
 */
export function gemm(C: Operand, A: Operand, B: Operand, o: GemmOptions): void {
  for (const x of [A, B, C]) assertF32(x.t, "matmul");
  if (o.bias) assertF32(o.bias, "matmul bias");
  const nb1 = o.nb1 ?? 1, nb2 = o.nb2 ?? 1;
  const params: Param[] = [
    o.M,
    o.N,
    o.K,
    nb2,
    A.off ?? 0,
    A.b1 ?? 0,
    A.b2 ?? 0,
    A.row,
    A.col,
    B.off ?? 0,
    B.b1 ?? 0,
    B.b2 ?? 0,
    B.row,
    B.col,
    C.off ?? 0,
    C.b1 ?? 0,
    C.b2 ?? 0,
    C.row,
    C.col,
    o.bias ? (o.biasPerBatch ? 2 : 1) : 0,
    f32(o.alpha ?? 1),
    o.causal ? 1 : 0,
    o.causalOffset ?? 0,
    o.accumulate ? 1 : 0,
    0,
    o.bGroup ?? 1,
    0,
    0,
  ];
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
 * const y = matmul(x, w, b);
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
 * const c = bmm(a, b);
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

/** Normalisation kind: LayerNorm centres, RMSNorm does not. */
export type NormKind = "LN" | "RMS";

/**
 * Per-row scale of a norm: `sqrt(mean((x - mean)^2) + eps)` (LN) or `sqrt(mean(x^2) + eps)` (RMS).
 * x is [..., d]; the result is [..., 1].
 *
 * @example
 * ```ts
 * const scale = normScale(x, "LN", 1e-5);
 * ```
 */
export function normScale(x: Tensor, kind: NormKind, eps: number): Tensor {
  assertF32(x, "norm");
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  const out = Tensor.empty([...x.shape.slice(0, -1), 1]);
  dispatchRows(SHADERS.norm, "scale", [rows, d, kind === "LN" ? 1 : 0, 0, f32(eps), 0, 0, 0], [
    x.buffer,
    undefined,
    out.buffer,
  ], rows);
  return out;
}

/**
 * Applies a norm given its per-row scale: `(x - mean) / scale * w + b` (LN; mean 0 for RMS;
 * w and b optional).
 *
 * @example
 * ```ts
 * const y = normApply(x, scale, "LN", w, b);
 * ```
 */
export function normApply(
  x: Tensor,
  scale: Tensor,
  kind: NormKind,
  w?: Tensor,
  b?: Tensor,
): Tensor {
  assertF32(x, "norm");
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  if (scale.size !== rows) {
    throw new ShapeError(`norm: scale has ${scale.size} elements for ${rows} rows.`);
  }
  const out = Tensor.empty(x.shape);
  dispatchRows(
    SHADERS.norm,
    "apply",
    [rows, d, kind === "LN" ? 1 : 0, w ? 1 : 0, f32(0), b ? 1 : 0, 0, 0],
    [x.buffer, scale.buffer, out.buffer, (w ?? x).buffer, (b ?? x).buffer],
    rows,
  );
  return out;
}

/**
 * A whole norm in one dispatch: [scale ([..., 1]), normalized ([..., d]), normalized * w + b, or
 * null without w and b]. For when no hook can replace the scale or the normalised input in between
 * (else {@link normScale} and {@link normApply} with the hooks between them).
 *
 * @example
 * ```ts
 * const [scale, normalized, y] = normFused(x, "LN", 1e-5, w, b);
 * ```
 */
export function normFused(
  x: Tensor,
  kind: NormKind,
  eps: number,
  w?: Tensor,
  b?: Tensor,
): [Tensor, Tensor, Tensor | null] {
  assertF32(x, "norm");
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  const scale = Tensor.empty([...x.shape.slice(0, -1), 1]);
  const normalized = Tensor.empty(x.shape);
  const y = w || b ? Tensor.empty(x.shape) : null;
  dispatchRows(
    SHADERS.norm,
    "fused",
    [rows, d, kind === "LN" ? 1 : 0, w ? 1 : 0, f32(eps), b ? 1 : 0, 0, 0],
    [
      x.buffer,
      undefined,
      (y ?? scratch()).buffer,
      (w ?? x).buffer,
      (b ?? x).buffer,
      scale.buffer,
      normalized.buffer,
    ],
    rows,
  );
  return [scale, normalized, y];
}

/**
 * Softmax over the last dimension.
 *
 * @example
 * ```ts
 * const p = softmax(scores);
 * ```
 */
export function softmax(x: Tensor): Tensor {
  assertF32(x, "softmax");
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = Tensor.empty(x.shape);
  dispatchRows(SHADERS.softmax, "main", [rows, n, 0, 0], [x.buffer, out.buffer], rows);
  return out;
}

/**
 * Whether the model takes {@link flashAttention} when nothing needs the scores or the pattern
 * (no hook can replace them, none is cached, no backward pass is recorded). Off by default until
 * it is measured against the three-dispatch path (q·kᵀ, softmax, pattern·v) on a GPU; on lavapipe
 * that path is faster (2x128 tokens, 12 heads of 64: 52 against 87 ms, where every lane's loads
 * of K and V are scalar loops). `bench/kernels_bench.ts` and `bench/model_bench.ts` time both.
 *
 * @example
 * ```ts
 * attentionConfig.fused = true;
 * ```
 */
export const attentionConfig: { fused: boolean } = { fused: false };

/** Shape of {@link flashAttention}'s operands. */
export interface FlashShape {
  B: number;
  /** Query positions. */
  P: number;
  /** Key positions (offset + P with a KV cache). */
  Pk: number;
  H: number;
  Hkv: number;
  E: number;
  /** Batch stride of k and v in elements (Pk * Hkv * E, or a KV cache's capacity). */
  kvStride: number;
  /** Score scale (1 / sqrt(d_head) as TransformerLens's attn_scale). */
  alpha: number;
  /** Position of the first query (causal mask: key j visible from query i when j <= offset + i). */
  offset: number;
}

/**
 * Whether {@link flashAttention} handles these shapes on this device (d_head a multiple of 4, at
 * most 256, and its tiles fit the workgroup memory).
 *
 * @example
 * ```ts
 * if (flashFits(64)) console.log("fused attention available");
 * ```
 */
export function flashFits(E: number): boolean {
  const bytes = (3 * 16 * E + 256) * 4;
  return E % 4 === 0 && E <= 256 && E > 0 &&
    bytes <= runtime().gpu.limits.maxComputeWorkgroupStorageSize;
}

/**
 * Causal attention in one dispatch: z [B, P, H, E] = softmax(alpha q·kᵀ) · v with q [B, P, H, E]
 * and k, v [B, Pk, Hkv, E] (batch stride `kvStride`), without writing the scores or the pattern.
 *
 * @example
 * ```ts
 * const z = flashAttention(q, k, v, { B, P, Pk: P, H, Hkv: H, E, kvStride: P * H * E, alpha: 0.125, offset: 0 });
 * ```
 */
export function flashAttention(q: Tensor, k: Tensor, v: Tensor, s: FlashShape): Tensor {
  for (const x of [q, k, v]) assertF32(x, "attention");
  if (!flashFits(s.E) || s.H % s.Hkv !== 0) {
    throw new ShapeError(
      `flashAttention: d_head ${s.E} with ${s.H} heads over ${s.Hkv} kv heads is not supported ` +
        "(d_head a multiple of 4 up to 256, heads a multiple of kv heads); use the unfused path.",
    );
  }
  const z = Tensor.empty([s.B, s.P, s.H, s.E]);
  dispatch(
    pipeline(SHADERS.flash, "main", { E: s.E }),
    [
      s.P,
      s.Pk,
      s.H,
      s.H / s.Hkv,
      s.P * s.H * s.E,
      s.H * s.E,
      s.kvStride,
      s.Hkv * s.E,
      f32(s.alpha),
      s.offset,
      0,
      0,
    ],
    [q.buffer, k.buffer, v.buffer, z.buffer],
    [Math.ceil(s.P / 16), s.B * s.H, 1],
  );
  return z;
}

/** The WGSL element type of a float table (f16 tables are read as f32). */
function tableType(table: Tensor): "f16" | "f32" {
  if (table.dtype === "int32") {
    throw new ShapeError(
      `embedding needs a float32 or float16 table, got int32 [${table.shape.join(", ")}]: ` +
        "upload the table as floats.",
    );
  }
  return table.dtype === "float16" ? "f16" : "f32";
}

/**
 * Embedding lookup: rows of `table` [vocab, d] (float32 or float16) at int32 `ids` [..]: returns
 * float32 [.., d].
 *
 * @example
 * ```ts
 * const e = embedTokens(W_E, tokens);
 * ```
 */
export function embedTokens(table: Tensor, ids: Tensor): Tensor {
  const [vocab, d] = table.shape;
  const out = Tensor.empty([...ids.shape, d]);
  dispatch(
    pipeline(SHADERS.embed, "tokens", { WT: tableType(table) }),
    [ids.size, 1, d, 0, 0, vocab, 0, 0],
    [table.buffer, ids.buffer, out.buffer],
    gridRows(ids.size),
  );
  return out;
}

/**
 * Learned positional embedding for a [batch, pos] input: rows `offset..offset+pos` of `table`,
 * repeated per batch: returns [batch, pos, d].
 *
 * @example
 * ```ts
 * const p = embedPositions(W_pos, 2, 12, 0);
 * ```
 */
export function embedPositions(table: Tensor, batch: number, pos: number, offset: number): Tensor {
  const d = table.shape[1];
  const out = Tensor.empty([batch, pos, d]);
  dispatch(
    pipeline(SHADERS.embed, "positions", { WT: tableType(table) }),
    [batch * pos, pos, d, 0, offset, table.shape[0], 0, 0],
    [table.buffer, undefined, out.buffer],
    gridRows(batch * pos),
  );
  return out;
}

/**
 * Writes keys and values [batch, pos, ...] into KV caches [batch, cap, ...] at positions
 * `offset..offset+pos` of each batch row: one dispatch for both, recorded in the open compute pass
 * (buffer copies would end it, two per batch row).
 *
 * @example
 * ```ts
 * kvWrite(k, v, kCache, vCache, 7); // a one-token step after 7 positions
 * ```
 */
export function kvWrite(
  k: Tensor,
  v: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  offset: number,
): void {
  const [B, P] = k.shape;
  const cap = kCache.shape[1];
  // Same rows after [batch, pos] in all four, same shapes in each pair, room at the offset.
  const tail = (t: Tensor) => `${t.shape.slice(2)}`;
  if (
    `${k.shape}` !== `${v.shape}` || `${kCache.shape}` !== `${vCache.shape}` ||
    kCache.shape[0] !== B || tail(k) !== tail(kCache) || !Number.isInteger(offset) ||
    offset < 0 || offset + P > cap || [k, v, kCache, vCache].some((t) => t.dtype !== "float32")
  ) {
    throw new ShapeError(
      `kvWrite: keys/values [${k.shape}] and [${v.shape}] do not fit caches [${kCache.shape}] and ` +
        `[${vCache.shape}] at offset ${offset}: they need float32, equal shapes per pair, the ` +
        `same dims after [batch, pos], and room for pos rows at the offset.`,
    );
  }
  if (k.size === 0) return;
  const inner = k.size / (B * P);
  dispatch(
    pipeline(SHADERS.elementwise, "kv_write"),
    [B * P * inner, offset, 0, f32(0), f32(0), inner, cap, 0],
    [k.buffer, undefined, kCache.buffer, undefined, v.buffer, vCache.buffer],
    [Math.ceil(inner / 256), P, B],
  );
}

/**
 * Next-token cross-entropy per position: logits [batch, pos, vocab], tokens int32 [batch, pos]
 * -> [batch, pos - 1].
 *
 * @example
 * ```ts
 * const lpt = lossPerToken(logits, tokens);
 * ```
 */
export function lossPerToken(logits: Tensor, tokens: Tensor): Tensor {
  const [batch, pos, vocab] = logits.shape;
  const out = Tensor.empty([batch, Math.max(pos - 1, 0)]);
  dispatchRows(
    SHADERS.loss,
    "per_token",
    [batch, pos, vocab, 0],
    [logits.buffer, tokens.buffer, out.buffer],
    batch * (pos - 1),
  );
  return out;
}

/**
 * Mean of all elements: returns a scalar (shape []).
 *
 * @example
 * ```ts
 * const loss = meanAll(lpt);
 * ```
 */
export function meanAll(x: Tensor): Tensor {
  const out = Tensor.empty([]);
  dispatch(pipeline(SHADERS.loss, "mean"), [0, 0, 0, x.size], [x.buffer, undefined, out.buffer], [
    1,
  ]);
  return out;
}

/** SAE activation codes of the `act` kernel and the fused encode epilogue. */
export const SAE_ACT = { relu: 1, jumprelu: 2, gated: 3 } as const;

/**
 * Fused SAE encode: pre = x · W_enc + b and post = activation(pre) in one dispatch. `aux` is the
 * threshold [d_sae] (jumprelu) or the gate pre-activation [rows, d_sae] (gated).
 *
 * @example
 * ```ts
 * const [pre, post] = saeEncode(x, W_enc, b_enc, "relu");
 * ```
 */
export function saeEncode(
  x: Tensor,
  w: Tensor,
  b: Tensor,
  act: keyof typeof SAE_ACT,
  aux?: Tensor,
): [Tensor, Tensor] {
  const [K, N] = w.shape;
  if (K % 4 === 0 && N % 4 === 0) {
    // The tiled kernel with the activation (and threshold or gate) in its epilogue.
    const gate = act === "jumprelu"
      ? { kind: "threshold" as const, t: aux! }
      : act === "gated"
      ? { kind: "gate" as const, t: aux! }
      : undefined;
    const [pre, post] = linear(x, w, b, { act: "relu", gate });
    return [pre, post!];
  }
  const M = x.size / K;
  const shape = [...x.shape.slice(0, -1), N];
  const pre = Tensor.empty(shape);
  const post = Tensor.empty(shape);
  const params: Param[] = [
    M,
    N,
    K,
    1,
    0,
    0,
    0,
    K,
    1,
    0,
    0,
    0,
    N,
    1,
    0,
    0,
    0,
    N,
    1,
    1,
    f32(1),
    0,
    0,
    0,
    SAE_ACT[act],
    0,
    0,
    0,
  ]; // deno-fmt-ignore
  dispatchMatmul(
    "encode",
    params,
    [x.buffer, w.buffer, pre.buffer, b.buffer, post.buffer, (aux ?? b).buffer],
    [M, N, 1],
  );
  return [pre, post];
}

/**
 * SAE activation of an (already hooked) pre-activation [rows, d_sae].
 *
 * @example
 * ```ts
 * const post = saeActivation(pre, "jumprelu", threshold);
 * ```
 */
export function saeActivation(pre: Tensor, act: keyof typeof SAE_ACT, aux?: Tensor): Tensor {
  const n = pre.shape.at(-1) ?? 1;
  const rows = pre.size / n;
  const out = Tensor.empty(pre.shape);
  dispatch(
    pipeline(SHADERS.sae, "act"),
    [rows, n, SAE_ACT[act], 0, 0, 0, f32(0), 0],
    [pre.buffer, (aux ?? pre).buffer, out.buffer],
    grid256(rows * n),
  );
  return out;
}

/**
 * Per-row top-k (radix select, not a sort): keeps the k largest of each row (ReLU applied),
 * zero elsewhere; ties at the k-th value go to the lowest indices.
 *
 * @example
 * ```ts
 * const post = topK(pre, 8);
 * ```
 */
export function topK(pre: Tensor, k: number): Tensor {
  const n = pre.shape.at(-1) ?? 1;
  const rows = pre.size / n;
  const out = Tensor.empty(pre.shape);
  dispatch(
    pipeline(SHADERS.sae, "topk"),
    [rows, n, 0, k, 0, 0, f32(0), 0],
    [pre.buffer, undefined, out.buffer],
    gridRows(rows),
  );
  return out;
}

/**
 * SAE decode reading only the active rows of W_dec: compacts each row's non-zero latents (up to
 * `cap`; rows with more are decoded densely), then recons = acts · W_dec + b_dec. `extra` holds
 * b_dec [d_in] then a per-latent scale [d_sae] applied when `scaled`.
 *
 * @example
 * ```ts
 * const recons = saeDecode(acts, wDec, extra, 64, false);
 * ```
 */
export function saeDecode(
  acts: Tensor,
  wDec: Tensor,
  extra: Tensor,
  cap: number,
  scaled: boolean,
): Tensor {
  const dIn = wDec.shape[1];
  const dSae = acts.shape.at(-1) ?? 1;
  const rows = acts.size / dSae;
  const idx = Tensor.empty([rows, cap + 1], "int32");
  const vals = Tensor.empty([rows, cap]);
  dispatchRows(SHADERS.sae, "compact", [rows, dSae, 0, cap, 0, 0, f32(0), 0], [
    acts.buffer,
    undefined,
    vals.buffer,
    idx.buffer,
  ], rows);
  const out = Tensor.empty([...acts.shape.slice(0, -1), dIn]);
  dispatch(
    pipeline(SHADERS.sae, "decode"),
    [rows, dIn, 0, cap, dSae, scaled ? 1 : 0, f32(0), 0],
    [acts.buffer, vals.buffer, out.buffer, idx.buffer, wDec.buffer, extra.buffer],
    gridRows(rows),
  );
  idx.dispose();
  vals.dispose();
  return out;
}

/**
 * Per-row mean, unbiased std and L2 norm of x [.., n]: returns [rows, 4].
 *
 * @example
 * ```ts
 * const stats = rowStats(x);
 * ```
 */
export function rowStats(x: Tensor): Tensor {
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = Tensor.empty([rows, 4]);
  dispatch(
    pipeline(SHADERS.sae, "row_stats"),
    [rows, n, 0, 0, 0, 0, f32(0), 0],
    [x.buffer, undefined, out.buffer],
    gridRows(rows),
  );
  return out;
}

/** Modes of {@link rowNorm}. */
export const ROW_NORM = { constantIn: 0, constantOut: 1, layerNormIn: 2, layerNormOut: 3 } as const;

/**
 * SAELens's run-time normalisation (or its inverse) with stats from {@link rowStats}.
 *
 * @example
 * ```ts
 * const y = rowNorm(x, stats, "layerNormIn", 1e-5);
 * ```
 */
export function rowNorm(x: Tensor, stats: Tensor, mode: keyof typeof ROW_NORM, eps = 1e-5): Tensor {
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = Tensor.empty(x.shape);
  dispatch(
    pipeline(SHADERS.sae, "row_norm"),
    [rows, n, ROW_NORM[mode], 0, 0, 0, f32(eps), 0],
    [x.buffer, stats.buffer, out.buffer],
    grid256(rows * n),
  );
  return out;
}

/**
 * Rotary position embedding (NeoX half-split pairs) on x [batch, pos, heads, d_head]: the first
 * `rotaryDim` dims of each head are rotated by the angles of position `pos + offset`; `table`
 * holds [cos | sin] for every position, each [n_ctx, rotaryDim].
 *
 * @example
 * ```ts
 * const rq = rotary(q, table, 16, 0);
 * ```
 */
export function rotary(
  x: Tensor,
  table: Tensor,
  rotaryDim: number,
  offset: number,
  inverse = false,
): Tensor {
  assertF32(x, "rotary");
  const [, P, H, E] = x.shape;
  const nCtx = table.size / (2 * rotaryDim);
  const out = Tensor.empty(x.shape);
  dispatch(
    pipeline(SHADERS.attention, "rotary"),
    [x.size, H, E, rotaryDim, P, offset, nCtx, inverse ? 1 : 0],
    [x.buffer, table.buffer, out.buffer],
    grid256(x.size),
  );
  return out;
}

/** How {@link sampleNext} picks a token. */
export interface SampleOptions {
  /** Argmax (lowest index on ties) instead of sampling. */
  greedy: boolean;
  /** Keep only the k most likely tokens (0: off). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1: off). */
  topP?: number;
  /** Softmax temperature. */
  temperature?: number;
  /** A uniform number in [0, 1) for the draw (per call; rows get decorrelated variants). */
  u?: number;
}

/**
 * Picks the next token of each sequence from logits [batch, pos, vocab] at position `pos - 1` and
 * writes it into int32 `seq` [batch, len] at column `col`, on the GPU (nothing is read back).
 *
 * @example
 * ```ts
 * sampleNext(logits, seq, 4, { greedy: true });
 * ```
 */
export function sampleNext(logits: Tensor, seq: Tensor, col: number, o: SampleOptions): void {
  const [B, P, V] = logits.shape;
  const len = seq.shape[1];
  for (let b = 0; b < B; b++) {
    // Each row gets its own uniform so batched rows do not draw the same quantile.
    const u = ((o.u ?? 0.5) + b * 0.6180339887498949) % 1;
    dispatch(
      pipeline(SHADERS.sample, "main"),
      [
        1,
        V,
        P * V,
        (b * P + P - 1) * V,
        o.greedy ? 1 : 0,
        o.topK ?? 0,
        f32(o.topP ?? 1),
        f32(o.temperature ?? 1),
        f32(u),
        b * len + col,
        0,
        0,
      ],
      [logits.buffer, seq.buffer],
      [1],
    );
  }
}

/**
 * Tuning of the dense-layer kernels ({@link linear} and its relatives); benchmarks compare the
 * choices. On a GPU: the matrix-vector kernel up to `matvecMaxRows` rows, else tiles of 64x64 or
 * 128x128, and split-K for outputs too small to fill the GPU. On a software adapter: register
 * blocks without workgroup memory (shaders/linear_cpu.wgsl, or linear_sg.wgsl where the device
 * has 8-lane subgroups and `cpuVariants.subgroups` is "auto").
 *
 * @example
 * ```ts
 * linearConfig.cpuKernel = "never"; // the tiled GPU kernels, even on lavapipe
 * ```
 */
export const linearConfig: {
  /** K step of the 128x128 tiles: 16 beat 8 on every shape timed warm on the H100 (2026-11-28:
   * 1024x768x50260 3.00 against 3.24 ms, 1024x768x2304 0.221 against 0.236, 4096³ 4.79 against
   * 4.92). */
  bk: 8 | 16;
  /** Up to this many rows, the matrix-vector kernel (its `_cpu` variant on a software adapter). */
  matvecMaxRows: number;
  /** Up to this many rows, 64x64 tiles. */
  smallTileMaxRows: number;
  /** An output that needs fewer 128x128 tiles than this takes 64x64 tiles (unless split-K
   * applies): fewer leave a large GPU's compute units idle (on the H100, [1024, 768] outputs, 48
   * such tiles, ran 1.5x faster in 64x64 tiles). */
  bigTileMinTiles: number;
  /** Split-K, the sum over K in slices added by a second dispatch: "off", a number of slices for
   * every tiled product, or "auto": an output of fewer than `bigTileMinTiles` tiles gets enough
   * slices, each at least `splitKMinDepth` deep, for `splitKTiles` workgroups. */
  splitK: "off" | "auto" | number;
  /** Workgroups "auto" split-K aims at: about two a compute unit on the largest GPUs. */
  splitKTiles: number;
  /** Least depth of an "auto" slice. With 256, GPT-2 small's attention and MLP outputs ([1024,
   * 768], 48 tiles) are split in 3 and 7 slices, and its q/k/v projection (144 tiles) in 3: its
   * forward at 8x128 took 13.9 ms of H100 time against 15.6 with 2048, which splits only deep sums
   * such as the SAE decode (2026-11-28, bench/RESULTS.md). */
  splitKMinDepth: number;
  /** The register-blocked kernels: "auto" takes them on a software adapter above `matvecMaxRows`
   * rows (2-4x the tiled kernels on lavapipe, where every buffer load is a loop over the SIMD
   * lanes), the "large" block for more than 32 rows and at least `cpuMinMacs` multiply-adds, else
   * the "small" one; or one of them forced, or "never". (On the H100 the small block as the
   * kernel for outputs of fewer than 160 tiles made GPT-2's forward 1.4x slower than split-K.) */
  cpuKernel: "auto" | "large" | "small" | "never";
  /** Multiply-adds (M·K·N) from which "auto" takes the large block, which LLVM takes seconds a
   * variant to compile (once per machine: Mesa caches it on disk); small layers would not win
   * that back. */
  cpuMinMacs: number;
} = {
  bk: 16,
  matvecMaxRows: 4,
  smallTileMaxRows: 256,
  bigTileMinTiles: 160,
  splitK: "auto",
  splitKTiles: 320,
  splitKMinDepth: 256,
  cpuKernel: "auto",
  cpuMinMacs: 2 ** 24,
};

/** Fused epilogue of {@link linear}. */
export interface LinearEpilogue {
  /** Also return act(x·W + b) (the activation code of {@link ACT_CODES}' names). */
  act?: string;
  /** Also return resid + (x·W + b). */
  resid?: Tensor;
  /**
   * SAE encode (with act "relu"): zero the activation unless the pre-activation exceeds a
   * per-column threshold [N] (JumpReLU) or a gate pre-activation [M, N] is positive (gated).
   */
  gate?: { kind: "threshold" | "gate"; t: Tensor };
}

/**
 * A dense layer on the fast tiled kernel: x [.., K] · w [K, LDB] (+ bias [N]) -> [.., N], where
 * `n` (default LDB) is the number of real output columns (w may be padded to a multiple of 4).
 * With an epilogue, also returns act(y) or resid + y from the same pass. Falls back to the
 * general kernel when K or LDB is not a multiple of 4.
 *
 * @example
 * ```ts
 * const [pre, post] = linear(x, W_in, b_in, { act: "gelu_new" });
 * ```
 */
export function linear(
  x: Tensor,
  w: Tensor,
  bias?: Tensor,
  epi: LinearEpilogue = {},
  n?: number,
): [Tensor, Tensor | null] {
  const [K, LDB] = w.shape;
  const N = n ?? LDB;
  if ((x.shape.at(-1) ?? 0) !== K) {
    throw new ShapeError(
      `linear: [${x.shape.join(", ")}] x [${w.shape.join(", ")}] do not fit (inner dims differ).`,
    );
  }
  const M = x.size / Math.max(K, 1);
  const shape = [...x.shape.slice(0, -1), N];
  if (K % 4 !== 0 || LDB % 4 !== 0) {
    if (w.dtype === "float16") {
      throw new ShapeError(
        `linear: float16 weights need K and columns that are multiples of 4, got [${K}, ${LDB}].`,
      );
    }
    const y = Tensor.empty(shape);
    gemm({ t: y, row: N, col: 1 }, { t: x, row: K, col: 1 }, { t: w, row: LDB, col: 1 }, {
      M,
      N,
      K,
      bias,
    });
    if (epi.act) return [y, activation(y, epi.act)];
    if (epi.resid) return [y, binary(epi.resid, y, "add")];
    return [y, null];
  }
  const act = epi.act ? ACT_CODES[epi.act] : undefined;
  if (epi.act && act === undefined) {
    throw new ShapeError(
      `Unsupported activation "${epi.act}": supported are ${Object.keys(ACT_CODES).join(", ")}.`,
    );
  }
  const y = Tensor.empty(shape);
  const d = epi.act || epi.resid ? Tensor.empty(shape) : null;
  launchDense({
    x,
    w,
    bias,
    M,
    K,
    N,
    defines: {
      ACT: act === undefined ? 0 : act + 1,
      RESID: Boolean(epi.resid),
      GATE: epi.gate ? (epi.gate.kind === "threshold" ? 1 : 2) : 0,
      SPLIT: false,
    },
    outs: [y, d],
    r: epi.resid ?? epi.gate?.t,
  });
  return [y, d];
}

/**
 * Records the dense kernel for {@link linear} and {@link linearSplit} (K and the weight's row
 * stride multiples of 4): the register-blocked CPU kernels on a software adapter, else the
 * matrix-vector, 64x64- or 128x128-tile kernel by the number of rows.
 */
function launchDense(o: {
  x: Tensor;
  w: Tensor;
  bias?: Tensor;
  M: number;
  K: number;
  N: number;
  defines: Record<string, number | boolean>;
  /** C, then D (or null), then for SPLIT E3. */
  outs: [Tensor, Tensor | null, Tensor?];
  r?: Tensor;
  split?: [number, number];
  /** Read B's columns from `boff` on (a column block of a joint weight); not for the
   * matrix-vector kernels (M > matvecMaxRows, or a CPU kernel chosen). */
  boff?: number;
}): void {
  const { x, w, bias, M, K, N } = o;
  const LDB = w.shape[1];
  const [y, d, e3] = o.outs;
  const defines = { ...o.defines, WT: w.dtype === "float16" ? "f16" : "f32" };
  const buffers = [
    x.buffer,
    w.buffer,
    y.buffer,
    (bias ?? x).buffer,
    (d ?? scratch(0)).buffer,
    (o.r ?? x).buffer,
    (e3 ?? scratch(1)).buffer,
  ];
  const params = [M, N, K, LDB, bias ? 1 : 0, o.split?.[0] ?? 0, o.split?.[1] ?? 0, o.boff ?? 0];
  const cpu = cpuKernel(M, K, N);
  // The CPU kernels store whole column quads: a padded weight (N < LDB, as W_U) without an
  // epilogue goes through a [M, LDB] product whose first N columns are then copied out.
  const padded = o.boff === undefined && N !== LDB;
  if (cpu && (!padded || !d)) {
    const k = cpuDense(cpu);
    const cols = padded ? LDB : N;
    const groups: [number, number, number] = [Math.ceil(cols / k.cols), Math.ceil(M / k.rows), 1];
    const full = padded ? Tensor.empty([M, LDB]) : y;
    if (padded) {
      buffers[2] = full.buffer;
      buffers[3] = x.buffer; // (no bias read)
      params[1] = LDB;
      params[4] = 0; // the bias ([N], not whole quads) is added by the copy
    }
    dispatch(pipeline(k.shader, k.entry, defines), params, buffers, groups);
    if (padded) {
      dispatch(
        pipeline(SHADERS.elementwise, "crop_cols"),
        [y.size, N, bias ? 1 : 0, f32(0), f32(0), N, LDB, 0],
        [full.buffer, (bias ?? full).buffer, y.buffer],
        [Math.ceil(N / 256), Math.min(M, 65535), Math.ceil(M / 65535)],
      );
      full.dispose();
    }
    return;
  }
  // Shape classes: one row -> matrix-vector; else 64x64 or 128x128 tiles (see gpuTile).
  if (M > linearConfig.matvecMaxRows) {
    tiled(gpuTile(M, N, K), { ...defines, TRANS: false }, params, buffers);
    return;
  }
  const entry = useCpuVariants() ? "matvec_cpu" : "matvec";
  dispatch(
    pipeline(SHADERS.linear, entry, {
      ...defines,
      BK: linearConfig.bk,
      TRANS: false,
      SPLITK: false,
    }),
    [...params, 0, 1],
    buffers,
    [Math.ceil(N / (entry === "matvec" ? 64 : 256)), M, 1],
  );
}

/**
 * Records the tiled dense kernel `entry` of shaders/linear.wgsl for the uniform block `params`
 * (M, N, K, LDB, has_bias, n1, n2, boff: an [M, N] output summed over K), split over K in
 * `splitFactor` slices (partial products, then splitk_sum through the epilogue) when that is
 * more than 1.
 */
function tiled(
  entry: "main" | "main64",
  defines: Record<string, number | boolean | string>,
  params: readonly number[],
  buffers: readonly GPUBuffer[],
): void {
  const [M, N, K] = params;
  const t = entry === "main64" ? 64 : 128;
  const [gx, gy] = [Math.ceil(N / t), Math.ceil(M / t)];
  const ks = splitFactor(gx * gy, K);
  const defs = { ...defines, BK: linearConfig.bk };
  if (ks === 1) {
    const pipe = pipeline(SHADERS.linear, entry, { ...defs, SPLITK: false });
    dispatch(pipe, [...params, 0, 1], buffers, [gx, gy, 1]);
    return;
  }
  const kc = Math.ceil(K / ks / 16) * 16;
  const slices = Math.ceil(K / kc);
  const part = Tensor.empty([slices, M, N]);
  const p = [...params, kc, slices];
  const partBuffers = [...buffers];
  partBuffers[2] = part.buffer;
  const pipe = pipeline(SHADERS.linear, entry, { ...defs, SPLITK: true });
  dispatch(pipe, p, partBuffers, [gx, gy, slices]);
  // splitk_sum reads no A or B (bindings 1 and 2 stay unbound), nor BK or TRANS: fixed, so that
  // the forward and the transposed products share one pipeline.
  dispatch(
    pipeline(SHADERS.linear, "splitk_sum", { ...defines, BK: 8, TRANS: false, SPLITK: false }),
    p,
    [undefined, undefined, ...buffers.slice(2), part.buffer],
    [Math.ceil(N / 256), Math.min(M, 65535), Math.ceil(M / 65535)],
  );
  part.dispose();
}

/** Into how many K slices {@link tiled} splits an output of `tiles` workgroups (see
 * {@link linearConfig}'s splitK). */
function splitFactor(tiles: number, K: number): number {
  const cfg = linearConfig.splitK;
  if (cfg === "off") return 1;
  if (cfg !== "auto") return Math.max(1, Math.min(Math.floor(cfg), Math.floor(K / 16)));
  if (tiles >= linearConfig.bigTileMinTiles) return 1;
  return Math.max(
    1,
    Math.min(
      Math.ceil(linearConfig.splitKTiles / tiles),
      Math.floor(K / linearConfig.splitKMinDepth),
    ),
  );
}

/**
 * x [.., K] · w[:, off .. off + n] (+ bias [n]) -> [.., n]: a column block of a joint weight (q, k
 * or v of W_Q | W_K | W_V), read in place by the dense kernels (the general matmul where K, the
 * block or its offset is not a multiple of 4, or for a few rows on a GPU).
 *
 * @example
 * ```ts
 * const k = linearBlock(x, wQKV, 768, 768, bK);
 * ```
 */
export function linearBlock(x: Tensor, w: Tensor, off: number, n: number, bias?: Tensor): Tensor {
  const [K, LDB] = w.shape;
  if ((x.shape.at(-1) ?? 0) !== K || off + n > LDB) {
    throw new ShapeError(
      `linearBlock: [${x.shape.join(", ")}] x columns ${off} .. ${off + n} of ` +
        `[${w.shape.join(", ")}] do not fit: x's last dimension must equal the weight's rows ` +
        "and the block must lie within its columns.",
    );
  }
  const M = x.size / Math.max(K, 1);
  const y = Tensor.empty([...x.shape.slice(0, -1), n]);
  const aligned = [K, LDB, off, n].every((v) => v % 4 === 0);
  // The dense kernels read the block in place (not the matrix-vector one, which has no offset).
  if (aligned && (cpuKernel(M, K, n) || M > linearConfig.matvecMaxRows)) {
    launchDense({
      x,
      w,
      bias,
      M,
      K,
      N: n,
      defines: { ACT: 0, RESID: false, GATE: 0, SPLIT: false },
      outs: [y, null],
      boff: off,
    });
    return y;
  }
  gemm({ t: y, row: n, col: 1 }, { t: x, row: K, col: 1 }, { t: w, off, row: LDB, col: 1 }, {
    M,
    N: n,
    K,
    bias,
  });
  return y;
}

/**
 * A dense layer whose output columns are three tensors side by side, as q, k and v from one
 * weight [K, n1 + n2 + n3]: x [.., K] -> [[.., n1], [.., n2], [.., n3]] in one dispatch.
 * K and each part must be multiples of 4.
 *
 * @example
 * ```ts
 * const [q, k, v] = linearSplit(x, wQKV, bQKV, [768, 768, 768]);
 * ```
 */
export function linearSplit(
  x: Tensor,
  w: Tensor,
  bias: Tensor | undefined,
  parts: [number, number, number],
): [Tensor, Tensor, Tensor] {
  const [K, LDB] = w.shape;
  const N = parts[0] + parts[1] + parts[2];
  if ((x.shape.at(-1) ?? 0) !== K || N !== LDB || K % 4 !== 0 || parts.some((p) => p % 4 !== 0)) {
    throw new ShapeError(
      `linearSplit: [${x.shape.join(", ")}] x [${w.shape.join(", ")}] into [${parts.join(", ")}] ` +
        "needs matching inner dims, parts that add up to the weight's columns, and K and every " +
        "part a multiple of 4.",
    );
  }
  const M = x.size / K;
  const lead = x.shape.slice(0, -1);
  const outs = parts.map((p) => Tensor.empty([...lead, p])) as [Tensor, Tensor, Tensor];
  launchDense({
    x,
    w,
    bias,
    M,
    K,
    N,
    defines: { ACT: 0, RESID: false, GATE: 0, SPLIT: true },
    outs,
    split: [parts[0], parts[1]],
  });
  return outs;
}

/** The shader, entry point and tile (rows x columns of the output a workgroup makes) of the
 * register-blocked kernel `cpu`; `_t` entries (transposed) have the same tiles. */
function cpuDense(cpu: "large" | "small"): {
  shader: ShaderSource;
  entry: string;
  rows: number;
  cols: number;
} {
  const entry = cpu === "large" ? "main" : "small";
  if (useSubgroups()) {
    // shaders/linear_sg.wgsl: main 64x128, small 16x64.
    return cpu === "large"
      ? { shader: SHADERS.linear_sg, entry, rows: 64, cols: 128 }
      : { shader: SHADERS.linear_sg, entry, rows: 16, cols: 64 };
  }
  // shaders/linear_cpu.wgsl: main 128x128, small 32x32.
  const t = cpu === "large" ? 128 : 32;
  return { shader: SHADERS.linear_cpu, entry, rows: t, cols: t };
}

/** The tiled GPU kernel for an [M, N] output summed over K: 128x128 tiles (`main`) unless the
 * rows are few, or the output needs fewer than `bigTileMinTiles` of them and split-K is not set
 * to fill the GPU instead (see {@link linearConfig}). */
function gpuTile(M: number, N: number, K: number): "main" | "main64" {
  if (M <= linearConfig.smallTileMaxRows) return "main64";
  const tiles = Math.ceil(M / 128) * Math.ceil(N / 128);
  if (tiles >= linearConfig.bigTileMinTiles) return "main";
  return splitFactor(tiles, K) > 1 ? "main" : "main64";
}

/** Which register-blocked kernel {@link linear} takes, if any (see {@link linearConfig}). */
function cpuKernel(M: number, K: number, N: number): "large" | "small" | null {
  const mode = linearConfig.cpuKernel;
  if (mode === "never") return null;
  if (mode !== "auto") return mode;
  if (!runtime().gpu.isFallback || M <= linearConfig.matvecMaxRows) return null;
  // The large block's 128-row tile is mostly padding for a few rows: the small one (32) wins there.
  return M > 32 && M * K * N >= linearConfig.cpuMinMacs ? "large" : "small";
}

const scratchTensors = new WeakMap<object, Tensor[]>();
/** Small writable tensors (per device) bound where a kernel variant writes nothing. */
function scratch(i = 0): Tensor {
  const r = runtime();
  let ts = scratchTensors.get(r);
  if (!ts) {
    ts = [];
    scratchTensors.set(r, ts);
  }
  ts[i] ??= Tensor.empty([64]).keep();
  return ts[i];
}

// ---------------------------------------------------------------- backward (activation gradients)

/**
 * dL/dx of a dense layer y = x · w (w [K, LDB], N real columns from column `off`): g [.., N] · wᵀ
 * -> [.., K].
 *
 * @example
 * ```ts
 * const gx = linearBack(gy, W, N);
 * ```
 */
export function linearBack(g: Tensor, w: Tensor, n?: number, off = 0): Tensor {
  const [K, LDB] = w.shape;
  const N = n ?? LDB;
  const M = g.size / N;
  const out = Tensor.empty([...g.shape.slice(0, -1), K]);
  const aligned = [K, N, LDB, off].every((v) => v % 4 === 0);
  const cpu = aligned ? cpuKernel(M, N, K) : null;
  const buffers = [
    g.buffer,
    w.buffer,
    out.buffer,
    g.buffer,
    scratch(0).buffer,
    g.buffer,
    scratch(1).buffer,
  ];
  const defines = {
    WT: w.dtype === "float16" ? "f16" : "f32",
    ACT: 0,
    RESID: false,
    GATE: 0,
    SPLIT: false,
  };
  if (cpu) {
    // The transposed register-blocked kernels: g · W[:, off..]ᵀ.
    const k = cpuDense(cpu);
    dispatch(
      pipeline(k.shader, `${k.entry}_t`, defines),
      [M, K, N, LDB, 0, 0, 0, off],
      buffers,
      [Math.ceil(K / k.cols), Math.ceil(M / k.rows), 1],
    );
    return out;
  }
  if (aligned && M > linearConfig.matvecMaxRows) {
    // The tiled dense kernels with the weight read transposed.
    tiled(gpuTile(M, K, N), { ...defines, TRANS: true }, [M, K, N, LDB, 0, 0, 0, off], buffers);
    return out;
  }
  gemm({ t: out, row: K, col: 1 }, { t: g, row: N, col: 1 }, { t: w, off, row: 1, col: LDB }, {
    M,
    N: K,
    K: N,
  });
  return out;
}

/** The uniform block of shaders/backward.wgsl (struct P), by field name; unset fields are 0. */
function bwdParams(
  o: {
    rows?: number;
    n: number;
    mode?: number;
    center?: boolean;
    scale?: number;
    tokStride?: number;
  },
): Param[] {
  const { rows = 0, n, mode = 0, center = false, scale = 0, tokStride = 0 } = o;
  return [rows, n, mode, center ? 1 : 0, f32(scale), tokStride, 0, 0];
}

function bwd(
  entry: string,
  params: Param[],
  buffers: (Tensor | undefined)[],
  groups: [number, number?],
): void {
  dispatch(pipeline(SHADERS.backward, entry), params, buffers.map((t) => t?.buffer), groups);
}

/**
 * g * act'(x) for an activation function by name.
 *
 * @example
 * ```ts
 * const gPre = activationGrad(gPost, pre, "gelu_new");
 * ```
 */
export function activationGrad(g: Tensor, x: Tensor, fn: string): Tensor {
  const code = ACT_CODES[fn];
  if (code === undefined || code > 3) throw new ShapeError(`No gradient for activation "${fn}".`);
  const out = Tensor.empty(x.shape);
  bwd("act_grad", bwdParams({ n: x.size, mode: code }), [g, x, out], grid256(x.size));
  return out;
}

/**
 * Gradients of post = act(pre) * lin: [dL/dpre, dL/dlin].
 *
 * @example
 * ```ts
 * const [gPre, gLin] = gatedGrad(g, pre, lin, "silu");
 * ```
 */
export function gatedGrad(g: Tensor, pre: Tensor, lin: Tensor, fn: string): [Tensor, Tensor] {
  const code = ACT_CODES[fn];
  const a = Tensor.empty(pre.shape), b = Tensor.empty(pre.shape);
  bwd(
    "gated_grad",
    bwdParams({ n: pre.size, mode: code }),
    [g, pre, a, lin, b],
    grid256(pre.size),
  );
  return [a, b];
}

/**
 * g where `acts` is non-zero (optionally times a per-column scale): the gradient through ReLU,
 * JumpReLU, top-k and gates, whose active set is where the output is non-zero.
 *
 * @example
 * ```ts
 * const gPre = maskGrad(gPost, post);
 * ```
 */
export function maskGrad(g: Tensor, acts: Tensor, scale?: Tensor): Tensor {
  const n = acts.shape.at(-1) ?? 1;
  const out = Tensor.empty(acts.shape);
  bwd("mask_grad", bwdParams({ rows: acts.size / n, n, mode: scale ? 1 : 0 }), [
    g,
    acts,
    out,
    scale ?? acts,
  ], grid256(acts.size));
  return out;
}

/**
 * Softmax backward over the last dimension: pattern * (g - sum(g * pattern)).
 *
 * @example
 * ```ts
 * const gScores = softmaxGrad(gPattern, pattern);
 * ```
 */
export function softmaxGrad(g: Tensor, pattern: Tensor): Tensor {
  const n = pattern.shape.at(-1) ?? 1;
  const rows = pattern.size / n;
  const out = Tensor.empty(pattern.shape);
  dispatchRows(SHADERS.backward, "softmax_grad", bwdParams({ rows, n }), [
    g.buffer,
    pattern.buffer,
    out.buffer,
  ], rows);
  return out;
}

/**
 * Backward of normalized = (x - mean) / scale (LN) or x / scale (RMS) with the scale an input
 * of its own: [dL/dx, dL/dscale].
 *
 * @example
 * ```ts
 * const [gx, gScale] = normApplyGrad(g, x, scale, "LN");
 * ```
 */
export function normApplyGrad(
  g: Tensor,
  x: Tensor,
  scale: Tensor,
  kind: NormKind,
): [Tensor, Tensor] {
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  const gx = Tensor.empty(x.shape), gs = Tensor.empty(scale.shape);
  const params = bwdParams({ rows, n: d, center: kind === "LN" });
  dispatchRows(SHADERS.backward, "norm_apply_grad", params, [
    g.buffer,
    x.buffer,
    gx.buffer,
    scale.buffer,
    gs.buffer,
  ], rows);
  return [gx, gs];
}

/**
 * Backward of scale = sqrt(mean((x - mean)^2) + eps) (LN) or sqrt(mean(x^2) + eps) (RMS): dL/dx.
 *
 * @example
 * ```ts
 * const gx = normScaleGrad(gScale, x, scale, "LN");
 * ```
 */
export function normScaleGrad(gScale: Tensor, x: Tensor, scale: Tensor, kind: NormKind): Tensor {
  const d = x.shape.at(-1) ?? 1;
  const rows = x.size / d;
  const gx = Tensor.empty(x.shape);
  const params = bwdParams({ rows, n: d, center: kind === "LN" });
  dispatchRows(SHADERS.backward, "norm_scale_grad", params, [
    gScale.buffer,
    x.buffer,
    gx.buffer,
    scale.buffer,
  ], rows);
  return gx;
}

/**
 * dL/dlogits of the mean next-token loss times `scale` (1 / number of predicted tokens for the
 * mean): softmax - one-hot of the next token, zero on each row's last position.
 *
 * @example
 * ```ts
 * const g = lossGrad(logits, tokens, 1 / (B * (P - 1)));
 * ```
 */
export function lossGrad(logits: Tensor, tokens: Tensor, scale: number): Tensor {
  const [B, P, V] = logits.shape;
  const out = Tensor.empty(logits.shape);
  const params = bwdParams({ rows: B * P, n: V, scale, tokStride: P });
  dispatchRows(SHADERS.backward, "loss_grad", params, [
    undefined,
    logits.buffer,
    out.buffer,
    undefined,
    undefined,
    tokens.buffer,
  ], B * P);
  return out;
}

/**
 * Backward of SAELens's input normalisation (see {@link rowNorm}): dL/dx from dL/dnormed, with
 * the statistics' dependence on x included.
 *
 * @example
 * ```ts
 * const gx = rowNormInGrad(g, x, stats, "layerNormIn");
 * ```
 */
export function rowNormInGrad(
  g: Tensor,
  x: Tensor,
  stats: Tensor,
  mode: "constantIn" | "layerNormIn",
  eps = 1e-5,
): Tensor {
  const n = x.shape.at(-1) ?? 1;
  const rows = x.size / n;
  const out = Tensor.empty(x.shape);
  bwd(
    "rownorm_in_grad",
    bwdParams({ rows, n, mode: ROW_NORM[mode], scale: eps }),
    [g, x, out, stats],
    gridRows(rows),
  );
  return out;
}

/**
 * Backward of the reconstruction's denormalisation: [dL/dr, the part of dL/dx through the
 * statistics of the SAE input x].
 *
 * @example
 * ```ts
 * const [gr, gx] = rowNormOutGrad(g, recons, stats, x, "layerNormOut");
 * ```
 */
export function rowNormOutGrad(
  g: Tensor,
  r: Tensor,
  stats: Tensor,
  x: Tensor,
  mode: "constantOut" | "layerNormOut",
): [Tensor, Tensor] {
  const n = r.shape.at(-1) ?? 1;
  const rows = r.size / n;
  const gr = Tensor.empty(r.shape), gx = Tensor.empty(x.shape);
  bwd("rownorm_out_grad", bwdParams({ rows, n, mode: ROW_NORM[mode] }), [
    g,
    r,
    gr,
    stats,
    gx,
    undefined,
    x,
  ], gridRows(rows));
  return [gr, gx];
}
