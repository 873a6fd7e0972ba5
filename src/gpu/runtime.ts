/**
 * The GPU runtime: buffer pool, the one command stream every op is recorded into, and readback
 * (dispatch.ts records kernels into the stream through the pipeline cache kept here). Ops record
 * dispatches into the current command encoder; nothing is submitted until a readback (or an
 * explicit {@link flush}) needs it, so a forward pass without JS syncs is one `queue.submit`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { flush, initRuntime } from "./runtime.ts";
 *
 * const rt = await initRuntime();
 * flush(); // submits whatever was recorded (nothing here)
 * assert.equal(rt.encoder, null);
 * ```
 * @module
 */
import { GpuError, GpuLimitError, GpuUnavailableError } from "../errors.ts";
import { getDevice, type GpuDevice, gpuErrors } from "./device.ts";
import { tuning } from "./tuning.ts";

/** Usage flags of every pooled storage buffer. */
const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Counters that tests and benchmarks read. */
export interface RuntimeStats {
  /** `queue.submit` calls so far. */
  submits: number;
  /** Dispatches recorded so far. */
  dispatches: number;
  /** Readbacks (CPU sync points) so far. */
  readbacks: number;
  /** Buffers created by the pool (live ones, pooled free or in use). */
  poolBuffers: number;
  /** Bytes held by the pool (in use + free). */
  poolBytes: number;
  /** Buffers currently sitting free in the pool. */
  poolFree: number;
  /** Bytes of the buffers sitting free in the pool. */
  poolFreeBytes: number;
  /** Bytes of live non-pooled buffers (weights and other uploaded tensors) and of the texture
   * copies of frozen weights (see `tuning.linear.matvecTexture`). */
  dataBytes: number;
}

/** The state of one GPU device as hooklens uses it. */
export interface Runtime {
  /** The device and its adapter facts. */
  readonly gpu: GpuDevice;
  /** Counters. */
  readonly stats: RuntimeStats;
  /** Free pooled buffers by bucket size. */
  readonly free: Map<number, GPUBuffer[]>;
  /** Free readback staging buffers by bucket size (see {@link readBuffers}). */
  readonly staging: Map<number, GPUBuffer[]>;
  /** Compiled pipelines keyed by shader, entry point and specialisation. */
  readonly pipelines: Map<string, GPUComputePipeline>;
  /** Immutable uniform buffers keyed by their contents. */
  readonly uniforms: Map<string, GPUBuffer>;
  /** Encoder being recorded into, or null when nothing is pending. */
  encoder: GPUCommandEncoder | null;
  /** The compute pass consecutive dispatches share (ended before copies and at submit). */
  pass: GPUComputePassEncoder | null;
  /** Bind groups by pipeline, buffers and uniform block: a forward pass reuses the last one's. */
  readonly bindGroups: Map<string, GPUBindGroup>;
  /** Small ids of buffers and pipelines for cache keys. */
  readonly ids: WeakMap<object, number>;
  /** Buffers (and textures) to destroy once the commands recorded so far are submitted. */
  readonly deferred: (GPUBuffer | GPUTexture)[];
  /** Pooled buffers this device's pool created (a buffer of a lost device never re-enters). */
  readonly owned: WeakSet<GPUBuffer>;
  /** Pooled buffers by the call ({@link trimPoolIfLarge} count) that last took them. */
  readonly lastUse: WeakMap<GPUBuffer, number>;
  /** Calls ended so far (each ends with {@link trimPoolIfLarge}). */
  calls: number;
  /** Live non-pooled buffers (counted in stats.dataBytes until destroyed). */
  readonly data: WeakSet<GPUBuffer>;
  /** While timing.ts's profileDispatches records: each dispatch's pipeline label, and the query
   * set its begin/end timestamps go to (2 i, 2 i + 1) until `capacity` dispatches. */
  profile: { qs: GPUQuerySet; labels: string[]; capacity: number } | null;
}

let rt: Runtime | null = null;

/**
 * Acquires the GPU (once) and returns the runtime.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initRuntime } from "./runtime.ts";
 *
 * const rt = await initRuntime();
 * assert.equal(await initRuntime(), rt); // once
 * ```
 */
export async function initRuntime(): Promise<Runtime> {
  const gpu = await getDevice();
  if (!rt || rt.gpu !== gpu) {
    rt = {
      gpu,
      stats: {
        submits: 0,
        dispatches: 0,
        readbacks: 0,
        poolBuffers: 0,
        poolBytes: 0,
        poolFree: 0,
        poolFreeBytes: 0,
        dataBytes: 0,
      },
      free: new Map(),
      staging: new Map(),
      pipelines: new Map(),
      uniforms: new Map(),
      encoder: null,
      pass: null,
      bindGroups: new Map(),
      ids: new WeakMap(),
      deferred: [],
      owned: new WeakSet(),
      lastUse: new WeakMap(),
      calls: 0,
      data: new WeakSet(),
      profile: null,
    };
  }
  return rt;
}

/**
 * The runtime, for synchronous ops. Throws if no GPU was acquired yet.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initRuntime, runtime } from "./runtime.ts";
 *
 * await initRuntime();
 * const { device } = runtime().gpu;
 * assert.ok(device.limits.maxComputeWorkgroupSizeX >= 64);
 * ```
 */
export function runtime(): Runtime {
  if (!rt) {
    throw new GpuUnavailableError(
      "No GPU device yet: `await initGpu()` (or load a model or SAE) before creating tensors.",
    );
  }
  if (rt.gpu.lost) throw lostError(rt);
  return rt;
}

/**
 * The runtime if a GPU was acquired, else null (for code that must not throw, such as freeing).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentRuntime, initRuntime } from "./runtime.ts";
 *
 * await initRuntime();
 * assert.notEqual(currentRuntime(), null);
 * ```
 */
export function currentRuntime(): Runtime | null {
  return rt;
}

/** The error for work on a lost device. */
export function lostError(r: Runtime): GpuError {
  return new GpuError(
    `The GPU device was lost (${r.gpu.lost}); tensors, models and SAEs on it are gone. ` +
      "Load them again (or call initGpu()) to acquire a new device.",
  );
}

/** Pool bucket for a byte size: multiples of 256 B up to 64 KiB, then powers of two. */
export function bucketSize(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 65536) return b;
  return 2 ** Math.ceil(Math.log2(b));
}

/**
 * Takes a storage buffer of at least `bytes` from the pool (or creates one).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acquireBuffer, initRuntime, releaseBuffer } from "./runtime.ts";
 *
 * await initRuntime();
 * const buf = acquireBuffer(1000);
 * assert.ok(buf.size >= 1000); // a pool bucket at least that large
 * releaseBuffer(buf);
 * assert.equal(acquireBuffer(1000), buf); // back from the pool
 * ```
 */
export function acquireBuffer(bytes: number): GPUBuffer {
  const r = runtime();
  const lim = r.gpu.limits;
  let size = bucketSize(bytes);
  if (size > lim.maxBufferSize) size = Math.ceil(bytes / 256) * 256; // not a bucket over the limit
  if (size > lim.maxBufferSize) {
    throw new GpuLimitError(
      `GPU out of memory for one buffer: requested ${bytes} bytes, the adapter allows at most ` +
        `${lim.maxBufferSize} per buffer; use a smaller batch or model.`,
    );
  }
  const list = r.free.get(size);
  if (list && list.length) {
    r.stats.poolFree--;
    r.stats.poolFreeBytes -= size;
    const buf = list.pop()!; // the oldest (see releaseBuffer)
    r.lastUse.set(buf, r.calls);
    return buf;
  }
  r.gpu.device.pushErrorScope("out-of-memory");
  const buf = r.gpu.device.createBuffer({ size, usage: STORAGE_USAGE, label: "pool" });
  r.gpu.device.popErrorScope().then((e) => {
    if (e) console.error(`hooklens: GPU out of memory allocating ${size} bytes: ${e.message}`);
  });
  r.stats.poolBuffers++;
  r.stats.poolBytes += size;
  r.owned.add(buf);
  r.lastUse.set(buf, r.calls);
  idOf(r, buf); // ids in order of creation (see releaseBuffer)
  return buf;
}

/** Returns a pooled buffer. Commands already recorded that use it still run before any reuse. */
export function releaseBuffer(buf: GPUBuffer): void {
  const r = rt;
  if (!r || r.gpu.lost || !r.owned.has(buf)) return; // its device is gone, and the buffer with it
  // Each size's free list is kept newest first, so acquireBuffer takes the oldest free buffer, not
  // the last freed: which buffer a tensor gets then depends only on which are free, not on the
  // order earlier calls freed them in, so a call repeated gets the same buffers and finds its bind
  // groups cached.
  const list = r.free.get(buf.size);
  if (!list) {
    r.free.set(buf.size, [buf]);
  } else {
    const id = idOf(r, buf);
    let [lo, hi] = [0, list.length];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (idOf(r, list[mid]) > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buf);
  }
  r.stats.poolFree++;
  r.stats.poolFreeBytes += buf.size;
}

/**
 * Ends a call for the pool: when its free buffers hold more than `tuning.pool.freeLimitBytes`,
 * gives back those not taken in the last `tuning.pool.keepCalls` calls (after a call with
 * unusually large activations, say).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acquireBuffer, initRuntime, releaseBuffer, trimPoolIfLarge } from "./runtime.ts";
 *
 * const rt = await initRuntime();
 * releaseBuffer(acquireBuffer(1024));
 * trimPoolIfLarge(); // a small pool stays
 * assert.ok(rt.free.size > 0);
 * ```
 */
export function trimPoolIfLarge(): void {
  if (!rt || rt.gpu.lost) return;
  rt.calls++;
  if (rt.stats.poolFreeBytes > tuning.pool.freeLimitBytes) {
    trimPool(rt.calls - tuning.pool.keepCalls);
  }
}

/**
 * Destroys the pool's free buffers (returns memory to the driver): all of them, or those last
 * taken before call number `usedBefore`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acquireBuffer, initRuntime, releaseBuffer, trimPool } from "./runtime.ts";
 *
 * const rt = await initRuntime();
 * releaseBuffer(acquireBuffer(1024));
 * trimPool(); // every free buffer
 * assert.equal([...rt.free.values()].flat().length, 0);
 * ```
 */
export function trimPool(usedBefore = Infinity): void {
  const r = runtime();
  let destroyed = false;
  for (const [size, list] of r.free) {
    const keep: GPUBuffer[] = [];
    for (const b of list) {
      if ((r.lastUse.get(b) ?? -1) >= usedBefore) {
        keep.push(b);
        continue;
      }
      if (!destroyed) flush(); // recorded commands may still use it
      destroyed = true;
      r.stats.poolBytes -= b.size;
      r.stats.poolBuffers--;
      r.stats.poolFree--;
      r.stats.poolFreeBytes -= b.size;
      b.destroy();
    }
    if (keep.length) r.free.set(size, keep);
    else r.free.delete(size);
  }
  // Cached bind groups may name a destroyed buffer.
  if (destroyed) r.bindGroups.clear();
  if (usedBefore === Infinity) {
    for (const list of r.staging.values()) for (const b of list) b.destroy();
    r.staging.clear();
  }
}

/** Bytes of the free staging buffers {@link readBuffers} keeps. */
function stagingBytes(r: Runtime): number {
  let n = 0;
  for (const [size, list] of r.staging) n += size * list.length;
  return n;
}

/**
 * Creates a non-pooled storage buffer holding `data` (for weights that live as long as a model).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createDataBuffer, initRuntime, readBuffers } from "./runtime.ts";
 *
 * await initRuntime();
 * const buf = createDataBuffer(new Float32Array([1, 2, 3]));
 * const [bytes] = await readBuffers([{ buffer: buf, bytes: 12 }]);
 * assert.deepEqual([...new Float32Array(bytes)], [1, 2, 3]);
 * buf.destroy();
 * ```
 */
export function createDataBuffer(data: ArrayBufferView, label = "data"): GPUBuffer {
  const r = runtime();
  const lim = r.gpu.limits;
  const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
  if (size > lim.maxBufferSize) {
    throw new GpuLimitError(
      `GPU buffer for ${label} needs ${data.byteLength} bytes, the adapter allows at most ` +
        `${lim.maxBufferSize} per buffer.`,
    );
  }
  const buf = r.gpu.device.createBuffer({
    size,
    usage: STORAGE_USAGE,
    mappedAtCreation: true,
    label,
  });
  new Uint8Array(buf.getMappedRange()).set(
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
  buf.unmap();
  r.data.add(buf);
  r.stats.dataBytes += size;
  return buf;
}

/**
 * Writes data into an existing buffer, ordered after everything recorded so far.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acquireBuffer, initRuntime, readBuffers, releaseBuffer, writeBuffer } from "./runtime.ts";
 *
 * await initRuntime();
 * const buf = acquireBuffer(8);
 * writeBuffer(buf, new Float32Array([1, 2]));
 * const [bytes] = await readBuffers([{ buffer: buf, bytes: 8 }]);
 * assert.deepEqual([...new Float32Array(bytes)], [1, 2]);
 * releaseBuffer(buf);
 * ```
 */
export function writeBuffer(buf: GPUBuffer, data: ArrayBufferView, offset = 0): void {
  const r = runtime();
  // queue.writeBuffer is ordered against submits, not against commands still being recorded.
  if (r.encoder) flush();
  r.gpu.device.queue.writeBuffer(
    buf,
    offset,
    data.buffer as ArrayBuffer,
    data.byteOffset,
    data.byteLength,
  );
}

/** The current encoder (created on demand), with no compute pass open: for copies and queries. */
export function encoder(): GPUCommandEncoder {
  const r = runtime();
  if (r.pass) {
    r.pass.end();
    r.pass = null;
  }
  if (!r.encoder) r.encoder = r.gpu.device.createCommandEncoder();
  return r.encoder;
}

let nextId = 1;
/** A small id of a buffer, pipeline or uniform block, for cache keys (ids grow in creation
 * order). */
export function idOf(r: Runtime, o: object): number {
  let id = r.ids.get(o);
  if (id === undefined) {
    id = nextId++;
    r.ids.set(o, id);
  }
  return id;
}

/**
 * Records a buffer-to-buffer copy.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { copyBuffer, createDataBuffer, initRuntime, readBuffers } from "./runtime.ts";
 *
 * await initRuntime();
 * const src = createDataBuffer(new Float32Array([1, 2, 3, 4]));
 * const dst = createDataBuffer(new Float32Array(4));
 * copyBuffer(src, dst, 8, 8, 0); // bytes 8..16 of src to the start of dst
 * const [bytes] = await readBuffers([{ buffer: dst, bytes: 16 }]);
 * assert.deepEqual([...new Float32Array(bytes)], [3, 4, 0, 0]);
 * ```
 */
export function copyBuffer(
  src: GPUBuffer,
  dst: GPUBuffer,
  bytes: number,
  srcOff = 0,
  dstOff = 0,
): void {
  encoder().copyBufferToBuffer(src, srcOff, dst, dstOff, bytes);
}

/**
 * Submits everything recorded so far (no CPU wait).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { flush, runtime } from "./runtime.ts";
 *
 * await initGpu();
 * using t = Tensor.from([1, 2], [2]);
 * using u = t.scale(2); // recorded, not yet submitted
 * flush();
 * assert.equal(runtime().encoder, null);
 * ```
 */
export function flush(): void {
  const r = runtime();
  if (!r.encoder) return;
  if (r.pass) {
    r.pass.end();
    r.pass = null;
  }
  const cmd = r.encoder.finish();
  r.encoder = null;
  r.gpu.device.queue.submit([cmd]);
  r.stats.submits++;
  for (const b of r.deferred.splice(0)) b.destroy();
}

/**
 * Destroys a buffer (or texture) once the commands recorded so far (which may use it) are
 * submitted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createDataBuffer, deferDestroy, flush, initRuntime } from "./runtime.ts";
 *
 * await initRuntime();
 * const buf = createDataBuffer(new Float32Array(4));
 * deferDestroy(buf); // destroyed once the work recorded so far is submitted
 * flush();
 * assert.ok(buf);
 * ```
 */
export function deferDestroy(buf: GPUBuffer | GPUTexture): void {
  const r = rt;
  if (!r || r.gpu.lost) return;
  if (buf instanceof GPUBuffer && r.data.delete(buf)) r.stats.dataBytes -= buf.size;
  if (r.encoder) r.deferred.push(buf);
  else buf.destroy();
}

/**
 * Reads several buffer ranges back to the CPU in one submission and one wait.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createDataBuffer, initRuntime, readBuffers } from "./runtime.ts";
 *
 * await initRuntime();
 * const a = createDataBuffer(new Float32Array([1, 2, 3, 4]));
 * const b = createDataBuffer(new Int32Array([7]));
 * const [fa, ib] = await readBuffers([{ buffer: a, bytes: 16 }, { buffer: b, bytes: 4 }]);
 * assert.deepEqual([...new Float32Array(fa)], [1, 2, 3, 4]);
 * assert.deepEqual([...new Int32Array(ib)], [7]);
 * ```
 */
export async function readBuffers(
  reqs: readonly { buffer: GPUBuffer; bytes: number }[],
): Promise<ArrayBuffer[]> {
  const r = runtime();
  // Staging buffers are kept for the next readback of the same bucket: a fresh 25 MB mappable
  // buffer (the logits of 128 tokens over GPT-2's vocabulary) cost 20-100 ms more on lavapipe
  // than a reused one (page faults and zeroing; bench/RESULTS.md, 2026-12-04).
  const staging = reqs.map(({ buffer, bytes }) => {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const bucket = bucketSize(size);
    const s = r.staging.get(bucket)?.pop() ?? r.gpu.device.createBuffer({
      size: bucket,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "staging",
    });
    encoder().copyBufferToBuffer(buffer, 0, s, 0, size);
    return s;
  });
  flush();
  r.stats.readbacks++;
  try {
    await Promise.all(
      staging.map((s, i) =>
        s.mapAsync(GPUMapMode.READ, 0, Math.max(4, Math.ceil(reqs[i].bytes / 4) * 4))
      ),
    );
  } catch (e) {
    if (r.gpu.lost) throw lostError(r);
    throw new GpuError(`Reading back from the GPU failed: ${(e as Error).message}`);
  }
  if (gpuErrors.length) {
    const errs = gpuErrors.splice(0);
    for (const s of staging) s.destroy();
    throw new GpuError(`The GPU rejected recorded work: ${errs.join("; ")}`);
  }
  return staging.map((s, i) => {
    const out = s.getMappedRange(0, Math.max(4, Math.ceil(reqs[i].bytes / 4) * 4))
      .slice(0, reqs[i].bytes);
    s.unmap();
    keepStaging(r, s);
    return out;
  });
}

/** Puts a staging buffer back for reuse, or destroys it when the kept ones would exceed
 * `tuning.pool.stagingKeepBytes`. */
function keepStaging(r: Runtime, s: GPUBuffer): void {
  if (r.gpu.lost || stagingBytes(r) + s.size > tuning.pool.stagingKeepBytes) {
    s.destroy();
    return;
  }
  const list = r.staging.get(s.size);
  if (list) list.push(s);
  else r.staging.set(s.size, [s]);
}
