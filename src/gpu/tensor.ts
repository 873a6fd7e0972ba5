/**
 * `Tensor`: a GPU buffer with a shape. Creating one uploads; `toArray()` is the one way data comes
 * back. Arithmetic on tensors (`add`, `mul`, `fillAt`, ...) is recorded on the GPU with no CPU
 * round trip, which is what hooks need for patching, ablation and steering.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 *
 * await initGpu();
 * using t = Tensor.from([1, 2, 3, 4], [2, 2]);
 * using u = t.scale(2).add(1);
 * assert.deepEqual(await u.toArray(), new Float32Array([3, 5, 7, 9]));
 * ```
 * @module
 */
import { DisposedError, GpuError, ShapeError } from "../errors.ts";
import {
  acquireBuffer,
  copyBuffer,
  createDataBuffer,
  deferDestroy,
  readBuffers,
  releaseBuffer,
  runtime,
} from "./runtime.ts";
import { currentCall } from "./call.ts";
import { recordHostInts } from "./host_ints.ts";

/** Element types a tensor can hold. */
export type DType = "float32" | "float16" | "int32";

/** Bytes per element of a dtype. */
export function dtypeBytes(d: DType): number {
  return d === "float16" ? 2 : 4;
}

/**
 * Tensors created while an arena is open are disposed when it closes, unless kept. Each model call
 * has its own stack of arenas (its {@link CallRecord}), so a tensor that code outside the call
 * makes meanwhile (another task) is never the call's to free; code outside every call uses this
 * module's own stack.
 */
const outsideCalls: Set<Tensor>[] = [];

/** The arena stack of the running call, or of code outside every call. */
function arenaStack(): Set<Tensor>[] {
  return (currentCall()?.arenas as Set<Tensor>[] | undefined) ?? outsideCalls;
}

/** The arena each tensor is in (whichever call's stack holds it). */
const arenaOf = new WeakMap<Tensor, Set<Tensor>>();

/** What to run when a tensor is disposed (see {@link onDispose}). */
const disposers = new WeakMap<Tensor, (() => void)[]>();

/**
 * Runs `fn` once when `t` is disposed: for GPU resources kept alongside a tensor (a kernel's copy
 * of a weight in another layout), which must go when it does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { onDispose } from "./tensor.ts";
 *
 * await initGpu();
 * const w = Tensor.from([1, 2, 3, 4], [2, 2]);
 * let freed = 0;
 * onDispose(w, () => freed++);
 * w.dispose();
 * w.dispose(); // idempotent: runs once
 * assert.equal(freed, 1);
 * ```
 */
export function onDispose(t: Tensor, fn: () => void): void {
  const list = disposers.get(t);
  if (list) list.push(fn);
  else disposers.set(t, [fn]);
}

/** Runs (once) what {@link onDispose} registered for `t`. */
function runDisposers(t: Tensor): void {
  const fns = disposers.get(t);
  if (!fns) return;
  disposers.delete(t);
  for (const fn of fns) fn();
}

/** Takes `t` out of its arena: it is no longer freed when that arena closes. */
function leaveArena(t: Tensor): void {
  arenaOf.get(t)?.delete(t);
  arenaOf.delete(t);
}

/**
 * The elementwise kernels behind Tensor's arithmetic ({@link Tensor.add} and the rest). Their
 * module, kernels/elementwise.ts, builds on this one (its launchers make tensors), so this one
 * cannot import it: it hands them over with {@link provideArithmetic} when it loads, which every
 * way to a model, an SAE or the kernels (mod.ts, src/gpu/ops.ts) does.
 */
export interface TensorArithmetic {
  /** `a op b` elementwise, b's shape equal to a's or a suffix of it. */
  binary(a: Tensor, b: Tensor, op: "add" | "sub" | "mul"): Tensor;
  /** `a * s + t` elementwise. */
  affine(a: Tensor, s: number, t: number): Tensor;
  /** A copy of `a` with the entries at `indices` along `dim` set to `value`. */
  fillAt(a: Tensor, dim: number, indices: number[], value: number): Tensor;
}

let arithmetic: TensorArithmetic | null = null;

/**
 * Installs the kernels of Tensor's arithmetic (called once, by kernels/elementwise.ts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import "./kernels/elementwise.ts"; // calls provideArithmetic on import
 *
 * await initGpu();
 * using t = Tensor.from([1, 2], [2]);
 * using u = t.mul(t); // arithmetic works once the kernels are installed
 * assert.deepEqual([...await u.toArray()], [1, 4]);
 * ```
 */
export function provideArithmetic(a: TensorArithmetic): void {
  arithmetic = a;
}

function arith(): TensorArithmetic {
  if (!arithmetic) {
    throw new GpuError(
      "Tensor arithmetic needs the elementwise kernels: import hooklens from mod.ts (or " +
        "src/gpu/ops.ts), not src/gpu/tensor.ts alone.",
    );
  }
  return arithmetic;
}

/**
 * Opens an arena: tensors created until {@link closeArena} are freed then.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { closeArena, openArena } from "./tensor.ts";
 *
 * await initGpu();
 * const arena = openArena();
 * const tmp = Tensor.from([1, 2], [2]);
 * const kept = tmp.scale(3);
 * closeArena(arena, [kept]);
 * assert.ok(tmp.disposed && !kept.disposed);
 * kept.dispose();
 * ```
 */
export function openArena(): Set<Tensor> {
  const a = new Set<Tensor>();
  arenaStack().push(a);
  return a;
}

/**
 * Closes an arena (must be the innermost) and disposes its tensors except those in `keep`, which
 * move to the enclosing arena (if any).
 */
export function closeArena(arena: Set<Tensor>, keep: Iterable<Tensor> = []): void {
  const arenas = arenaStack();
  const i = arenas.lastIndexOf(arena);
  if (i >= 0) arenas.splice(i, 1);
  const kept = new Set(keep);
  const parent = arenas.at(-1);
  for (const t of arena) {
    arenaOf.delete(t);
    if (!kept.has(t)) t.dispose();
    else if (parent) { // a kept tensor now belongs to the enclosing arena
      parent.add(t);
      arenaOf.set(t, parent);
    }
  }
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

function checkShape(shape: readonly number[]): void {
  if (!shape.every((s) => Number.isInteger(s) && s >= 0)) {
    throw new ShapeError(`Invalid tensor shape [${shape.join(", ")}]: use non-negative integers.`);
  }
}

/** A GPU buffer with a shape. See the module docs. */
export class Tensor implements Disposable {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  #buffer: GPUBuffer | null;
  #pooled: boolean;
  #base: Tensor | null;

  /**
   * Wraps a buffer. Prefer {@link Tensor.from} and {@link Tensor.empty}.
   *
   * @param buffer the GPU buffer (at least numel * bytes long).
   * @param shape dimensions.
   * @param dtype element type.
   * @param pooled whether disposing returns the buffer to the pool (else destroys it).
   * @param base for views: the tensor that owns the buffer.
   */
  constructor(
    buffer: GPUBuffer,
    shape: readonly number[],
    dtype: DType = "float32",
    pooled = true,
    base: Tensor | null = null,
  ) {
    checkShape(shape);
    this.#buffer = buffer;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.#pooled = pooled;
    this.#base = base;
    const arena = arenaStack().at(-1);
    if (arena) {
      arena.add(this);
      arenaOf.set(this, arena);
    }
  }

  /**
   * Uploads data as a new tensor.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { initGpu, ShapeError, Tensor } from "@hooklens/hooklens";
   *
   * await initGpu();
   * using t = Tensor.from(new Float32Array(6), [2, 3]);
   * using ids = Tensor.from([5, 7], [1, 2], "int32");
   * assert.equal(ids.dtype, "int32");
   * assert.throws(() => Tensor.from([1, 2, 3], [2, 2]), ShapeError);
   * ```
   */
  static from(data: ArrayLike<number>, shape: number[], dtype: DType = "float32"): Tensor {
    checkShape(shape);
    const n = numel(shape);
    if (data.length !== n) {
      throw new ShapeError(
        `Tensor.from: ${data.length} values do not fill shape [${
          shape.join(", ")
        }] (${n} elements).`,
      );
    }
    if (dtype === "float16" && !runtime().gpu.hasF16) {
      throw new ShapeError(
        "Tensor.from: float16 needs the adapter's shader-f16 feature; upload float32.",
      );
    }
    // Typed arrays of the stored type are uploaded as they are (no CPU copy of large weights).
    const arr = dtype === "int32"
      ? (data instanceof Int32Array ? data : Int32Array.from(data))
      : dtype === "float16"
      ? Float16Array.from(data)
      : (data instanceof Float32Array ? data : Float32Array.from(data));
    const t = new Tensor(createDataBuffer(arr, "tensor"), shape, dtype, false);
    if (arr instanceof Int32Array) recordHostInts(t, arr); // token ids checkable without readback
    return t;
  }

  /**
   * A new tensor with uninitialised contents from the buffer pool.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { initGpu, Tensor } from "@hooklens/hooklens";
   *
   * await initGpu();
   * using t = Tensor.empty([4, 4]); // contents undefined until written
   * assert.equal(t.size, 16);
   * ```
   */
  static empty(shape: readonly number[], dtype: DType = "float32"): Tensor {
    checkShape(shape);
    return new Tensor(acquireBuffer(Math.max(4, numel(shape) * dtypeBytes(dtype))), shape, dtype);
  }

  /** The GPU buffer; throws if the tensor was disposed. */
  get buffer(): GPUBuffer {
    if (!this.#buffer || (this.#base && this.#base.disposed)) {
      throw new DisposedError(
        `Tensor [${this.shape.join(", ")}] was used after dispose(): ` +
          "keep it alive (or clone it) while you need it.",
      );
    }
    return this.#buffer;
  }

  /** Whether dispose() was called. */
  get disposed(): boolean {
    return this.#buffer === null || (this.#base !== null && this.#base.disposed);
  }

  /** Whether this tensor is a view sharing another tensor's buffer (see {@link Tensor.reshape}). */
  get isView(): boolean {
    return this.#base !== null;
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }

  /**
   * Reads the data back to the CPU (flushes recorded GPU work and waits for it).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { initGpu, Tensor } from "@hooklens/hooklens";
   *
   * await initGpu();
   * using t = Tensor.from([1.5, -2], [2]);
   * const values = await t.toArray();
   * assert.deepEqual(values, new Float32Array([1.5, -2]));
   * ```
   */
  async toArray(): Promise<Float32Array | Int32Array> {
    const bytes = this.size * dtypeBytes(this.dtype);
    if (bytes === 0) return this.dtype === "int32" ? new Int32Array(0) : new Float32Array(0);
    const [buf] = await readBuffers([{ buffer: this.buffer, bytes }]);
    if (this.dtype === "int32") return new Int32Array(buf);
    if (this.dtype === "float16") return Float32Array.from(new Float16Array(buf));
    return new Float32Array(buf);
  }

  /** Elementwise `this + o`; `o` a number, a same-shape tensor or one whose shape is a suffix. */
  add(o: Tensor | number): Tensor {
    return typeof o === "number" ? arith().affine(this, 1, o) : arith().binary(this, o, "add");
  }

  /** Elementwise `this - o` (broadcasting as {@link Tensor.add}). */
  sub(o: Tensor | number): Tensor {
    return typeof o === "number" ? arith().affine(this, 1, -o) : arith().binary(this, o, "sub");
  }

  /** Elementwise `this * o` (broadcasting as {@link Tensor.add}). */
  mul(o: Tensor | number): Tensor {
    return typeof o === "number" ? arith().affine(this, o, 0) : arith().binary(this, o, "mul");
  }

  /** `this * s`. */
  scale(s: number): Tensor {
    return arith().affine(this, s, 0);
  }

  /**
   * A copy with every element whose index along `dim` is in `indices` set to `value`, e.g.
   * `acts.fillAt(-1, [3], 0)` zeroes SAE latent 3. Negative `dim` counts from the end.
   */
  fillAt(dim: number, indices: number[], value: number): Tensor {
    return arith().fillAt(this, dim, indices, value);
  }

  /** A copy in a new buffer (a buffer-to-buffer copy, recorded like a kernel; any dtype). */
  clone(): Tensor {
    const out = Tensor.empty(this.shape, this.dtype);
    const bytes = Math.ceil((this.size * dtypeBytes(this.dtype)) / 4) * 4;
    if (bytes > 0) copyBuffer(this.buffer, out.buffer, bytes);
    return out;
  }

  /**
   * The same data under another shape (same element count); shares the buffer, so it is valid
   * while this tensor is. One dimension may be -1.
   */
  reshape(shape: number[]): Tensor {
    const s = [...shape];
    const neg = s.indexOf(-1);
    if (neg >= 0) s[neg] = this.size / numel(s.filter((_, i) => i !== neg));
    if (numel(s) !== this.size || !Number.isInteger(s[neg] ?? 0)) {
      throw new ShapeError(`Cannot reshape [${this.shape.join(", ")}] to [${shape.join(", ")}].`);
    }
    return new Tensor(this.buffer, s, this.dtype, false, this.#base ?? this);
  }

  /**
   * Moves this tensor's buffer into a new tensor of another shape (same element count), without a
   * copy; this one counts as disposed afterwards.
   */
  moveTo(shape: number[]): Tensor {
    if (numel(shape) !== this.size || this.#base) {
      throw new ShapeError(`Cannot move [${this.shape.join(", ")}] to [${shape.join(", ")}].`);
    }
    const b = this.buffer;
    const t = new Tensor(b, shape, this.dtype, this.#pooled);
    this.#buffer = null;
    leaveArena(this);
    runDisposers(this);
    return t;
  }

  /** Removes this tensor from the enclosing forward pass's arena so it outlives the pass. */
  keep(): this {
    leaveArena(this);
    return this;
  }

  /** Frees the buffer (returns it to the pool). Idempotent. */
  dispose(): void {
    const b = this.#buffer;
    if (!b) return;
    this.#buffer = null;
    leaveArena(this);
    runDisposers(this);
    if (this.#base) return;
    if (this.#pooled) releaseBuffer(b);
    else deferDestroy(b);
  }

  /** Same as {@link Tensor.dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
