/**
 * What the kernel families share: workgroup grids, the choice between GPU and software-adapter
 * variants (see `tuning.cpuVariants`), row-kernel dispatch, dtype checks and scratch outputs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { grid256 } from "./launch.ts";
 *
 * assert.deepEqual(grid256(1 << 20), [4096, 1]); // 256 elements per workgroup
 * ```
 * @module
 */
import { ShapeError } from "../../errors.ts";
import { dispatch, type Param, pipeline, type ShaderSource } from "../dispatch.ts";
import { runtime } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { tuning } from "../tuning.ts";

/**
 * Workgroup grid for `n` threads of 256 folded into 2D.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { grid256 } from "./launch.ts";
 *
 * assert.deepEqual(grid256(1000), [4, 1]);
 * assert.deepEqual(grid256(256 * 70000), [65535, 2]); // past the 65535 limit: a second row
 * ```
 */
export function grid256(n: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / 256));
  const x = Math.min(groups, 65535);
  return [x, Math.ceil(groups / x)];
}

/**
 * Workgroup grid for one workgroup per row, folded into 2D at 65535.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gridRows } from "./launch.ts";
 *
 * assert.deepEqual(gridRows(70000), [65535, 2]);
 * ```
 */
export function gridRows(rows: number): [number, number] {
  const x = Math.min(Math.max(rows, 1), 65535);
  return [x, Math.ceil(rows / 65535) || 1];
}

/**
 * Whether the software-adapter variants run (`tuning.cpuVariants.mode`, "auto": on a software
 * adapter).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tuning } from "../tuning.ts";
 * import { initGpu } from "@hooklens/hooklens";
 * import { useCpuVariants } from "./launch.ts";
 *
 * await initGpu();
 * const saved = tuning.cpuVariants.mode;
 * tuning.cpuVariants.mode = "never";
 * assert.equal(useCpuVariants(), false);
 * tuning.cpuVariants.mode = saved;
 * ```
 */
export function useCpuVariants(): boolean {
  const { mode } = tuning.cpuVariants;
  return mode === "always" || (mode === "auto" && runtime().gpu.isFallback);
}

/**
 * Whether the software-adapter kernels take their subgroup variants (`tuning.cpuVariants
 * .subgroups` "auto" and a device with 8-lane subgroups).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { useCpuVariants, useSubgroups } from "./launch.ts";
 *
 * const { fallback } = await initGpu();
 * const sg = useCpuVariants() && useSubgroups();
 * assert.equal(typeof sg, "boolean");
 * assert.equal(typeof fallback, "boolean");
 * ```
 */
export function useSubgroups(): boolean {
  return tuning.cpuVariants.subgroups === "auto" && runtime().gpu.subgroupSize === 8;
}

/**
 * Records a row kernel: `entry` with one workgroup per row, or on a software adapter its
 * `${entry}_rows` variant with one row per invocation of 64-wide workgroups (see lane_row in
 * shaders/reduce.wgsl).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { SOFTMAX_SHADER } from "./softmax.ts";
 * import { dispatchRows } from "./launch.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * // softmax.ts's own launch, by hand: rows of n values, one workgroup (or lane) per row.
 * using x = Tensor.from([0, Math.log(3)], [1, 2]);
 * using out = Tensor.empty([1, 2]);
 * dispatchRows(SOFTMAX_SHADER, "main", [1, 2, 0, 0], [x.buffer, out.buffer], 1);
 * assert.deepEqual(r4(await out.toArray()), [0.25, 0.75]);
 * ```
 */
export function dispatchRows(
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

/**
 * Throws a ShapeError unless `t` is float32 (`what` names the operation).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { ShapeError } from "../../errors.ts";
 * import { assertF32 } from "./launch.ts";
 *
 * await initGpu();
 * using ids = Tensor.from([1, 2], [2], "int32");
 * assert.throws(() => assertF32(ids, "softmax"), ShapeError); // names the op
 * ```
 */
export function assertF32(t: Tensor, what: string): void {
  if (t.dtype !== "float32") {
    throw new ShapeError(`${what} needs a float32 tensor, got ${t.dtype} [${t.shape.join(", ")}].`);
  }
}

const scratchTensors = new WeakMap<object, Tensor[]>();

/**
 * Small writable tensors (one set per device) bound where a kernel variant writes nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { scratch } from "./launch.ts";
 *
 * await initGpu();
 * const unused = scratch(1).buffer;
 * assert.equal(scratch(1).buffer, unused); // one set per device, reused
 * ```
 */
export function scratch(i = 0): Tensor {
  const r = runtime();
  let ts = scratchTensors.get(r);
  if (!ts) {
    ts = [];
    scratchTensors.set(r, ts);
  }
  ts[i] ??= Tensor.empty([64]).keep();
  return ts[i];
}
