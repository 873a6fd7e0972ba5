/**
 * Recording kernels: the pipeline cache (a WGSL entry point specialised by `const` defines), the
 * uniform blocks and bind groups it is called with, and the compute dispatch itself, recorded into
 * the runtime's command stream (see runtime.ts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { dispatch, pipeline } from "./dispatch.ts";
 *
 * await initGpu();
 * const pipe = pipeline({
 *   name: "doc_fill",
 *   code: `@group(0) @binding(0) var<uniform> p: vec4u;
 *     @group(0) @binding(1) var<storage, read_write> out: array<f32>;
 *     @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
 *       if (g.x < p.x) { out[g.x] = f32(g.x); }
 *     }`,
 * }, "main");
 * using out = Tensor.empty([4]);
 * dispatch(pipe, [4], [out.buffer], [1]); // params -> binding 0, buffers -> 1..
 * assert.deepEqual([...await out.toArray()], [0, 1, 2, 3]);
 * ```
 * @module
 */
import { GpuLimitError } from "../errors.ts";
import { currentRuntime, encoder, flush, idOf, type Runtime, runtime } from "./runtime.ts";

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
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { pipeline } from "./dispatch.ts";
 *
 * await initGpu();
 * const shader = {
 *   name: "doc_wg",
 *   code: `@group(0) @binding(1) var<storage, read_write> out: array<f32>;
 *     @compute @workgroup_size(WG) fn main() { out[0] = 1.0; }`,
 * };
 * const p = pipeline(shader, "main", { WG: 64 });
 * assert.equal(pipeline(shader, "main", { WG: 64 }), p); // compiled once, then cached
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
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { shaderCode } from "./dispatch.ts";
 *
 * await initGpu(); // the header depends on the device (its subgroup support)
 * const code = shaderCode({ name: "x", code: "// body" }, { WG: 64, FUSED: true, T: "f32" });
 * assert.equal(code, "const FUSED: bool = true;\nalias T = f32;\nconst WG: u32 = 64u;\n// body");
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
  const r = currentRuntime();
  const subgroups = /\bsubgroupBroadcast\b/.test(shader.code) && r ? r.gpu.subgroupDirective : "";
  return (f16 ? "enable f16;\n" : "") + subgroups + head + "\n" + shader.code;
}

/** Packs numbers into a uniform block: integers as u32/i32, others as f32 (use {@link f32}). */
export type Param = number | { f32: number };

/**
 * Marks a parameter as f32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { f32 } from "./dispatch.ts";
 *
 * const params = [4, f32(0.5)]; // a u32 4, then an f32 0.5 in the uniform block
 * assert.deepEqual(params[1], { f32: 0.5 });
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

/** The open compute pass (begun on demand). Dispatches in one pass are ordered like separate passes. */
function computePass(r: Runtime): GPUComputePassEncoder {
  if (!r.pass) {
    if (!r.encoder) r.encoder = r.gpu.device.createCommandEncoder();
    r.pass = r.encoder.beginComputePass();
  }
  return r.pass;
}

/**
 * Records one compute dispatch: binding 0 is the uniform block of `params` (if any), bindings
 * 1..n the storage buffers in `buffers`, or texture views where the shader binds a texture there
 * (undefined entries are skipped).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { dispatch, pipeline } from "./dispatch.ts";
 *
 * await initGpu();
 * const pipe = pipeline({
 *   name: "doc_fill",
 *   code: `@group(0) @binding(0) var<uniform> p: vec4u;
 *     @group(0) @binding(1) var<storage, read_write> out: array<f32>;
 *     @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
 *       if (g.x < p.x) { out[g.x] = f32(g.x); }
 *     }`,
 * }, "main");
 * using out = Tensor.from([9, 9, 9], [3]);
 * dispatch(pipe, [2], [out.buffer], [1, 1, 1]); // n = 2: the third value stays
 * assert.deepEqual([...await out.toArray()], [0, 1, 9]);
 * ```
 */
export function dispatch(
  pipe: GPUComputePipeline,
  params: readonly Param[],
  buffers: readonly (GPUBuffer | GPUTextureView | undefined)[],
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
      entries.push({
        binding: i + 1,
        resource: b instanceof GPUTextureView ? b : { buffer: b, size: Math.min(b.size, maxBind) },
      });
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
