/**
 * Elementwise kernels (shaders/elementwise.wgsl): binary ops with suffix broadcast, affine, fillAt,
 * activations (plain and gated), a norm's weight and bias and the KV-cache write. Also the kernels behind Tensor's arithmetic (handed to tensor.ts when
 * this module loads).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { activation, binary } from "./elementwise.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([-1, 0, 1], [1, 3]);
 * using bias = Tensor.from([1, 1, 1], [3]);
 * using y = activation(binary(x, bias, "add"), "relu");
 * assert.deepEqual([...await y.toArray()], [0, 1, 2]);
 * ```
 * @module
 */
import activationsWgsl from "../../../shaders/activations.wgsl" with { type: "text" };
import elementwiseWgsl from "../../../shaders/elementwise.wgsl" with { type: "text" };
import { ShapeError } from "../../errors.ts";
import { dispatch, pipeline, type ShaderSource } from "../dispatch.ts";
import { createDataBuffer, deferDestroy } from "../runtime.ts";
import { numel, provideArithmetic, Tensor } from "../tensor.ts";
import { assertF32, grid256 } from "./launch.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/elementwise.wgsl. */
const ELEMENTWISE_P = uniforms({
  /** Elements of the output. */
  n: "u32",
  /** Elements of `b` (broadcast by modulo: b's shape is a suffix of a's); kv_write: the offset. */
  m: "u32",
  /** binary: 0 add, 1 sub, 2 mul; unary, gated: activation code. */
  op: "u32",
  /** affine: scale; fill_at: the value; softcap, softcap_grad: the cap. */
  s: "f32",
  /** affine: shift. */
  t: "f32",
  /** fill_at: product of dims after `dim`; kv_write: row length. */
  inner: "u32",
  /** fill_at: size of `dim`; kv_write: cache capacity. */
  dimn: "u32",
});

/** shaders/elementwise.wgsl (with shaders/activations.wgsl). */
export const ELEMENTWISE_SHADER: ShaderSource = shaderSource(
  "elementwise",
  ELEMENTWISE_P,
  activationsWgsl,
  elementwiseWgsl,
);

const BINARY_OPS = { add: 0, sub: 1, mul: 2 } as const;

/**
 * `a op b` elementwise; b's shape must equal a's or be a suffix of it (broadcast).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { binary } from "./elementwise.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 2, 3, 4], [2, 2]);
 * using bias = Tensor.from([10, 20], [2]); // a suffix of x's shape: broadcast
 * using y = binary(x, bias, "add");
 * assert.deepEqual([...await y.toArray()], [11, 22, 13, 24]);
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
    pipeline(ELEMENTWISE_SHADER, "binary"),
    ELEMENTWISE_P.pack({ n, m: Math.max(1, b.size), op: BINARY_OPS[op], inner: 1, dimn: 1 }),
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { scaleShift } from "./elementwise.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using normalized = Tensor.from([1, 2], [1, 2]);
 * using w = Tensor.from([2, 3], [2]);
 * using b = Tensor.from([1, 1], [2]);
 * using y = scaleShift(normalized, w, b); // normalized * w + b
 * assert.deepEqual([...await y.toArray()], [3, 7]);
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
    pipeline(ELEMENTWISE_SHADER, "scale_shift"),
    ELEMENTWISE_P.pack({ n: a.size, m: d, inner: 1, dimn: 1 }),
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { affine } from "./elementwise.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using x = Tensor.from([1, 2], [2]);
 * using y = affine(x, 2, 1); // 2x + 1
 * assert.deepEqual([...await y.toArray()], [3, 5]);
 * ```
 */
export function affine(a: Tensor, s: number, t: number): Tensor {
  assertF32(a, "affine");
  const out = Tensor.empty(a.shape);
  dispatch(
    pipeline(ELEMENTWISE_SHADER, "affine"),
    ELEMENTWISE_P.pack({ n: a.size, m: 1, s, t, inner: 1, dimn: 1 }),
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { fillAt } from "./elementwise.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using acts = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
 * using ablated = fillAt(acts, -1, [1], 0); // column 1 of the last dimension
 * assert.deepEqual([...await ablated.toArray()], [1, 0, 3, 4, 0, 6]);
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
    pipeline(ELEMENTWISE_SHADER, "fill_at"),
    ELEMENTWISE_P.pack({ n: a.size, m: 1, s: value, inner, dimn }),
    [a.buffer, undefined, out.buffer, maskBuf],
    grid256(a.size),
  );
  deferDestroy(maskBuf);
  return out;
}

provideArithmetic({ binary, affine, fillAt });

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
 * The activation code of `fn` (see {@link ACT_CODES}); throws a ShapeError naming the supported
 * ones.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { actCode } from "./elementwise.ts";
 *
 * assert.equal(actCode("gelu_new"), 0);
 * assert.equal(actCode("silu"), actCode("swish"));
 * ```
 */
export function actCode(fn: string): number {
  const code = ACT_CODES[fn];
  if (code === undefined) {
    throw new ShapeError(
      `Unsupported activation "${fn}": supported are ${Object.keys(ACT_CODES).join(", ")}.`,
    );
  }
  return code;
}

/**
 * Applies an activation function elementwise (optionally times `gate`, for gated MLPs).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { activation } from "./elementwise.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using pre = Tensor.from([-1, 0, 2], [3]);
 * using post = activation(pre, "relu");
 * assert.deepEqual([...await post.toArray()], [0, 0, 2]);
 * using gelu = activation(pre, "gelu_new");
 * assert.deepEqual(r4(await gelu.toArray()), [-0.1588, 0, 1.9546]);
 * ```
 */
export function activation(a: Tensor, fn: string, gate?: Tensor): Tensor {
  assertF32(a, "activation");
  const code = actCode(fn);
  const out = Tensor.empty(a.shape);
  dispatch(
    pipeline(ELEMENTWISE_SHADER, gate ? "gated" : "unary"),
    ELEMENTWISE_P.pack({ n: a.size, m: 1, op: code, inner: 1, dimn: 1 }),
    [a.buffer, gate?.buffer, out.buffer],
    grid256(a.size),
  );
  return out;
}

/**
 * Soft cap: `c * tanh(x / c)` elementwise (Gemma-2's final logits); -inf stays -inf.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { softCap } from "./elementwise.ts";
 *
 * await initGpu();
 * using logits = Tensor.from([-60, 0, 30], [3]);
 * using capped = softCap(logits, 30);
 * const got = await capped.toArray();
 * assert.ok(Math.abs(got[2] - 30 * Math.tanh(1)) < 1e-4 && got[1] === 0);
 * ```
 */
export function softCap(x: Tensor, c: number): Tensor {
  assertF32(x, "softCap");
  const out = Tensor.empty(x.shape);
  dispatch(
    pipeline(ELEMENTWISE_SHADER, "softcap"),
    ELEMENTWISE_P.pack({ n: x.size, m: 1, s: c }),
    [x.buffer, undefined, out.buffer],
    grid256(x.size),
  );
  return out;
}

/**
 * The gradient through a soft cap from its output y: `g * (1 - (y / c)^2)`, 0 where y is -inf
 * (a masked attention score).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { softCap, softCapGrad } from "./elementwise.ts";
 *
 * await initGpu();
 * using x = Tensor.from([15], [1]);
 * using y = softCap(x, 30);
 * using g = Tensor.from([1], [1]);
 * using gIn = softCapGrad(g, y, 30);
 * const [d] = await gIn.toArray(); // d/dx 30 tanh(x / 30) = 1 - tanh(0.5)^2
 * assert.ok(Math.abs(d - (1 - Math.tanh(0.5) ** 2)) < 1e-4);
 * ```
 */
export function softCapGrad(g: Tensor, y: Tensor, c: number): Tensor {
  assertF32(g, "softCapGrad");
  assertF32(y, "softCapGrad");
  const out = Tensor.empty(g.shape);
  dispatch(
    pipeline(ELEMENTWISE_SHADER, "softcap_grad"),
    ELEMENTWISE_P.pack({ n: g.size, m: y.size, s: c }),
    [g.buffer, y.buffer, out.buffer],
    grid256(g.size),
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { kvWrite } from "./elementwise.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * // k, v [batch 1, pos 1, heads 1, d_head 2] into caches [1, cap 4, 1, 2] at position 2
 * using k = Tensor.from([1, 2], [1, 1, 1, 2]);
 * using v = Tensor.from([3, 4], [1, 1, 1, 2]);
 * using kCache = Tensor.from(new Float32Array(8), [1, 4, 1, 2]);
 * using vCache = Tensor.from(new Float32Array(8), [1, 4, 1, 2]);
 * kvWrite(k, v, kCache, vCache, 2);
 * assert.deepEqual([...await kCache.toArray()], [0, 0, 0, 0, 1, 2, 0, 0]);
 * assert.deepEqual([...await vCache.toArray()], [0, 0, 0, 0, 3, 4, 0, 0]);
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
    pipeline(ELEMENTWISE_SHADER, "kv_write"),
    ELEMENTWISE_P.pack({ n: B * P * inner, m: offset, inner, dimn: cap }),
    [k.buffer, undefined, kCache.buffer, undefined, v.buffer, vCache.buffer],
    [Math.ceil(inner / 256), P, B],
  );
}
