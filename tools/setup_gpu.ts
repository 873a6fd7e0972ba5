// Makes sure a WebGPU adapter exists before the demo or the tests run. Where none is found and
// this is Debian/Ubuntu as root, installs Mesa's lavapipe (a CPU Vulkan driver), saying so in one
// line; otherwise stops with one sentence saying what to install.
//   deno run --allow-read --allow-env --allow-run --allow-write tools/setup_gpu.ts
import { preferVulkan, quietVulkanLoader } from "../src/gpu/device.ts";

/** Whether a Vulkan driver manifest for Mesa's lavapipe is installed. */
function hasLavapipe(): boolean {
  for (
    const dir of ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"]
  ) {
    try {
      for (const e of Deno.readDirSync(dir)) if (e.name.startsWith("lvp_icd")) return true;
    } catch {
      // no such directory
    }
  }
  return false;
}

/**
 * Whether a usable adapter exists. On Linux, a software "llvmpipe" adapter without lavapipe's
 * Vulkan manifest is Mesa's OpenGL fallback: no shader-f16 and shader builds that take seconds,
 * so it counts as missing when lavapipe can be installed instead.
 */
async function hasAdapter(): Promise<boolean> {
  quietVulkanLoader();
  preferVulkan(); // the backends hooklens itself will ask for
  const a = await navigator.gpu?.requestAdapter();
  if (!a) return false;
  const glFallback = Deno.build.os === "linux" && /llvmpipe/i.test(a.info.description) &&
    !hasLavapipe();
  return !glFallback;
}

async function run(cmd: string[], quiet = true): Promise<boolean> {
  try {
    const p = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdout: quiet ? "null" : "inherit",
      stderr: quiet ? "null" : "inherit",
      env: { DEBIAN_FRONTEND: "noninteractive" },
    });
    return (await p.output()).success;
  } catch {
    return false;
  }
}

if (Deno.args[0] === "--probe") {
  Deno.exit((await hasAdapter()) ? 0 : 1);
}

if (!(await hasAdapter())) {
  const isRoot = Deno.uid?.() === 0;
  const hasApt = await run(["apt-get", "--version"]);
  if (Deno.build.os === "linux" && isRoot && hasApt) {
    console.error(
      "hooklens: no usable WebGPU adapter found; installing Mesa's lavapipe CPU driver (apt-get install mesa-vulkan-drivers)...",
    );
    let ok = await run(["apt-get", "install", "-y", "-qq", "mesa-vulkan-drivers"]);
    if (!ok) {
      ok = (await run(["apt-get", "update", "-qq"])) &&
        (await run(["apt-get", "install", "-y", "-qq", "mesa-vulkan-drivers"]));
    }
    // A new process sees the freshly installed Vulkan driver; this one has already enumerated.
    const probe = ok &&
      (await run([
        Deno.execPath(),
        "run",
        "--allow-read",
        "--allow-env",
        "--allow-write",
        import.meta.filename ?? "",
        "--probe",
      ]));
    if (!probe) {
      console.error(
        "hooklens: installing mesa-vulkan-drivers did not give a WebGPU adapter; install a Vulkan driver for your GPU and try again.",
      );
      Deno.exit(1);
    }
  } else {
    console.error(
      Deno.build.os === "linux"
        ? "hooklens: no WebGPU adapter found; install a Vulkan driver (e.g. `sudo apt-get install mesa-vulkan-drivers` on Debian/Ubuntu) and try again."
        : "hooklens: no WebGPU adapter found; update your GPU driver (Metal on macOS, DX12/Vulkan on Windows) and try again.",
    );
    Deno.exit(1);
  }
}
