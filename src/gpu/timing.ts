/**
 * GPU timing with `timestamp-query`: the GPU time between two markers around recorded work, no
 * matter how many submissions it spans. Used by the benchmarks.
 *
 * @example
 * ```ts
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
 * const ms = await gpuTimeMs(() => { ops.matmul(a, b).dispose(); });
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
