/**
 * Every performance choice of the GPU layer in one object: which kernel variants run (software
 * adapter or GPU, subgroups), whether attention takes the one-pass kernel, how dense layers are
 * tiled and split, and when the buffer pool gives memory back. None of it changes results beyond
 * float rounding; tests and benchmarks set a section, run, and restore it. The measurements behind
 * each default are in `bench/RESULTS.md`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tuning } from "./tuning.ts";
 *
 * const saved = structuredClone(tuning);
 * tuning.cpuVariants.mode = "never"; // the GPU kernels, even on lavapipe
 * tuning.linear.splitK = "off";
 * // ... run and measure ...
 * Object.assign(tuning.cpuVariants, saved.cpuVariants);
 * Object.assign(tuning.linear, saved.linear);
 * assert.deepEqual(tuning, saved);
 * ```
 * @module
 */

/** Which kernel variants run (see {@link tuning}). */
export interface CpuVariantsTuning {
  /**
   * Kernel variants for software adapters (lavapipe): there an invocation is one lane of a CPU
   * SIMD register, a barrier is a coroutine switch and every buffer load a loop over the lanes, so
   * row kernels (softmax, norms) take one row per invocation and the general matmul a register
   * block with no workgroup memory (the `*_cpu` and `*_rows` entries). "auto" takes them on a
   * software adapter; tests and benchmarks force either way.
   */
  mode: "auto" | "always" | "never";
  /**
   * Where the device has 8-lane subgroups (see GpuDevice.subgroupSize), "auto" lets the
   * software-adapter kernels take the variants that load an operand once a subgroup and broadcast
   * it (the `linear_sg` and `matmul_sg` shaders), "never" the others.
   */
  subgroups: "auto" | "never";
}

/** Attention (see {@link tuning}). */
export interface AttentionTuning {
  /**
   * Whether the model takes the one-pass attention kernel (`flashAttention`) when nothing needs
   * the scores or the pattern (no hook can replace them, none is cached, no backward pass is
   * recorded). Off: the three-dispatch path (q·kᵀ, softmax, pattern·v) was faster on lavapipe and
   * on the H100 (bench/RESULTS.md). `bench/kernels_bench.ts` and `bench/model_bench.ts` time both.
   */
  fused: boolean;
}

/**
 * Dense layers (`linear` and its relatives). On a GPU: the matrix-vector kernel up to
 * `matvecMaxRows` rows, else tiles of 64x64 or 128x128, and split-K for outputs too small to fill
 * the GPU. On a software adapter: register blocks without workgroup memory (the `linear_cpu`
 * shader, or `linear_sg` where the device has 8-lane subgroups and `cpuVariants.subgroups` is
 * "auto"). Figures behind the defaults: bench/RESULTS.md ("Choices settled", 2026-11-28, and
 * "Outputs of few tiles on GPUs", 2026-11-27).
 */
export interface LinearTuning {
  /** K step of the 128x128 tiles (16 beat 8 on every shape timed warm on the H100). */
  bk: 8 | 16;
  /** Up to this many rows, the matrix-vector kernel (its `_cpu` variant on a software adapter). */
  matvecMaxRows: number;
  /** Up to this many rows, 64x64 tiles. */
  smallTileMaxRows: number;
  /** An output that needs fewer 128x128 tiles than this takes 64x64 tiles (unless split-K
   * applies): fewer leave a large GPU's compute units idle. */
  bigTileMinTiles: number;
  /** Split-K, the sum over K in slices added by a second dispatch: "off", a number of slices for
   * every tiled product, or "auto": an output of fewer than `bigTileMinTiles` tiles gets enough
   * slices, each at least `splitKMinDepth` deep, for `splitKTiles` workgroups. */
  splitK: "off" | "auto" | number;
  /** Workgroups "auto" split-K aims at: about two a compute unit on the largest GPUs. */
  splitKTiles: number;
  /** Least depth of an "auto" slice. With 256, GPT-2 small's attention and MLP outputs ([1024,
   * 768], 48 tiles) are split in 3 and 7 slices, and its q/k/v projection (144 tiles) in 3; with
   * 2048 only deep sums such as the SAE decode are. */
  splitKMinDepth: number;
  /** The register-blocked kernels: "auto" takes them on a software adapter above `matvecMaxRows`
   * rows (several times the tiled kernels there, where every buffer load is a loop over the SIMD
   * lanes), the "large" block for more than 32 rows and at least `cpuMinMacs` multiply-adds, else
   * the "small" one; or one of them forced, or "never". (On a large GPU the small block loses to
   * split-K.) */
  cpuKernel: "auto" | "large" | "small" | "never";
  /** Multiply-adds (M·K·N) from which "auto" takes the large block, which LLVM takes seconds a
   * variant to compile (once per machine: Mesa caches it on disk); smaller layers would not win
   * that back: with 2^21 the demo model's layers at 128 tokens took it, 2-4 ms less a forward, but
   * the first such forward on a machine compiled for 55 s instead of 2.6 (bench/RESULTS.md,
   * "lavapipe against numpy on a quiet machine"). */
  cpuMinMacs: number;
  /** On a software adapter, the matrix-vector products (up to `matvecMaxRows` rows) of a weight
   * declared frozen (`freezeWeight`: a model's dense weights) read it from a copy in a texture, made on
   * first use and freed with the weight: lavapipe fetches texels with vector gathers where each
   * storage-buffer load is a loop over the SIMD lanes (the demo's unembedding of one position
   * 2.3-2.6x faster, its generation 1.7-1.8x, bench/RESULTS.md "lavapipe against numpy on a quiet
   * machine"). A copy costs the weight's size again in float32, up to `matvecTextureMaxBytes` in
   * all (past that, the storage-buffer kernel). "never": always the storage-buffer kernel. */
  matvecTexture: "auto" | "never";
  /** Bytes the texture copies of {@link LinearTuning.matvecTexture} may take together. */
  matvecTextureMaxBytes: number;
}

/**
 * When the buffer pool gives free memory back. Above `freeLimitBytes` of free buffers at the end
 * of a call, `trimPoolIfLarge` destroys those no call among the last `keepCalls` took: a one-off
 * large call's buffers go, while workloads that alternate (runWithCache, then a forward with
 * hooks, and again) keep theirs and their bind groups.
 */
export interface PoolTuning {
  /** Free bytes the pool may hold at the end of a call before it trims. */
  freeLimitBytes: number;
  /** Calls whose buffers a trim keeps. */
  keepCalls: number;
  /** Bytes of free readback staging buffers kept for the next readback (a fresh large mappable
   * buffer costs tens of ms on a software adapter); `trimPool()` gives them back. */
  stagingKeepBytes: number;
}

/** The sections of {@link tuning}. */
export interface Tuning {
  /** Kernel variants for software adapters and subgroups. */
  cpuVariants: CpuVariantsTuning;
  /** Attention kernels. */
  attention: AttentionTuning;
  /** Dense-layer kernels. */
  linear: LinearTuning;
  /** The buffer pool. */
  pool: PoolTuning;
}

/**
 * The GPU layer's performance choices (see the module docs). Mutable: set a field, run, restore.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tuning } from "./tuning.ts";
 *
 * const saved = { ...tuning.linear };
 * tuning.linear.cpuKernel = "never"; // the tiled GPU kernels, even on lavapipe
 * // ...
 * Object.assign(tuning.linear, saved);
 * assert.equal(tuning.linear.cpuKernel, saved.cpuKernel);
 * ```
 */
export const tuning: Tuning = {
  cpuVariants: { mode: "auto", subgroups: "auto" },
  attention: { fused: false },
  linear: {
    bk: 16,
    matvecMaxRows: 4,
    smallTileMaxRows: 256,
    bigTileMinTiles: 160,
    splitK: "auto",
    splitKTiles: 320,
    splitKMinDepth: 256,
    cpuKernel: "auto",
    cpuMinMacs: 2 ** 24,
    matvecTexture: "auto",
    matvecTextureMaxBytes: 2 ** 30,
  },
  pool: { freeLimitBytes: 2 ** 30, keepCalls: 4, stagingKeepBytes: 2 ** 27 },
};
