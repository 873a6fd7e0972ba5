// Shared test helpers: seeded random data, float64 references, error measures, pool poisoning.
import { acquireBuffer, releaseBuffer, writeBuffer } from "../src/gpu/runtime.ts";
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
