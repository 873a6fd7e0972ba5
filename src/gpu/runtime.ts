/**
 * The GPU runtime: buffer pool, pipeline cache, the one command stream every op is recorded into,
 * and readback. Ops record dispatches into the current command encoder; nothing is submitted until
 * a readback (or an explicit {@link flush}) needs it, so a forward pass without JS syncs is one
 * `queue.submit`.
 *
 * @example
 * ```ts
 * import { initRuntime, flush } from "./runtime.ts";
 * const rt = await initRuntime();
 * flush(); // submits whatever was recorded
 * console.log(rt.stats.submits);
 * ```
 * @module
 */
import { GpuError, GpuLimitError, GpuUnavailableError } from "../errors.ts";
import { getDevice, type GpuDevice, gpuErrors } from "./device.ts";

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
  /** Bytes of live non-pooled buffers: weights and other uploaded tensors. */
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
  /** Buffers to destroy once the commands recorded so far are submitted. */
  readonly deferred: GPUBuffer[];
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
 * const rt = await initRuntime();
 * console.log(rt.gpu.adapterDescription);
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
 * await initRuntime();
 * const { device } = runtime().gpu;
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
 * const buf = acquireBuffer(1024);
 * releaseBuffer(buf);
 * ```
 */
export function acquireBuffer(bytes: number): GPUBuffer {
  const r = runtime();
  const size = bucketSize(bytes);
  const lim = r.gpu.limits;
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
 * When the pool gives free memory back. Above `freeLimitBytes` of free buffers at the end of a
 * call, {@link trimPoolIfLarge} destroys those no call among the last `keepCalls` took: a one-off
 * large call's buffers go, while workloads that alternate (runWithCache, then a forward with
 * hooks, and again) keep theirs. (Trimming every free buffer, as before, made GPT-2 small's
 * alternating runWithCache and forward at 8x128 re-create their buffers and ~180 bind groups
 * each round.)
 *
 * @example
 * ```ts
 * poolConfig.freeLimitBytes = 4 * 2 ** 30; // keep up to 4 GiB of unused buffers
 * ```
 */
export const poolConfig: { freeLimitBytes: number; keepCalls: number } = {
  freeLimitBytes: 2 ** 30,
  keepCalls: 4,
};

/**
 * Ends a call for the pool: when its free buffers hold more than
 * {@link poolConfig}.freeLimitBytes, gives back those not taken in the last `keepCalls` calls
 * (after a call with unusually large activations, say).
 *
 * @example
 * ```ts
 * trimPoolIfLarge();
 * ```
 */
export function trimPoolIfLarge(): void {
  if (!rt || rt.gpu.lost) return;
  rt.calls++;
  if (rt.stats.poolFreeBytes > poolConfig.freeLimitBytes) {
    trimPool(rt.calls - poolConfig.keepCalls);
  }
}

/**
 * Destroys the pool's free buffers (returns memory to the driver): all of them, or those last
 * taken before call number `usedBefore`.
 *
 * @example
 * ```ts
 * trimPool();
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
}

/**
 * Creates a non-pooled storage buffer holding `data` (for weights that live as long as a model).
 *
 * @example
 * ```ts
 * const buf = createDataBuffer(new Float32Array([1, 2, 3]));
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
 * writeBuffer(buf, new Float32Array([1, 2]));
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

/** A WGSL shader module source plus the name it is cached under. */
export interface ShaderSource {
  /** Cache key, e.g. the file name. */
  readonly name: string;
  /** WGSL text. */
  readonly code: string;
}

/** Pipeline cache keys by the defines in the order a call site wrote them. */
const canonicalKeys = new Map<string, string>();

/**
 * Gets (or compiles) the pipeline for an entry point of a shader with `defines` prepended as WGSL
 * `const` declarations (the specialisation).
 *
 * @example
 * ```ts
 * const p = pipeline({ name: "x", code: "..." }, "main", { WG: 64 });
 * ```
 */
export function pipeline(
  shader: ShaderSource,
  entry: string,
  defines: Record<string, number | boolean | string> = {},
): GPUComputePipeline {
  const r = runtime();
  // The cache key lists the defines sorted by name, so that call sites writing them in another
  // order share a pipeline; the sort is done once per order written (this runs every dispatch).
  let fast = shader.name + ":" + entry + ":";
  for (const k in defines) fast += k + "=" + defines[k] + ",";
  let key = canonicalKeys.get(fast);
  if (key === undefined) {
    const defs = Object.entries(defines).sort(([a], [b]) => (a < b ? -1 : 1));
    key = `${shader.name}:${entry}:${defs.map(([k, v]) => `${k}=${v}`).join(",")}`;
    canonicalKeys.set(fast, key);
  }
  let p = r.pipelines.get(key);
  if (!p) {
    const code = shaderCode(shader, defines);
    const module = r.gpu.device.createShaderModule({ code, label: key });
    p = r.gpu.device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: entry },
      label: key,
    });
    r.pipelines.set(key, p);
  }
  return p;
}

/**
 * The WGSL a pipeline is built from: `enable f16;` where needed (and the device's subgroup
 * directive, see GpuDevice.subgroupDirective), the defines as `const`s, then the shader.
 *
 * @example
 * ```ts
 * const code = shaderCode(SHADERS.linear, { WT: "f32", BK: 8, ACT: 0, RESID: false, GATE: 0, SPLIT: false, TRANS: false, SPLITK: false });
 * ```
 */
export function shaderCode(
  shader: ShaderSource,
  defines: Record<string, number | boolean | string> = {},
): string {
  const head = Object.entries(defines)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) =>
      typeof v === "string"
        ? `alias ${k} = ${v};`
        : typeof v === "boolean"
        ? `const ${k}: bool = ${v};`
        : Number.isInteger(v)
        ? `const ${k}: u32 = ${v}u;`
        : `const ${k}: f32 = ${v};`
    )
    .join("\n");
  const f16 = /\bf16\b/.test(shader.code) || Object.values(defines).includes("f16");
  const subgroups = /\bsubgroupBroadcast\b/.test(shader.code) && rt ? rt.gpu.subgroupDirective : "";
  return (f16 ? "enable f16;\n" : "") + subgroups + head + "\n" + shader.code;
}

/** Packs numbers into a uniform block: integers as u32/i32, others as f32 (use {@link f32}). */
export type Param = number | { f32: number };

/**
 * Marks a parameter as f32.
 *
 * @example
 * ```ts
 * const params = [4, f32(0.5)];
 * ```
 */
export function f32(x: number): { f32: number } {
  return { f32: x };
}

/** Bind groups kept for reuse (by pipeline, uniform block and buffers) before the cache is emptied. */
const BIND_GROUP_CACHE = 16384;

function uniformFor(params: readonly Param[]): GPUBuffer {
  const r = runtime();
  // Keyed by the values as written (this runs every dispatch; the bytes are made only for a new
  // block). f32 values by their f32 rounding, -0 apart from 0; values that differ here but not in
  // bits (a negative integer and its u32 wrap) only get a block each.
  let key = "";
  for (const p of params) {
    if (typeof p === "number") key += p + ",";
    else {
      const v = Math.fround(p.f32);
      key += Object.is(v, -0) ? "f-0," : "f" + v + ",";
    }
  }
  let buf = r.uniforms.get(key);
  if (!buf) {
    const n = Math.max(4, Math.ceil(params.length / 4) * 4);
    const data = new ArrayBuffer(n * 4);
    const u = new Uint32Array(data);
    const f = new Float32Array(data);
    const i32 = new Int32Array(data);
    params.forEach((p, i) => {
      if (typeof p === "number") {
        if (p < 0) i32[i] = p;
        else u[i] = p;
      } else f[i] = p.f32;
    });
    if (r.uniforms.size > 8192) {
      flush();
      for (const b of r.uniforms.values()) b.destroy();
      r.uniforms.clear();
      r.bindGroups.clear();
    }
    buf = r.gpu.device.createBuffer({
      size: n * 4,
      usage: GPUBufferUsage.UNIFORM,
      mappedAtCreation: true,
      label: "params",
    });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data));
    buf.unmap();
    r.uniforms.set(key, buf);
  }
  return buf;
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

/** The open compute pass (begun on demand). Dispatches in one pass are ordered like separate passes. */
function computePass(r: Runtime): GPUComputePassEncoder {
  if (!r.pass) {
    if (!r.encoder) r.encoder = r.gpu.device.createCommandEncoder();
    r.pass = r.encoder.beginComputePass();
  }
  return r.pass;
}

let nextId = 1;
function idOf(r: Runtime, o: object): number {
  let id = r.ids.get(o);
  if (id === undefined) {
    id = nextId++;
    r.ids.set(o, id);
  }
  return id;
}

/**
 * Records one compute dispatch: binding 0 is the uniform block of `params` (if any), bindings
 * 1..n the storage buffers in `buffers` (undefined entries are skipped).
 *
 * @example
 * ```ts
 * dispatch(pipe, [2, 3], [inBuf, outBuf], [1, 1, 1]);
 * ```
 */
export function dispatch(
  pipe: GPUComputePipeline,
  params: readonly Param[],
  buffers: readonly (GPUBuffer | undefined)[],
  groups: readonly [number, number?, number?],
): void {
  const r = runtime();
  const uniform = params.length ? uniformFor(params) : null;
  let key = `${idOf(r, pipe)}:${uniform ? idOf(r, uniform) : 0}`;
  for (const b of buffers) key += `,${b ? idOf(r, b) : 0}`;
  let bg = r.bindGroups.get(key);
  if (!bg) {
    const entries: GPUBindGroupEntry[] = [];
    if (uniform) entries.push({ binding: 0, resource: { buffer: uniform } });
    const maxBind = r.gpu.limits.maxStorageBufferBindingSize;
    buffers.forEach((b, i) => {
      if (!b) return;
      entries.push({ binding: i + 1, resource: { buffer: b, size: Math.min(b.size, maxBind) } });
    });
    bg = r.gpu.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
    // Generation makes ~1000 new bind groups a call (new uniform blocks per position, pooled
    // buffers handed out in another order): with room for 4096 the cache emptied every 2-3 calls
    // and the next call re-created all 2000+ (~75 us each on a 2-core CPU).
    if (r.bindGroups.size > BIND_GROUP_CACHE) r.bindGroups.clear();
    r.bindGroups.set(key, bg);
  }
  const lim = r.gpu.limits.maxComputeWorkgroupsPerDimension;
  const [x, y = 1, z = 1] = groups;
  if (x > lim || y > lim || z > lim) {
    throw new GpuLimitError(
      `Dispatch of ${x}x${y}x${z} workgroups exceeds the adapter's ${lim} per dimension.`,
    );
  }
  if (x === 0 || y === 0 || z === 0) return;
  const prof = r.profile;
  const timed = prof !== null && prof.labels.length < prof.capacity;
  // Profiling: this dispatch in a compute pass of its own, between two timestamps.
  const pass = timed
    ? encoder().beginComputePass({
      timestampWrites: {
        querySet: prof.qs,
        beginningOfPassWriteIndex: 2 * prof.labels.length,
        endOfPassWriteIndex: 2 * prof.labels.length + 1,
      },
    })
    : computePass(r);
  pass.setPipeline(pipe);
  pass.setBindGroup(0, bg);
  pass.dispatchWorkgroups(x, y, z);
  if (timed) {
    pass.end();
    prof.labels.push(pipe.label);
  }
  r.stats.dispatches++;
}

/**
 * Records a buffer-to-buffer copy.
 *
 * @example
 * ```ts
 * copyBuffer(src, dst, 1024);
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
 * flush();
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
 * Destroys a buffer once the commands recorded so far (which may use it) are submitted.
 *
 * @example
 * ```ts
 * deferDestroy(buf);
 * ```
 */
export function deferDestroy(buf: GPUBuffer): void {
  const r = rt;
  if (!r || r.gpu.lost) return;
  if (r.data.delete(buf)) r.stats.dataBytes -= buf.size;
  if (r.encoder) r.deferred.push(buf);
  else buf.destroy();
}

/**
 * Reads several buffer ranges back to the CPU in one submission and one wait.
 *
 * @example
 * ```ts
 * const [bytes] = await readBuffers([{ buffer: buf, bytes: 16 }]);
 * ```
 */
export async function readBuffers(
  reqs: readonly { buffer: GPUBuffer; bytes: number }[],
): Promise<ArrayBuffer[]> {
  const r = runtime();
  const staging = reqs.map(({ buffer, bytes }) => {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const s = r.gpu.device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "staging",
    });
    encoder().copyBufferToBuffer(buffer, 0, s, 0, size);
    return s;
  });
  flush();
  r.stats.readbacks++;
  try {
    await Promise.all(staging.map((s) => s.mapAsync(GPUMapMode.READ)));
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
    const out = s.getMappedRange().slice(0, reqs[i].bytes);
    s.unmap();
    s.destroy();
    return out;
  });
}
