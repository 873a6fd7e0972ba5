// GPU memory of GPT-2 small (random weights, full size) held by hooklens: the weights uploaded
// once, and the pool's high-water mark after runWithCache of every hook at 1x128 (the issue's
// comparison is the peer's 1561 MiB peak). The figures are counted buffer sizes, the same on every
// adapter; on lavapipe, GPU memory is process memory, so the RSS growth is printed too.
// Run: deno run --allow-all bench/memory.ts [float32|float16] (float16 where the adapter binds
// at most 128 MiB, as lavapipe does: GPT-2's f32 W_E is 147 MiB; activations are f32 either way).
import { gpuInfo } from "../mod.ts";
import type { Tensor } from "../mod.ts";
import { randomGpt2 } from "./_common.ts";

const MiB = 1 << 20;
const rss0 = Deno.memoryUsage().rss;
const dtype = Deno.args[0] === "float16" ? "float16" : "float32";
const data0 = gpuInfo().stats.dataBytes;
const model = randomGpt2({ layers: 12, dModel: 768, heads: 12, vocab: 50257, nCtx: 1024 }, dtype);
const weightBytes = gpuInfo().stats.dataBytes - data0; // the buffers the model uploaded
const V = model.cfg.dVocab;
const pool0 = gpuInfo().stats.poolBytes;
const tokens = [Array.from({ length: 128 }, (_, p) => (p * 104729) % V)];
const [out, cache] = await model.runWithCache(tokens);
const rows = await cache.toArrays();
const cached = [...rows.values()].reduce((n, a) => n + a.byteLength, 0);
const s = gpuInfo().stats;
const line = (k: string, v: number) => console.log(`${k.padEnd(52)} ${(v / MiB).toFixed(1)} MiB`);
console.log(
  `GPT-2 small, runWithCache (all ${cache.size} hooks) at 1x128, on ${gpuInfo().adapter}`,
);
line(`weights (uploaded once, ${model.dtype})`, weightBytes);
line("cached activations (read back)", cached);
line("pool high-water (activations, cache, logits)", s.poolBytes - pool0);
line("weights + pool", weightBytes + s.poolBytes - pool0);
line("process RSS growth (incl. building the weights on the CPU)", Deno.memoryUsage().rss - rss0);
(out as Tensor).dispose();
cache.dispose();
model.dispose();
