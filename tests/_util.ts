// Shared test helpers: seeded random data, float64 references, error measures, pool poisoning.
import * as ops from "../src/gpu/ops.ts";
import { acquireBuffer, releaseBuffer, writeBuffer } from "../src/gpu/runtime.ts";
import { Tensor } from "../src/gpu/tensor.ts";
import { seededUniform } from "../src/model/random.ts";

/** Mulberry32: a small seeded PRNG (the one sampling uses). */
export const rng: (seed: number) => () => number = seededUniform;

/** n uniform values in [-1, 1) rounded to float32. */
export function randArray(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() * 2 - 1;
  return out;
}

/** ‖a − b‖ / ‖b‖ in float64. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

/** max |a − b| / max |b|, treating equal infinities as equal; NaN anywhere gives Infinity. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let mx = 0, mb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) return Infinity;
    if (!Number.isFinite(y) || !Number.isFinite(x)) {
      if (x !== y) return Infinity;
      continue;
    }
    mx = Math.max(mx, Math.abs(x - y));
    mb = Math.max(mb, Math.abs(y));
  }
  return mx / Math.max(mb, 1e-30);
}

/**
 * Puts NaN-filled buffers of `bytes` into the pool so the next op outputs land in poisoned memory:
 * an element the kernel does not write stays NaN and fails the comparison.
 */
export function poisonPool(bytes: number, count = 2): void {
  const bufs = Array.from({ length: count }, () => acquireBuffer(bytes));
  for (const b of bufs) writeBuffer(b, new Float32Array(b.size / 4).fill(NaN));
  for (const b of bufs) releaseBuffer(b);
}

/** Whether a file exists. */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Counts the calls of a device method (those `which` accepts) until disposed, when the method is
 * restored: `using made = countDeviceCalls(device, "createBindGroup"); ...; made.count`.
 */
export function countDeviceCalls<M extends "createBindGroup" | "createBuffer">(
  device: GPUDevice,
  method: M,
  which: (desc: Parameters<GPUDevice[M]>[0]) => boolean = () => true,
): { count: number } & Disposable {
  const orig = device[method];
  const counter = { count: 0, [Symbol.dispose]: () => void (device[method] = orig) };
  device[method] = ((desc: Parameters<GPUDevice[M]>[0]) => {
    if (which(desc)) counter.count++;
    return (orig as (d: typeof desc) => unknown).call(device, desc);
  }) as GPUDevice[M];
  return counter;
}

/** One dispatch as {@link recordDispatches} saw it. */
export interface RecordedDispatch {
  /** The pipeline's label: "shader:entry:defines" (see runtime.ts's pipeline()). */
  kernel: string;
  /** The 32-bit words of its uniform block (binding 0), when that block was made while recording. */
  params: Uint32Array | null;
}

/**
 * Records every compute dispatch until disposed (`using rec = recordDispatches(device)`;
 * `rec.dispatches`): its pipeline label and, for uniform blocks made while recording, their words
 * (uniform blocks are cached by value, so record from before the first call that makes them). The
 * device's and compute passes' methods are wrapped, and restored at disposal.
 */
export function recordDispatches(
  device: GPUDevice,
): { dispatches: RecordedDispatch[] } & Disposable {
  const dispatches: RecordedDispatch[] = [];
  const words = new WeakMap<GPUBuffer, Uint32Array>();
  const uniformOf = new WeakMap<GPUBindGroup, GPUBuffer>();
  const pass = GPUComputePassEncoder.prototype;
  const orig = {
    createBuffer: device.createBuffer,
    createBindGroup: device.createBindGroup,
    setPipeline: pass.setPipeline,
    setBindGroup: pass.setBindGroup,
  };
  let current: RecordedDispatch | null = null;
  device.createBuffer = (desc) => {
    const buf = orig.createBuffer.call(device, desc);
    if (desc.mappedAtCreation && (desc.usage & GPUBufferUsage.UNIFORM)) {
      // The bytes written into the mapped range, read just before unmap.
      const getMappedRange = buf.getMappedRange.bind(buf), unmap = buf.unmap.bind(buf);
      let range: ArrayBuffer | null = null;
      buf.getMappedRange = (...a) => (range = getMappedRange(...a));
      buf.unmap = () => {
        if (range) words.set(buf, new Uint32Array(range.slice(0)));
        unmap();
      };
    }
    return buf;
  };
  device.createBindGroup = (desc) => {
    const bg = orig.createBindGroup.call(device, desc);
    for (const e of desc.entries) {
      const res = e.resource as GPUBufferBinding;
      if (e.binding === 0 && res.buffer) uniformOf.set(bg, res.buffer);
    }
    return bg;
  };
  pass.setPipeline = function (this: GPUComputePassEncoder, p: GPUComputePipeline) {
    current = { kernel: p.label, params: null };
    dispatches.push(current);
    return orig.setPipeline.call(this, p);
  };
  pass.setBindGroup = function (
    this: GPUComputePassEncoder,
    i: number,
    bg: GPUBindGroup | null,
    ...rest: unknown[]
  ) {
    const u = bg && uniformOf.get(bg);
    if (current && i === 0 && u) current.params = words.get(u) ?? null;
    return (orig.setBindGroup as (...a: unknown[]) => void).call(this, i, bg, ...rest);
  } as typeof pass.setBindGroup;
  return {
    dispatches,
    [Symbol.dispose]: () => {
      device.createBuffer = orig.createBuffer;
      device.createBindGroup = orig.createBindGroup;
      pass.setPipeline = orig.setPipeline;
      pass.setBindGroup = orig.setBindGroup;
    },
  };
}

/** The shape of {@link flashOnArrays}' inputs: q [B, P, H, E], k and v [B, Pk, Hkv, E]. */
export type FlashCase = Pick<ops.FlashShape, "B" | "P" | "Pk" | "H" | "Hkv" | "E" | "offset">;

/**
 * ops.flashAttention on host arrays (k and v contiguous, scale 1 / sqrt(E)), with the output's
 * memory poisoned first so that an unwritten element shows; `extra` adds the mask, window or soft
 * cap. Returns z [B, P, H, E] read back.
 */
export async function flashOnArrays(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  c: FlashCase,
  extra: Partial<ops.FlashShape> = {},
): Promise<Float32Array> {
  const { B, P, Pk, H, Hkv, E } = c;
  using tq = Tensor.from(q, [B, P, H, E]);
  using tk = Tensor.from(k, [B, Pk, Hkv, E]);
  using tv = Tensor.from(v, [B, Pk, Hkv, E]);
  poisonPool(B * P * H * E * 4);
  using z = ops.flashAttention(tq, tk, tv, {
    ...c,
    kvStride: Pk * Hkv * E,
    alpha: 1 / Math.sqrt(E),
    ...extra,
  });
  return await z.toArray() as Float32Array;
}
