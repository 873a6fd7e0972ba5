/**
 * Public entry points to the GPU: acquire it and describe it.
 *
 * @example
 * ```ts
 * import { initGpu } from "./info.ts";
 * const info = await initGpu();
 * console.log(info.adapter);
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
 * await initGpu();
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
 * console.log(gpuInfo().stats.submits);
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
