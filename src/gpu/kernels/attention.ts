/**
 * Attention kernels: the one-pass causal attention (shaders/flash.wgsl) and rotary position
 * embeddings (shaders/attention.wgsl). The three-dispatch attention the model takes by default is
 * q·kᵀ and pattern·v through matmul.ts's gemm around softmax.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { flashFits, rotary } from "./attention.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * // Tables for n_ctx 2, rotary dim 2: position 0 no rotation, position 1 a quarter turn.
 * using table = Tensor.from([1, 1, 0, 0, 0, 0, 1, 1], [2, 2, 2]); // cos [2, 2] then sin [2, 2]
 * using q = Tensor.from([1, 0, 1, 0], [1, 2, 1, 2]); // [batch, pos, heads, d_head]
 * using rq = rotary(q, table, 2, 0);
 * assert.deepEqual(r4(await rq.toArray()), [1, 0, 0, 1]); // pairs (i, i + R/2) rotate
 * assert.equal(flashFits(64), true); // d_head 64 fits the fused kernel
 * assert.equal(flashFits(6), false); // not a multiple of 4
 * ```
 * @module
 */
import attentionWgsl from "../../../shaders/attention.wgsl" with { type: "text" };
import flashWgsl from "../../../shaders/flash.wgsl" with { type: "text" };
import { ShapeError } from "../../errors.ts";
import { dispatch, pipeline, type ShaderSource } from "../dispatch.ts";
import { runtime } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { assertF32, grid256 } from "./launch.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/flash.wgsl (strides in elements). */
const FLASH_P = uniforms({
  /** Query positions. */
  P: "u32",
  /** Key positions. */
  Pk: "u32",
  /** Query heads. */
  H: "u32",
  /** Query heads per KV head. */
  group: "u32",
  q_b: "u32",
  q_row: "u32",
  kv_b: "u32",
  kv_row: "u32",
  alpha: "f32",
  /** Position of the first query. */
  offset: "u32",
  /** Positions per batch row of the key mask (0: no mask). */
  mask_b: "u32",
  /** Key j also masked where the query's position - j >= window (0: no window). */
  window: "u32",
  /** Scores become softcap * tanh(score / softcap) before the mask (0: none). */
  softcap: "f32",
});

/** shaders/flash.wgsl (specialised by E, the head dimension). */
export const FLASH_SHADER: ShaderSource = shaderSource("flash", FLASH_P, flashWgsl);

/** The uniform block of shaders/attention.wgsl (rotary). */
const ROTARY_P = uniforms({
  /** Elements of x. */
  n: "u32",
  heads: "u32",
  d_head: "u32",
  /** Rotary dims of each head. */
  rot: "u32",
  /** Positions of x. */
  pos: "u32",
  /** Position of x's first row. */
  offset: "u32",
  /** Rows of the cos/sin table. */
  n_ctx: "u32",
  /** 1: rotate backwards (the backward pass). */
  inverse: "u32",
});

/** shaders/attention.wgsl. */
export const ATTENTION_SHADER: ShaderSource = shaderSource("attention", ROTARY_P, attentionWgsl);

/** Shape of {@link flashAttention}'s operands. */
export interface FlashShape {
  /** Batch. */
  B: number;
  /** Query positions. */
  P: number;
  /** Key positions (offset + P with a KV cache). */
  Pk: number;
  /** Query heads. */
  H: number;
  /** Key/value heads. */
  Hkv: number;
  /** d_head. */
  E: number;
  /** Batch stride of k and v in elements (Pk * Hkv * E, or a KV cache's capacity). */
  kvStride: number;
  /** Score scale (1 / sqrt(d_head) as TransformerLens's attn_scale). */
  alpha: number;
  /** Position of the first query (causal mask: key j visible from query i when j <= offset + i). */
  offset: number;
  /**
   * Padding: int32 key mask [B, stride] (0: a pad key, never attended; a query that sees no key
   * gets z = 0).
   */
  mask?: { t: Tensor; stride: number };
  /** Sliding window: key j also hidden from query i when offset + i - j >= window (0: none). */
  window?: number;
  /** Scores become softCap * tanh(score / softCap) before the mask (0: none). */
  softCap?: number;
}

/**
 * Whether {@link flashAttention} handles these shapes on this device (d_head a multiple of 4, at
 * most 256, and its tiles fit the workgroup memory).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { flashFits } from "./attention.ts";
 *
 * await initGpu();
 * assert.equal(flashFits(64), true);
 * assert.equal(flashFits(512), false); // over 256
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
 * (Unused by default: see `tuning.attention.fused`; the default path is matmul.ts's gemm.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { flashAttention, flashFits } from "./attention.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * // Zero queries and keys: each query averages the values it may see (causal).
 * using q = Tensor.from(new Float32Array(8), [1, 2, 1, 4]); // [batch, pos, heads, d_head]
 * using k = Tensor.from(new Float32Array(8), [1, 2, 1, 4]);
 * using v = Tensor.from([1, 1, 1, 1, 3, 3, 3, 3], [1, 2, 1, 4]);
 * const shape = { B: 1, P: 2, Pk: 2, H: 1, Hkv: 1, E: 4, kvStride: 8, alpha: 0.5, offset: 0 };
 * assert.ok(flashFits(4));
 * using z = flashAttention(q, k, v, shape);
 * assert.deepEqual(r4(await z.toArray()), [1, 1, 1, 1, 2, 2, 2, 2]);
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
    pipeline(FLASH_SHADER, "main", { E: s.E }),
    FLASH_P.pack({
      P: s.P,
      Pk: s.Pk,
      H: s.H,
      group: s.H / s.Hkv,
      q_b: s.P * s.H * s.E,
      q_row: s.H * s.E,
      kv_b: s.kvStride,
      kv_row: s.Hkv * s.E,
      alpha: s.alpha,
      offset: s.offset,
      mask_b: s.mask?.stride ?? 0,
      window: s.window,
      softcap: s.softCap,
    }),
    [q.buffer, k.buffer, v.buffer, z.buffer, (s.mask?.t ?? q).buffer],
    [Math.ceil(s.P / 16), s.B * s.H, 1],
  );
  return z;
}

/**
 * Rotary position embedding (NeoX half-split pairs) on x [batch, pos, heads, d_head]: the first
 * `rotaryDim` dims of each head are rotated by the angles of position `pos + offset`; `table`
 * holds [cos | sin] for every position, each [n_ctx, rotaryDim]. `inverse` rotates backwards.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { rotary } from "./attention.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * // Tables for n_ctx 2, rotary dim 2: position 0 no rotation, position 1 a quarter turn.
 * using table = Tensor.from([1, 1, 0, 0, 0, 0, 1, 1], [2, 2, 2]); // cos [2, 2] then sin [2, 2]
 * using q = Tensor.from([1, 0, 1, 0], [1, 2, 1, 2]); // [batch, pos, heads, d_head]
 * using rq = rotary(q, table, 2, 0);
 * assert.deepEqual(r4(await rq.toArray()), [1, 0, 0, 1]); // pairs (i, i + R/2) rotate
 * using back = rotary(rq, table, 2, 0, true); // inverse
 * assert.deepEqual(r4(await back.toArray()), [1, 0, 1, 0]);
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
    pipeline(ATTENTION_SHADER, "rotary"),
    ROTARY_P.pack({
      n: x.size,
      heads: H,
      d_head: E,
      rot: rotaryDim,
      pos: P,
      offset,
      n_ctx: nCtx,
      inverse,
    }),
    [x.buffer, table.buffer, out.buffer],
    grid256(x.size),
  );
  return out;
}

/**
 * {@link rotary} in a padded batch: row b's token t sits at position max(t + offset, starts[b]) -
 * starts[b], `starts` int32 [batch] holding each row's first real position (TransformerLens's
 * offset position ids: positions count real tokens only).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { rotaryRows } from "./attention.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * // Tables for n_ctx 2, rotary dim 2: position 0 no rotation, position 1 a quarter turn.
 * using table = Tensor.from([1, 1, 0, 0, 0, 0, 1, 1], [2, 2, 2]);
 * using q = Tensor.from([1, 0, 1, 0, 1, 0, 1, 0], [2, 2, 1, 2]); // [batch, pos, heads, d_head]
 * using starts = Tensor.from([1, 0], [2], "int32"); // row 0 is left-padded by one
 * using rq = rotaryRows(q, table, 2, 0, starts);
 * // Row 0's real token is its position 0 (not rotated); row 1's second token is position 1.
 * assert.deepEqual(r4(await rq.toArray()), [1, 0, 1, 0, 1, 0, 0, 1]);
 * ```
 */
export function rotaryRows(
  x: Tensor,
  table: Tensor,
  rotaryDim: number,
  offset: number,
  starts: Tensor,
  inverse = false,
): Tensor {
  assertF32(x, "rotary");
  const [B, P, H, E] = x.shape;
  if (starts.dtype !== "int32" || starts.size < B) {
    throw new ShapeError(
      `rotaryRows: starts must be int32 with one entry per batch row (${B}), got ` +
        `${starts.dtype} [${starts.shape.join(", ")}].`,
    );
  }
  const nCtx = table.size / (2 * rotaryDim);
  const out = Tensor.empty(x.shape);
  dispatch(
    pipeline(ATTENTION_SHADER, "rotary_rows"),
    ROTARY_P.pack({
      n: x.size,
      heads: H,
      d_head: E,
      rot: rotaryDim,
      pos: P,
      offset,
      n_ctx: nCtx,
      inverse,
    }),
    [x.buffer, table.buffer, out.buffer, starts.buffer],
    grid256(x.size),
  );
  return out;
}
