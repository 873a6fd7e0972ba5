/**
 * Dense layers (shaders/linear.wgsl, and the generated `linear_cpu` / `linear_sg` shaders for
 * software adapters): x · W (+ bias) with fused epilogues (activation, residual add, SAE gates),
 * column blocks of a joint weight, q/k/v in one pass, and the backward g · Wᵀ. Which kernel runs
 * is `tuning.linear`'s choice: matrix-vector, 64x64 or 128x128 tiles with optional split-K on a
 * GPU, register blocks on a software adapter; shapes they cannot take go to matmul.ts's gemm.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { linear, linearSplit } from "./linear.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, K]
 * using W = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]); // [K, N]
 * using b = Tensor.from([0, 0, -5], [3]);
 * const [pre, post] = linear(x, W, b, { act: "relu" });
 * assert.deepEqual([...await pre.toArray()], [1, 2, -2]);
 * assert.deepEqual([...await post!.toArray()], [1, 2, 0]);
 * // W_Q | W_K | W_V [4, 12] = [I | 2I | 3I]: K and each part a multiple of 4 (dense kernels).
 * const eye = (i: number) => (i % 12) % 4 === Math.floor(i / 12) ? Math.floor((i % 12) / 4) + 1 : 0;
 * using wQKV = Tensor.from(Array.from({ length: 48 }, (_, i) => eye(i)), [4, 12]);
 * using x4 = Tensor.from([1, 2, 3, 4], [1, 4]);
 * const [q, k, v] = linearSplit(x4, wQKV, undefined, [4, 4, 4]);
 * assert.deepEqual([...await v.toArray()], [3, 6, 9, 12]);
 * for (const t of [pre, post!, q, k, v]) t.dispose();
 * ```
 * @module
 */
import activationsWgsl from "../../../shaders/activations.wgsl" with { type: "text" };
import linearWgsl from "../../../shaders/linear.wgsl" with { type: "text" };
import { ShapeError } from "../../errors.ts";
import { dispatch, pipeline, type ShaderSource } from "../dispatch.ts";
import { deferDestroy, runtime } from "../runtime.ts";
import { onDispose, Tensor } from "../tensor.ts";
import { tuning } from "../tuning.ts";
import { actCode, activation, binary } from "./elementwise.ts";
import { scratch, useCpuVariants, useSubgroups } from "./launch.ts";
import { linearCpuWgsl, linearSgWgsl } from "./linear_cpu_gen.ts";
import { gemm } from "./matmul.ts";
import { lazyShaderSource, shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of every dense-layer shader (linear, linear_cpu, linear_sg). */
const LINEAR_P = uniforms({
  /** Rows of the output. */
  M: "u32",
  /** Columns of the output (n1 + n2 + the third part with SPLIT). */
  N: "u32",
  /** Inner dimension. */
  K: "u32",
  /** Row stride of the weight. */
  LDB: "u32",
  has_bias: "u32",
  /** SPLIT: columns of the first and second outputs. */
  n1: "u32",
  n2: "u32",
  /** First column of the weight read (a column block of a joint weight). */
  boff: "u32",
  /** Split-K (linear only): depth of a slice (0: all of K) and number of slices. */
  kc: "u32",
  ks: "u32",
  /** matvec_tex / matvec_pack: the weight's columns per texture row. */
  per: "u32",
});

/** shaders/linear.wgsl (with shaders/activations.wgsl). */
export const LINEAR_SHADER: ShaderSource = shaderSource(
  "linear",
  LINEAR_P,
  activationsWgsl,
  linearWgsl,
);
/** The register-blocked dense kernels for software adapters (generated, linear_cpu_gen.ts). */
export const LINEAR_CPU_SHADER: ShaderSource = lazyShaderSource(
  "linear_cpu",
  LINEAR_P,
  () => activationsWgsl + linearCpuWgsl(),
);
/** Their variants for 8-lane subgroups (generated, linear_cpu_gen.ts). */
export const LINEAR_SG_SHADER: ShaderSource = lazyShaderSource(
  "linear_sg",
  LINEAR_P,
  () => activationsWgsl + linearSgWgsl(),
);

/** The values of {@link LINEAR_P} a product is launched with, before any split over K. */
type DenseParams = {
  M: number;
  N: number;
  K: number;
  LDB: number;
  has_bias: boolean;
  n1?: number;
  n2?: number;
  boff?: number;
};

/** Fused epilogue of {@link linear}. */
export interface LinearEpilogue {
  /** Also return act(x·W + b) (an activation name of elementwise.ts's ACT_CODES). */
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { linear } from "./linear.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, K]
 * using W = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]); // [K, N]
 * const [pre, post] = linear(x, W, undefined, { act: "relu" });
 * using _pre = pre;
 * using _post = post!;
 * assert.deepEqual([...await post!.toArray()], [1, 2, 3]);
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
  const act = epi.act ? actCode(epi.act) : undefined;
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
  const params: DenseParams = {
    M,
    N,
    K,
    LDB,
    has_bias: Boolean(bias),
    n1: o.split?.[0],
    n2: o.split?.[1],
    boff: o.boff,
  };
  const cpu = cpuKernel(M, K, N);
  // A padded weight (N < LDB, as W_U) without an epilogue: the CPU kernels' CROP stores, which
  // write the real columns of each quad straight into y [M, N] (bound as E3).
  const padded = o.boff === undefined && N !== LDB;
  if (cpu && (!padded || !d)) {
    const k = cpuDense(cpu);
    const groups: [number, number, number] = [Math.ceil(N / k.cols), Math.ceil(M / k.rows), 1];
    if (padded) {
      buffers[2] = scratch(2).buffer;
      buffers[6] = y.buffer;
    }
    dispatch(
      pipeline(k.shader, k.entry, { ...defines, CROP: padded }),
      LINEAR_P.pack(params),
      buffers,
      groups,
    );
    return;
  }
  // Shape classes: one row -> matrix-vector; else 64x64 or 128x128 tiles (see gpuTile).
  if (M > tuning.linear.matvecMaxRows) {
    tiled(gpuTile(M, N, K), { ...defines, TRANS: false }, params, buffers);
    return;
  }
  const entry = useCpuVariants() ? "matvec_cpu" : "matvec";
  const packed = entry === "matvec_cpu" && o.boff === undefined ? packedWeight(w) : null;
  if (packed) {
    const texBuffers = [...buffers, undefined, packed.view];
    texBuffers[1] = undefined; // B is read from the texture
    dispatch(
      pipeline(LINEAR_SHADER, "matvec_tex", {
        ...defines,
        BK: tuning.linear.bk,
        TRANS: false,
        SPLITK: false,
      }),
      LINEAR_P.pack({ ...params, kc: 0, ks: 1, per: packed.per }),
      texBuffers,
      [Math.ceil(N / 64), M, 1],
    );
    return;
  }
  dispatch(
    pipeline(LINEAR_SHADER, entry, {
      ...defines,
      BK: tuning.linear.bk,
      TRANS: false,
      SPLITK: false,
    }),
    LINEAR_P.pack({ ...params, kc: 0, ks: 1 }),
    buffers,
    [Math.ceil(N / (entry === "matvec" ? 64 : 256)), M, 1],
  );
}

/** Weights whose contents never change (see {@link freezeWeight}). */
const frozenWeights = new WeakSet<Tensor>();
/** Their copies packed for matvec_tex, made on first use (null: the layout does not fit). */
const packedWeights = new WeakMap<Tensor, { view: GPUTextureView; per: number } | null>();
/** Bytes of those copies alive (see `tuning.linear.matvecTextureMaxBytes`). */
let packedBytes = 0;

/**
 * Declares that a weight [K, LDB] will not change from now on (a model's weights once uploaded),
 * so that the dense kernels may keep a copy of it in another layout until it is disposed: on a
 * software adapter, the matrix-vector products of a frozen weight read it from a texture (see
 * `tuning.linear.matvecTexture`). Writing into a frozen weight afterwards leaves those copies
 * stale: freeze only what nothing writes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { freezeWeight, linear } from "./linear.ts";
 *
 * await initGpu();
 * using W = freezeWeight(Tensor.from([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], [4, 4]));
 * using x = Tensor.from([1, 2, 3, 4], [1, 4]);
 * const [y] = linear(x, W); // x · I
 * using _y = y;
 * assert.deepEqual([...await y.toArray()], [1, 2, 3, 4]);
 * ```
 */
export function freezeWeight(w: Tensor): Tensor {
  frozenWeights.add(w);
  return w;
}

/**
 * The texture copy of a frozen weight w [K, LDB] that matvec_tex reads, packed by matvec_pack
 * (recorded before the product that needs it) on first use and destroyed when w is disposed; null
 * when w is not frozen, `tuning.linear.matvecTexture` is "never", the layout would exceed the
 * device's texture size limit, or the copies would exceed `tuning.linear.matvecTextureMaxBytes`.
 */
function packedWeight(w: Tensor): { view: GPUTextureView; per: number } | null {
  if (tuning.linear.matvecTexture === "never" || !frozenWeights.has(w)) return null;
  const known = packedWeights.get(w);
  if (known !== undefined) return known;
  const [K, LDB] = w.shape;
  const r = runtime();
  const maxDim = r.gpu.device.limits.maxTextureDimension2D;
  const K4 = K / 4;
  const per = Math.min(Math.floor(maxDim / K4), LDB);
  const height = Math.ceil(LDB / Math.max(per, 1));
  if (per < 1 || height > maxDim) {
    packedWeights.set(w, null);
    return null;
  }
  const bytes = K4 * per * height * 16;
  if (packedBytes + bytes > tuning.linear.matvecTextureMaxBytes) return null; // (not remembered)
  const tex = r.gpu.device.createTexture({
    size: [K4 * per, height],
    format: "rgba32float",
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING,
    label: "packed weight",
  });
  packedBytes += bytes;
  r.stats.dataBytes += bytes;
  const view = tex.createView();
  const defines = {
    ACT: 0,
    RESID: false,
    GATE: 0,
    SPLIT: false,
    WT: w.dtype === "float16" ? "f16" : "f32",
    BK: tuning.linear.bk,
    TRANS: false,
    SPLITK: false,
  };
  const packBuffers: (GPUBuffer | GPUTextureView | undefined)[] = Array(10).fill(undefined);
  packBuffers[1] = w.buffer;
  packBuffers[9] = view;
  // Freed with the weight from here on, even if recording the pack throws.
  onDispose(w, () => {
    packedBytes -= bytes;
    r.stats.dataBytes -= bytes;
    deferDestroy(tex);
  });
  dispatch(
    pipeline(LINEAR_SHADER, "matvec_pack", defines),
    LINEAR_P.pack({ K, LDB, per }),
    packBuffers,
    [Math.ceil((K4 * per) / 64), height, 1],
  );
  const packed = { view, per };
  packedWeights.set(w, packed);
  return packed;
}

/**
 * Records the tiled dense kernel `entry` of shaders/linear.wgsl for an [M, N] output summed over
 * K, split over K in `splitFactor` slices (partial products, then splitk_sum through the epilogue)
 * when that is more than 1.
 */
function tiled(
  entry: "main" | "main64",
  defines: Record<string, number | boolean | string>,
  params: DenseParams,
  buffers: readonly GPUBuffer[],
): void {
  const { M, N, K } = params;
  const t = entry === "main64" ? 64 : 128;
  const [gx, gy] = [Math.ceil(N / t), Math.ceil(M / t)];
  const ks = splitFactor(gx * gy, K);
  const defs = { ...defines, BK: tuning.linear.bk };
  if (ks === 1) {
    const pipe = pipeline(LINEAR_SHADER, entry, { ...defs, SPLITK: false });
    dispatch(pipe, LINEAR_P.pack({ ...params, kc: 0, ks: 1 }), buffers, [gx, gy, 1]);
    return;
  }
  const kc = Math.ceil(K / ks / 16) * 16;
  const slices = Math.ceil(K / kc);
  const part = Tensor.empty([slices, M, N]);
  const p = LINEAR_P.pack({ ...params, kc, ks: slices });
  const partBuffers = [...buffers];
  partBuffers[2] = part.buffer;
  const pipe = pipeline(LINEAR_SHADER, entry, { ...defs, SPLITK: true });
  dispatch(pipe, p, partBuffers, [gx, gy, slices]);
  // splitk_sum reads no A or B (bindings 1 and 2 stay unbound), nor BK or TRANS: fixed, so that
  // the forward and the transposed products share one pipeline.
  dispatch(
    pipeline(LINEAR_SHADER, "splitk_sum", { ...defines, BK: 8, TRANS: false, SPLITK: false }),
    p,
    [undefined, undefined, ...buffers.slice(2), part.buffer],
    [Math.ceil(N / 256), Math.min(M, 65535), Math.ceil(M / 65535)],
  );
  part.dispose();
}

/** Into how many K slices {@link tiled} splits an output of `tiles` workgroups (see
 * `tuning.linear.splitK`). */
function splitFactor(tiles: number, K: number): number {
  const cfg = tuning.linear;
  if (cfg.splitK === "off") return 1;
  if (cfg.splitK !== "auto") {
    return Math.max(1, Math.min(Math.floor(cfg.splitK), Math.floor(K / 16)));
  }
  if (tiles >= cfg.bigTileMinTiles) return 1;
  return Math.max(
    1,
    Math.min(Math.ceil(cfg.splitKTiles / tiles), Math.floor(K / cfg.splitKMinDepth)),
  );
}

/**
 * x [.., K] · w[:, off .. off + n] (+ bias [n]) -> [.., n]: a column block of a joint weight (q, k
 * or v of W_Q | W_K | W_V), read in place by the dense kernels (the general matmul where K, the
 * block or its offset is not a multiple of 4, or for a few rows on a GPU).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { linearBlock } from "./linear.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, K]
 * using W = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]); // [K, N]
 * using bK = Tensor.from([10], [1]);
 * using k = linearBlock(x, W, 1, 1, bK); // column 1 of W, plus bias
 * assert.deepEqual([...await k.toArray()], [12]);
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
  if (aligned && (cpuKernel(M, K, n) || M > tuning.linear.matvecMaxRows)) {
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
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { linearSplit } from "./linear.ts";
 *
 * await initGpu();
 * // W_Q | W_K | W_V [4, 12] = [I | 2I | 3I]: K and each part a multiple of 4 (dense kernels).
 * const eye = (i: number) => (i % 12) % 4 === Math.floor(i / 12) ? Math.floor((i % 12) / 4) + 1 : 0;
 * using wQKV = Tensor.from(Array.from({ length: 48 }, (_, i) => eye(i)), [4, 12]);
 * using x4 = Tensor.from([1, 2, 3, 4], [1, 4]);
 * const [q, k, v] = linearSplit(x4, wQKV, undefined, [4, 4, 4]);
 * assert.deepEqual([...await q.toArray()], [1, 2, 3, 4]);
 * assert.deepEqual([...await k.toArray()], [2, 4, 6, 8]);
 * for (const t of [q, k, v]) t.dispose();
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
    // linear_sg: main 64x128, small 16x64.
    return cpu === "large"
      ? { shader: LINEAR_SG_SHADER, entry, rows: 64, cols: 128 }
      : { shader: LINEAR_SG_SHADER, entry, rows: 16, cols: 64 };
  }
  // linear_cpu: main 128x128, small 32x32.
  const t = cpu === "large" ? 128 : 32;
  return { shader: LINEAR_CPU_SHADER, entry, rows: t, cols: t };
}

/** The tiled GPU kernel for an [M, N] output summed over K: 128x128 tiles (`main`) unless the
 * rows are few, or the output needs fewer than `bigTileMinTiles` of them and split-K is not set
 * to fill the GPU instead (see `tuning.linear`). */
function gpuTile(M: number, N: number, K: number): "main" | "main64" {
  if (M <= tuning.linear.smallTileMaxRows) return "main64";
  const tiles = Math.ceil(M / 128) * Math.ceil(N / 128);
  if (tiles >= tuning.linear.bigTileMinTiles) return "main";
  return splitFactor(tiles, K) > 1 ? "main" : "main64";
}

/** Which register-blocked kernel {@link linear} takes, if any (see `tuning.linear.cpuKernel`). */
function cpuKernel(M: number, K: number, N: number): "large" | "small" | null {
  const mode = tuning.linear.cpuKernel;
  if (mode === "never") return null;
  if (mode !== "auto") return mode;
  if (!runtime().gpu.isFallback || M <= tuning.linear.matvecMaxRows) return null;
  // The large block's 128-row tile is mostly padding for a few rows: the small one (32) wins there.
  return M > 32 && M * K * N >= tuning.linear.cpuMinMacs ? "large" : "small";
}

// ---------------------------------------------------------------- backward

/**
 * dL/dx of a dense layer y = x · w (w [K, LDB], N real columns from column `off`): g [.., N] · wᵀ
 * -> [.., K].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { linearBack } from "./linear.ts";
 *
 * await initGpu();
 * using x = Tensor.from([1, 2], [1, 2]); // [rows, K]
 * using W = Tensor.from([1, 0, 1, 0, 1, 1], [2, 3]); // [K, N]
 * using gy = Tensor.from([1, 0, 1], [1, 3]); // dL/dy [rows, N]
 * using gx = linearBack(gy, W); // gy · Wᵀ
 * assert.deepEqual([...await gx.toArray()], [2, 1]);
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
  // Output columns are the weight's rows (K), summed over its N columns from `off`.
  const params: DenseParams = { M, N: K, K: N, LDB, has_bias: false, boff: off };
  if (cpu) {
    // The transposed register-blocked kernels: g · W[:, off..]ᵀ.
    const k = cpuDense(cpu);
    dispatch(
      pipeline(k.shader, `${k.entry}_t`, { ...defines, CROP: false }),
      LINEAR_P.pack(params),
      buffers,
      [Math.ceil(K / k.cols), Math.ceil(M / k.rows), 1],
    );
    return out;
  }
  if (aligned && M > tuning.linear.matvecMaxRows) {
    // The tiled dense kernels with the weight read transposed.
    tiled(gpuTile(M, K, N), { ...defines, TRANS: true }, params, buffers);
    return out;
  }
  gemm({ t: out, row: K, col: 1 }, { t: g, row: N, col: 1 }, { t: w, off, row: 1, col: LDB }, {
    M,
    N: K,
    K: N,
  });
  return out;
}
