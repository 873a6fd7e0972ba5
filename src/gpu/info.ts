/**
 * Public entry points to the GPU: acquire it and describe it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "./info.ts";
 *
 * const info = await initGpu();
 * assert.equal(typeof info.adapter, "string"); // e.g. "llvmpipe (LLVM ...)" on lavapipe
 * ```
 * @module
 */
import { initRuntime, runtime, type RuntimeStats } from "./runtime.ts";

/** What hooklens knows about the GPU in use. */
export interface GpuInfo {
  /** Adapter description. */
  adapter: string;
  /** Whether it is a software adapter (lavapipe). */
  fallback: boolean;
  /** `shader-f16` available. */
  f16: boolean;
  /** `timestamp-query` available. */
  timestamps: boolean;
  /** Subgroup size where hooklens enabled subgroups (software adapters with 8 lanes), else 0. */
  subgroupSize: number;
  /** Largest storage binding in bytes. */
  maxBindingBytes: number;
  /** Largest buffer in bytes. */
  maxBufferBytes: number;
  /** Counters: submits, dispatches, readbacks, pool size. */
  stats: RuntimeStats;
}

/**
 * Acquires the GPU (models and SAEs do this themselves; call it before `Tensor.from` otherwise).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 *
 * await initGpu();
 * using t = Tensor.from([1, 2], [2]); // tensors need the GPU acquired first
 * assert.deepEqual(t.shape, [2]);
 * ```
 */
export async function initGpu(): Promise<GpuInfo> {
  await initRuntime();
  return gpuInfo();
}

/**
 * Describes the acquired GPU and the runtime's counters.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gpuInfo, initGpu, Tensor } from "@hooklens/hooklens";
 *
 * await initGpu();
 * const before = gpuInfo().stats.submits;
 * using t = Tensor.from([1], [1]);
 * await t.toArray(); // a readback submits
 * assert.ok(gpuInfo().stats.submits > before);
 * ```
 */
export function gpuInfo(): GpuInfo {
  const r = runtime();
  return {
    adapter: r.gpu.adapterDescription,
    fallback: r.gpu.isFallback,
    f16: r.gpu.hasF16,
    timestamps: r.gpu.hasTimestamps,
    subgroupSize: r.gpu.subgroupSize,
    maxBindingBytes: r.gpu.limits.maxStorageBufferBindingSize,
    maxBufferBytes: r.gpu.limits.maxBufferSize,
    stats: { ...r.stats },
  };
}
