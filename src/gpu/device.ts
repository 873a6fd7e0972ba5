/**
 * WebGPU device acquisition: one device per process by default, created with the adapter's own
 * limits and optional features (Deno starts every device at WebGPU's defaults otherwise).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getDevice } from "./device.ts";
 *
 * const gpu = await getDevice();
 * assert.equal(typeof gpu.adapterDescription, "string");
 * assert.equal(gpu, await getDevice()); // acquired once
 * ```
 * @module
 */
import { GpuUnavailableError } from "../errors.ts";

/** The acquired device and what we know of its adapter. */
export interface GpuDevice {
  /** The WebGPU device. */
  readonly device: GPUDevice;
  /** Human-readable adapter description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  readonly adapterDescription: string;
  /** Whether this is a software (fallback) adapter such as lavapipe. */
  readonly isFallback: boolean;
  /** Whether `shader-f16` was enabled. */
  readonly hasF16: boolean;
  /** Whether `timestamp-query` was enabled. */
  readonly hasTimestamps: boolean;
  /** The subgroup size where the `subgroups` feature was enabled, else 0. hooklens enables it only
   * on a software adapter whose subgroups are always 8 lanes (lavapipe on a 256-bit SIMD CPU), for
   * the `linear_sg` kernels (src/gpu/kernels/linear_cpu_gen.ts) and shaders/matmul_sg.wgsl. */
  readonly subgroupSize: number;
  /** What a shader using subgroup builtins starts with: "" for Deno 2.9's WGSL compiler, which
   * rejects `enable subgroups;`, or that directive for compilers that require it. */
  readonly subgroupDirective: string;
  /** Why the device was lost, once it is (then nothing recorded on it runs). */
  lost: string | null;
  /** Limits the device was created with. */
  readonly limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
    minStorageBufferOffsetAlignment: number;
  };
}

let current: Promise<GpuDevice> | null = null;

/** GPU errors not yet reported (validation, out of memory), oldest first. */
export const gpuErrors: string[] = [];

/** Sets XDG_RUNTIME_DIR to a private temp dir if unset, silencing the Vulkan loader's complaint. */
export function quietVulkanLoader(): void {
  try {
    // Never a permission prompt from a library: only with env and write access already granted.
    if (!granted("XDG_RUNTIME_DIR")) return;
    if (Deno.permissions.querySync({ name: "write" }).state !== "granted") return;
    if (!Deno.env.get("XDG_RUNTIME_DIR")) {
      Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync({ prefix: "hooklens-xdg-" }));
    }
  } catch {
    // Without env/write permission the loader may print a warning; it is harmless.
  }
}

/** Whether access to the environment variable is granted (asking would prompt the user). */
function granted(variable: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable }).state === "granted";
  } catch {
    return false;
  }
}

/** Whether {@link preferVulkan} has set DENO_WEBGPU_BACKEND. */
let askedVulkan = false;

/**
 * On Linux, asks Deno's WebGPU for the Vulkan backend alone (DENO_WEBGPU_BACKEND=vulkan) unless
 * DENO_WEBGPU_BACKEND is already set, and says whether it did. With every backend enabled wgpu also
 * loads libEGL for OpenGL, and on lavapipe about one process in ten then aborted at exit, after all
 * its work (rc 134, "double free or corruption" or "malloc_consolidate(): invalid chunk size", once
 * a segfault): the main thread in libEGL's exit handler and a tokio thread freeing into the same
 * malloc arena. Vulkan alone: 0 aborts in 100 runs of the same test file, against 9 in 80. Takes
 * effect only before the process's first `requestAdapter`; once set, later calls say true too.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { preferVulkan } from "./device.ts";
 *
 * // Before navigator.gpu.requestAdapter(); false where it does not apply (not Linux, or the
 * // user set DENO_WEBGPU_BACKEND).
 * assert.equal(typeof preferVulkan(), "boolean");
 * ```
 */
export function preferVulkan(): boolean {
  if (askedVulkan) return true;
  // Without env access (never asked for: a prompt) wgpu keeps its default backends.
  if (Deno.build.os !== "linux" || !granted("DENO_WEBGPU_BACKEND")) return false;
  if (Deno.env.get("DENO_WEBGPU_BACKEND") !== undefined) return false; // the user's choice
  Deno.env.set("DENO_WEBGPU_BACKEND", "vulkan");
  return askedVulkan = true;
}

const LIMIT_NAMES = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxBindingsPerBindGroup",
  "maxTextureDimension2D",
] as const;

async function acquire(): Promise<GpuDevice> {
  quietVulkanLoader();
  const vulkanOnly = preferVulkan();
  if (typeof navigator === "undefined" || !navigator.gpu) {
    throw new GpuUnavailableError(
      "WebGPU is not available in this runtime: run hooklens with Deno 2.9 or newer.",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new GpuUnavailableError(
      "No WebGPU adapter found: install a Vulkan driver (on Debian/Ubuntu: " +
        "`apt-get install mesa-vulkan-drivers`, or your GPU vendor's driver)." +
        (vulkanOnly
          ? " hooklens asked for Vulkan alone; set DENO_WEBGPU_BACKEND=opengl to try OpenGL instead."
          : ""),
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMIT_NAMES) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === "number") requiredLimits[k] = v;
  }
  const requiredFeatures: GPUFeatureName[] = [];
  for (const f of ["shader-f16", "timestamp-query"] as GPUFeatureName[]) {
    if (adapter.features.has(f)) requiredFeatures.push(f);
  }
  const isFallback = Boolean(
    (adapter.info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter,
  );
  // Deno 2.9 does not list "subgroups" among the adapter's features although it grants it: ask,
  // and go on without where the request is refused.
  const info = adapter.info as unknown as { subgroupMinSize?: number; subgroupMaxSize?: number };
  const sg8 = isFallback && info.subgroupMinSize === 8 && info.subgroupMaxSize === 8;
  let device: GPUDevice | null = null;
  if (sg8) {
    device = await adapter
      .requestDevice({
        requiredLimits,
        requiredFeatures: [...requiredFeatures, "subgroups" as GPUFeatureName],
      })
      .catch(() => null);
  }
  device ??= await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const directive = device.features.has("subgroups" as GPUFeatureName)
    ? await subgroupDirective(device)
    : null;
  // A validation error would otherwise drop a whole submission silently: keep it for the next
  // readback to report.
  device.addEventListener("uncapturederror", (ev) => {
    const msg = (ev as GPUUncapturedErrorEvent).error.message;
    gpuErrors.push(msg);
  });
  const l = device.limits;
  const gpu: GpuDevice = {
    device,
    adapterDescription: adapter.info.description || adapter.info.vendor || "unknown adapter",
    isFallback,
    hasF16: device.features.has("shader-f16"),
    hasTimestamps: device.features.has("timestamp-query"),
    subgroupSize: directive === null ? 0 : 8,
    subgroupDirective: directive ?? "",
    limits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
    },
    lost: null,
  };
  // Release the device before the process tears down, so that no driver object is freed while the
  // driver's own exit handlers run (an occasional abort at exit on lavapipe otherwise).
  globalThis.addEventListener("unload", () => {
    if (!gpu.lost) device.destroy();
  });
  // A lost device (driver reset, GPU removed, or destroy()) is replaced on the next getDevice().
  device.lost.then((info) => {
    gpu.lost = `${info.reason}${info.message ? `: ${info.message}` : ""}`;
    current = null;
  });
  return gpu;
}

/** A shader with a subgroup builtin, compiled as written and after `enable subgroups;`: the first
 * prefix that compiles without errors, or null (then the subgroup kernels are not used). */
async function subgroupDirective(device: GPUDevice): Promise<string | null> {
  const probe = `@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(8)
fn main(@builtin(subgroup_invocation_id) l: u32) { o[l] = subgroupBroadcast(o[l], 0u); }`;
  for (const head of ["", "enable subgroups;\n"]) {
    const info = await device.createShaderModule({ code: head + probe }).getCompilationInfo();
    if (!info.messages.some((m) => m.type === "error")) return head;
  }
  return null;
}

/**
 * Returns the process-wide GPU device, acquiring it on first use. A lost device is re-acquired on
 * the next call.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getDevice } from "./device.ts";
 *
 * const { device } = await getDevice();
 * assert.ok(device.limits.maxStorageBufferBindingSize >= 128 << 20);
 * ```
 */
export function getDevice(): Promise<GpuDevice> {
  if (!current) {
    current = acquire();
    current.catch(() => (current = null));
  }
  return current;
}
