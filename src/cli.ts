/**
 * The hooklens command line. `deno task demo` runs `demo`.
 *
 * @example
 * ```sh
 * deno run --allow-read --allow-env --allow-write src/cli.ts demo
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { gpuInfo, initGpu } from "./gpu/info.ts";
import { HooklensError } from "./errors.ts";
import { Tensor } from "./gpu/tensor.ts";
import { matmul } from "./gpu/ops.ts";

const HELP = `hooklens: TransformerLens-style hooks and SAEs on WebGPU

Usage: deno task cli -- <command> [options]

Commands:
  demo     adapter info and a kernel checked against the CPU
  help     this text
`;

/** Runs the built-in smoke check: adapter info and one matmul compared with a float64 CPU result. */
async function demo(): Promise<void> {
  const info = await initGpu();
  console.log(`adapter: ${info.adapter}${info.fallback ? " (software)" : ""}`);
  console.log(
    `features: shader-f16 ${info.f16 ? "yes" : "no"}, timestamp-query ${
      info.timestamps ? "yes" : "no"
    }`,
  );
  console.log(`max binding: ${(info.maxBindingBytes / 2 ** 20).toFixed(0)} MiB`);
  const [M, K, N] = [64, 96, 80];
  const a = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37));
  const b = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.11));
  using ta = Tensor.from(a, [M, K]);
  using tb = Tensor.from(b, [K, N]);
  const t0 = performance.now();
  using tc = matmul(ta, tb);
  const got = await tc.toArray();
  const ms = performance.now() - t0;
  let err = 0, ref = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * b[k * N + j];
      err = Math.max(err, Math.abs(s - got[i * N + j]));
      ref = Math.max(ref, Math.abs(s));
    }
  }
  const ok = err / ref < 1e-5;
  console.log(
    `matmul ${M}x${K}x${N}: max rel error ${(err / ref).toExponential(2)} vs float64 (${
      ms.toFixed(1)
    } ms) ${ok ? "OK" : "FAILED"}`,
  );
  console.log(`submits ${gpuInfo().stats.submits}, readbacks ${gpuInfo().stats.readbacks}`);
  if (!ok) Deno.exit(1);
}

/** Entry point. */
export async function main(args: string[]): Promise<void> {
  const { positionals } = parseArgs({ args, allowPositionals: true, strict: false });
  const cmd = positionals[0] ?? "help";
  try {
    if (cmd === "demo") await demo();
    else console.log(HELP);
  } catch (e) {
    if (e instanceof HooklensError) {
      console.error(`hooklens: ${e.message}`);
      Deno.exit(1);
    }
    throw e;
  }
}

if (import.meta.main) await main(Deno.args);
