// Shared benchmark machinery: GPU time per case from timestamp queries (wall time around a
// completed submission where the adapter has none), GFLOP/s and GB/s beside each time, a table on
// exit and a JSON summary in bench/results/.
import { gpuInfo, initGpu, Tensor } from "../mod.ts";
import { gpuTimeMs } from "../src/gpu/timing.ts";
import { configFromHf, type HookedTransformerConfig } from "../src/model/config.ts";
import { processWeights } from "../src/model/processing.ts";
import type { StateDict } from "../src/model/weights.ts";
import { HookedSAETransformer } from "../src/sae/hooked_sae_transformer.ts";
import { SAE } from "../src/sae/sae.ts";
import { readBuffers, runtime } from "../src/gpu/runtime.ts";
import * as ops from "../src/gpu/ops.ts";
import { seededUniform } from "../src/model/random.ts";

export const info = await initGpu();

/** Whether {@link warmGpu} has run in this process ({@link bench} runs it before its first case). */
let warmed = false;
/**
 * Keeps the GPU busy until its clocks are up, and says so. On the H100 neither 1.5 s of 8 products
 * between ~11 ms syncs nor 4 s of 32 kept the first cases of a suite from running up to 3x slow
 * (bench/RESULTS.md, 2026-11-28). So: rounds of ~100 ms of 2048³ products (the GPU idle only
 * through each round's sync), each timed, until the time per product has settled (the last five
 * rounds within 3% of each other) after at least `minMs`, or `maxMs` have passed. Without
 * timestamps, `minMs` of rounds. A software adapter has no clocks to raise: a short loop.
 */
export async function warmGpu(minMs = 5000, maxMs = 20000): Promise<void> {
  warmed = true;
  if (info.fallback) minMs = maxMs = 1500;
  const n = info.fallback ? 128 : 2048;
  const a = Tensor.from(randn(n * n, 0.02, 11), [n, n]);
  const t0 = performance.now();
  const elapsed = () => performance.now() - t0;
  const per: number[] = [];
  let k = 8, settled = false;
  while (elapsed() < maxMs && !(settled && elapsed() >= minMs)) {
    const ms = await gpuTimeMs(() => {
      for (let i = 0; i < k; i++) ops.linear(a, a)[0].dispose();
    });
    if (ms === null) { // no timestamps: nothing to settle, minMs of rounds
      await sync();
      settled = true;
      continue;
    }
    per.push(ms / k);
    k = Math.min(1000, Math.max(8, Math.round(100 / (ms / k))));
    const last = per.slice(-5);
    settled = last.length === 5 && Math.max(...last) <= 1.03 * Math.min(...last);
  }
  a.dispose();
  if (info.fallback || !per.length) return;
  console.log(
    `GPU warm-up: ${((performance.now() - t0) / 1000).toFixed(1)} s, a ${n}³ product took ` +
      `${per[0].toFixed(3)} ms in the first round, ${median(per.slice(-5)).toFixed(3)} ms in the ` +
      `last five (${settled ? "settled" : "still changing when time ran out"})`,
  );
}
/**
 * Runs `fn` with dense-layer choices (ops.tuning.linear) and ops.tuning.cpuVariants.subgroups set,
 * restoring them afterwards, also when it throws.
 */
export async function withLinearConfig<T>(
  cfg: Partial<typeof ops.tuning.linear> & { subgroups?: "auto" | "never" },
  fn: () => T | Promise<T>,
): Promise<T> {
  const saved = { ...ops.tuning.linear }, savedSubgroups = ops.tuning.cpuVariants.subgroups;
  const { subgroups, ...lin } = cfg;
  Object.assign(ops.tuning.linear, lin);
  if (subgroups) ops.tuning.cpuVariants.subgroups = subgroups;
  try {
    return await fn();
  } finally {
    Object.assign(ops.tuning.linear, saved);
    ops.tuning.cpuVariants.subgroups = savedSubgroups;
  }
}

/** Full sizes (GPT-2 small) on a real GPU; scaled down on a software adapter (lavapipe). */
export const FULL = Deno.env.get("HOOKLENS_BENCH") === "full" ||
  (Deno.env.get("HOOKLENS_BENCH") !== "small" && !info.fallback);

interface Row {
  suite: string;
  name: string;
  gpuMs: number;
  wallMs: number;
  gflops: number | null;
  gbps: number | null;
}
const rows: Row[] = [];
/** A case's work per call, for GFLOP/s and GB/s. */
type Work = { flops?: number; bytes?: number };
let suiteName = "bench";

/** Records (or replaces) the summary row of case `name` in the current suite. */
function record(name: string, gpuMs: number, wallMs: number, work: Work = {}): void {
  const old = rows.findIndex((r) => r.suite === suiteName && r.name === name);
  if (old >= 0) rows.splice(old, 1);
  rows.push({
    suite: suiteName,
    name,
    gpuMs,
    wallMs,
    gflops: work.flops ? work.flops / gpuMs / 1e6 : null,
    gbps: work.bytes ? work.bytes / gpuMs / 1e6 : null,
  });
}

/** Names the suite (file) whose rows follow. */
export function suite(name: string): void {
  suiteName = name;
}

/** Median of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Waits for all submitted GPU work (one tiny readback). */
export async function sync(): Promise<void> {
  const b = runtime().gpu.device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  await readBuffers([{ buffer: b, bytes: 16 }]);
  b.destroy();
}

/** GPU milliseconds each timed sample keeps a real GPU busy for (see {@link bench}). A GPU left
 * idle through each iteration's CPU sync (~11 ms) never raises its clocks: the H100's first kernel
 * figures came out up to 5x slow that way. 0 on a software adapter, which has no clocks to raise;
 * the environment variable HOOKLENS_BENCH_BUSY_MS overrides it. */
export const BUSY_MS = Number(Deno.env.get("HOOKLENS_BENCH_BUSY_MS") ?? (info.fallback ? 0 : 10));

/**
 * Registers a Deno.bench case and records its GPU time: each iteration runs `fn` between GPU
 * timestamps (Deno's own figure is wall time including one CPU sync, ~11 ms in Deno 2.9). On a
 * real GPU a sample runs `fn` back to back as often as fills {@link BUSY_MS} (as measured by the
 * samples before it; the first is not kept) and records the time per call. Also measures
 * pipelined wall time: `pipelined` runs back to back, then one sync.
 */
export function bench(
  name: string,
  work: Work,
  fn: () => Promise<void> | void,
  opts: { n?: number; pipelined?: number } = {},
): void {
  const times: number[] = [];
  const n = opts.n ?? 10;
  let calls = 0; // per sample: grows until a sample fills BUSY_MS (the first, cold, is not kept)
  Deno.bench({ name, n, warmup: 2, group: suiteName }, async () => {
    // Warm up right before the first timed case, not at the top of a bench file: the file's setup
    // (random GPT-2 weights, the SAE) runs before any case and idles the GPU for seconds, and on
    // the H100 the first case then ran 4-5x slow after a warm-up that had settled (forward 1x128:
    // 15-18 ms, 3.6 ms once warmed here; bench/RESULTS.md, 2026-11-28 "later").
    if (!warmed) await warmGpu();
    const k = calls || 1;
    const ms = await gpuTimeMs(async () => {
      for (let i = 0; i < k; i++) await fn();
    });
    if (ms === null) return;
    if (calls) times.push(ms / k);
    const want = Math.ceil(BUSY_MS / Math.max(ms / k, 1e-3));
    calls = Math.max(calls, 1, Math.min(100, want));
  });
  Deno.bench({
    name: `${name} (pipelined x${opts.pipelined ?? 5})`,
    n: 1,
    warmup: 0,
    group: suiteName,
  }, async () => {
    const k = opts.pipelined ?? 5;
    await sync();
    const t0 = performance.now();
    for (let i = 0; i < k; i++) await fn();
    await sync();
    const wall = (performance.now() - t0) / k;
    record(name, times.length ? median(times.slice(-n)) : wall, wall, work);
  });
}

/**
 * Registers a Deno.bench case that times the CPU alone: `fn` records its GPU work as usual, but
 * nothing is submitted (the queue's submit is stubbed for the call), so the figure is what
 * hooklens and WebGPU cost the host per call (plus any readback's ~11 ms CPU sync) whatever the
 * GPU. Recorded as wall ms, with no GPU ms.
 */
export function benchHost(name: string, fn: () => Promise<void> | void, n = 10): void {
  const times: number[] = [];
  Deno.bench({ name, n, warmup: 2, group: suiteName }, async () => {
    const queue = runtime().gpu.device.queue;
    const submit = queue.submit;
    queue.submit = () => {};
    try {
      const t0 = performance.now();
      await fn();
      times.push(performance.now() - t0);
    } finally {
      queue.submit = submit;
    }
    record(name, NaN, median(times.slice(-n)));
  });
}

globalThis.addEventListener("unload", () => {
  if (!rows.length) return;
  const pad = (s: string, n: number) => s.padEnd(n);
  const lines = [
    `\nhooklens benchmarks on ${info.adapter} (${
      FULL ? "full sizes" : "scaled down for a software adapter"
    })`,
    `${pad("case", 58)} ${"GPU ms".padStart(9)} ${"wall ms".padStart(9)} ${"GFLOP/s".padStart(9)} ${
      "GB/s".padStart(8)
    }`,
  ];
  for (const r of rows) {
    lines.push(
      `${pad(`${r.suite}: ${r.name}`, 58)} ${
        (isNaN(r.gpuMs) ? "" : r.gpuMs.toFixed(3)).padStart(9)
      } ${r.wallMs.toFixed(2).padStart(9)} ` +
        `${r.gflops === null ? "".padStart(9) : r.gflops.toFixed(0).padStart(9)} ${
          r.gbps === null ? "".padStart(8) : r.gbps.toFixed(0).padStart(8)
        }`,
    );
  }
  console.log(lines.join("\n"));
  const dir = new URL("./results/", import.meta.url);
  Deno.mkdirSync(dir, { recursive: true });
  const file = new URL(`${rows[0].suite}.json`, dir);
  Deno.writeTextFileSync(
    file,
    JSON.stringify(
      {
        adapter: info.adapter,
        full: FULL,
        date: new Date().toISOString(),
        stats: gpuInfo().stats,
        rows,
      },
      null,
      1,
    ),
  );
}); // deno-fmt-ignore

/** Normal(0, std) random numbers (Box-Muller, seeded). */
export function randn(n: number, std: number, seed: number): Float32Array {
  const uniform = seededUniform(seed);
  const u = () => 1 - uniform(); // (0, 1]: log(u) stays finite
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u())), th = 2 * Math.PI * u();
    out[i] = r * Math.cos(th) * std;
    if (i + 1 < n) out[i + 1] = r * Math.sin(th) * std;
  }
  return out;
}

/** The end-to-end suites' model: GPT-2 small's shape on a GPU, scaled down on a software adapter. */
export const MODEL_DIMS: {
  layers: number;
  dModel: number;
  heads: number;
  vocab: number;
  nCtx: number;
} = FULL
  ? { layers: 12, dModel: 768, heads: 12, vocab: 50257, nCtx: 1024 }
  : { layers: 2, dModel: 256, heads: 4, vocab: 4096, nCtx: 256 };

/** The end-to-end suites' batch x sequence for the cases compared in detail (GPT-2 small's 8x128
 * on a GPU, 4x64 on a software adapter). */
export const E2E_SHAPE: [batch: number, pos: number] = FULL ? [8, 128] : [4, 64];

/** Deterministic token ids [B][P] below `vocab`. */
export function benchTokens(B: number, P: number, vocab: number): number[][] {
  return Array.from(
    { length: B },
    (_, b) => Array.from({ length: P }, (_, p) => (b * 7919 + p * 104729) % vocab),
  );
}

/** The end-to-end suites' SAE: d_sae 24576 (2048 scaled down) at blocks.8.hook_resid_pre (or the
 * last block's). */
export function benchSae(dims: { layers: number; dModel: number }): Promise<SAE> {
  return randomSae(
    dims.dModel,
    FULL ? 24576 : 2048,
    `blocks.${Math.min(8, dims.layers - 1)}.hook_resid_pre`,
  );
}

/** A GPT-2-shaped model with random weights made in memory (processed as TransformerLens does). */
export function randomGpt2(
  dims: { layers: number; dModel: number; heads: number; vocab: number; nCtx: number },
  dtype: "float32" | "float16" = "float32",
): HookedSAETransformer {
  let cfg: HookedTransformerConfig = configFromHf({
    architectures: ["GPT2LMHeadModel"],
    n_embd: dims.dModel,
    n_layer: dims.layers,
    n_head: dims.heads,
    vocab_size: dims.vocab,
    n_positions: dims.nCtx,
    // As GPT-2's own config: the last token ends text, so generate checks for it by default.
    eos_token_id: dims.vocab - 1,
  }, "random-gpt2/config.json");
  const { dModel: D, nHeads: H, dHead: E, dMlp: F, dVocab: V, nCtx } = cfg;
  const sd: StateDict = new Map();
  let seed = 1;
  const w = (shape: number[], std = 0.02) => ({
    shape,
    data: randn(shape.reduce((a, b) => a * b, 1), std, seed++),
  });
  const ones = (n: number) => ({ shape: [n], data: new Float32Array(n).fill(1) });
  sd.set("embed.W_E", w([V, D]));
  sd.set("pos_embed.W_pos", w([nCtx, D]));
  for (let l = 0; l < cfg.nLayers; l++) {
    const b = `blocks.${l}.`;
    sd.set(b + "ln1.w", ones(D)).set(b + "ln1.b", w([D], 0.01)).set(b + "ln2.w", ones(D)).set(
      b + "ln2.b",
      w([D], 0.01),
    );
    for (const q of ["Q", "K", "V"]) {
      sd.set(b + `attn.W_${q}`, w([H, D, E])).set(b + `attn.b_${q}`, w([H, E], 0.01));
    }
    sd.set(b + "attn.W_O", w([H, E, D])).set(b + "attn.b_O", w([D], 0.01));
    sd.set(b + "mlp.W_in", w([D, F])).set(b + "mlp.b_in", w([F], 0.01)).set(
      b + "mlp.W_out",
      w([F, D]),
    ).set(b + "mlp.b_out", w([D], 0.01));
  }
  sd.set("ln_final.w", ones(D)).set("ln_final.b", w([D], 0.01));
  sd.set("unembed.W_U", w([D, V])).set("unembed.b_U", { shape: [V], data: new Float32Array(V) });
  cfg = processWeights(sd, cfg, {
    foldLn: true,
    centerWritingWeights: true,
    centerUnembed: true,
    foldValueBiases: true,
  });
  return new HookedSAETransformer(cfg, sd, null, dtype);
} // deno-fmt-ignore

/** A standard SAE with random weights at `hook` (about `l0` active latents per token). */
export async function randomSae(dIn: number, dSae: number, hook: string): Promise<SAE> {
  return await SAE.fromWeights(
    { dIn, dSae, architecture: "standard", hookName: hook, applyBDecToInput: true, normalizeActivations: "none", reshapeActivations: "none", rescaleActsByDecoderNorm: false, dtype: "float32" },
    {
      W_enc: randn(dIn * dSae, 1 / Math.sqrt(dIn), 7), W_dec: randn(dSae * dIn, 1 / Math.sqrt(dIn), 8),
      // A negative encoder bias keeps most latents off, as in a trained SAE.
      b_enc: new Float32Array(dSae).fill(-2.5), b_dec: new Float32Array(dIn),
    },
  );
}
