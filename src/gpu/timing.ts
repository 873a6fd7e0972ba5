/**
 * GPU timing with `timestamp-query`: the GPU time between two markers around recorded work, no
 * matter how many submissions it spans, and a per-dispatch profile. Used by the benchmarks.
 *
 * @example Not run as a doc test: timings vary and the adapter may lack timestamp queries
 * ```
 * import { gpuTimeMs } from "./timing.ts";
 * const ms = await gpuTimeMs(async () => { (await model.forward(tokens)).dispose(); });
 * ```
 * @module
 */
import { encoder, flush, readBuffers, runtime } from "./runtime.ts";

let timer: { qs: GPUQuerySet; resolve: GPUBuffer; device: GPUDevice } | null = null;

/**
 * Runs `record` between two GPU timestamps and returns the GPU milliseconds between them, or null
 * when the adapter has no `timestamp-query`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { gpuTimeMs } from "./timing.ts";
 *
 * const { timestamps } = await initGpu();
 * using a = Tensor.from(new Float32Array(64), [8, 8]);
 * const ms = await gpuTimeMs(() => a.scale(2).dispose());
 * assert.ok(timestamps ? ms! >= 0 : ms === null); // null without timestamp-query
 * ```
 */
export async function gpuTimeMs(record: () => Promise<void> | void): Promise<number | null> {
  const r = runtime();
  if (!r.gpu.hasTimestamps) {
    await record();
    return null;
  }
  const device = r.gpu.device;
  if (!timer || timer.device !== device) {
    timer = {
      qs: device.createQuerySet({ type: "timestamp", count: 2 }),
      resolve: device.createBuffer({
        size: 16,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      }),
      device,
    };
  }
  const t = timer;
  encoder().beginComputePass({ timestampWrites: { querySet: t.qs, beginningOfPassWriteIndex: 0 } })
    .end();
  await record();
  const enc = encoder();
  enc.beginComputePass({ timestampWrites: { querySet: t.qs, endOfPassWriteIndex: 1 } }).end();
  enc.resolveQuerySet(t.qs, 0, 2, t.resolve, 0);
  flush();
  const [bytes] = await readBuffers([{ buffer: t.resolve, bytes: 16 }]);
  const [t0, t1] = new BigUint64Array(bytes);
  return Number(t1 - t0) / 1e6;
}

/** The GPU time of one dispatch in a {@link profileDispatches} profile. */
export interface DispatchTime {
  /** The pipeline: shader, entry point and specialisation, e.g. "linear:main:ACT=1,...". */
  kernel: string;
  /** Milliseconds between the timestamps around it. */
  ms: number;
}

/**
 * Runs `record` with every dispatch in a compute pass of its own between two timestamps and
 * returns each dispatch's GPU time in recording order, or null when the adapter has no
 * `timestamp-query`. The first `capacity` dispatches (at most 2048) are timed, the rest run
 * untimed (`truncated`). The passes add a little time of their own, so the sum exceeds
 * {@link gpuTimeMs} of the same work; use it for where the time goes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedTransformer } from "@hooklens/hooklens";
 * import { gpuInfo } from "./info.ts";
 * import { profileDispatches, summarizeProfile } from "./timing.ts";
 *
 * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * const p = await profileDispatches(async () => (await model.forward([[1, 2, 3]])).dispose());
 * if (gpuInfo().timestamps) assert.ok(summarizeProfile(p!.dispatches).length > 0);
 * else assert.equal(p, null);
 * ```
 */
export async function profileDispatches(
  record: () => Promise<void> | void,
  capacity = 2048,
): Promise<{ dispatches: DispatchTime[]; truncated: boolean } | null> {
  const r = runtime();
  if (!r.gpu.hasTimestamps) {
    await record();
    return null;
  }
  const cap = Math.max(1, Math.min(2048, Math.floor(capacity)));
  const device = r.gpu.device;
  const qs = device.createQuerySet({ type: "timestamp", count: 2 * cap });
  const labels: string[] = [];
  const before = r.stats.dispatches;
  r.profile = { qs, labels, capacity: cap };
  try {
    await record();
  } finally {
    r.profile = null;
  }
  const truncated = r.stats.dispatches - before > labels.length;
  const n = labels.length;
  if (n === 0) {
    qs.destroy();
    return { dispatches: [], truncated };
  }
  const resolve = device.createBuffer({
    size: 16 * n,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  encoder().resolveQuerySet(qs, 0, 2 * n, resolve, 0);
  try {
    const [bytes] = await readBuffers([{ buffer: resolve, bytes: 16 * n }]);
    const t = new BigUint64Array(bytes, 0, 2 * n);
    const dispatches = labels.map((kernel, i) => ({
      kernel,
      ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6,
    }));
    return { dispatches, truncated };
  } finally {
    resolve.destroy();
    qs.destroy();
  }
}

/**
 * A profile summed by kernel (pipeline), most time first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { summarizeProfile } from "./timing.ts";
 *
 * const rows = summarizeProfile([
 *   { kernel: "softmax:main:", ms: 0.2 },
 *   { kernel: "linear:main:ACT=1", ms: 0.5 },
 *   { kernel: "softmax:main:", ms: 0.2 },
 * ]);
 * assert.deepEqual(rows.map((r) => [r.kernel, r.count]), [["linear:main:ACT=1", 1], ["softmax:main:", 2]]);
 * ```
 */
export function summarizeProfile(
  dispatches: readonly DispatchTime[],
): { kernel: string; count: number; ms: number }[] {
  const by = new Map<string, { kernel: string; count: number; ms: number }>();
  for (const d of dispatches) {
    const e = by.get(d.kernel) ?? { kernel: d.kernel, count: 0, ms: 0 };
    e.count++;
    e.ms += d.ms;
    by.set(d.kernel, e);
  }
  return [...by.values()].sort((a, b) => b.ms - a.ms);
}
