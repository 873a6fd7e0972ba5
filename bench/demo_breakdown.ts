// Where the demo model's forward spends its time on a software adapter, op by op, without GPU
// timestamps (on lavapipe a short dispatch's timestamps do not bracket its work: a 6.4 M
// multiply-add product read 0.07 ms). Each op of one block at the demo's shapes (1x128 tokens,
// d_model 128, 4 heads of 32, d_mlp 512; random inputs) is recorded 40 times and synced once; the
// figure is (wall - one empty sync) / 40, median of 5 rounds. Times a block's ops, the
// elementwise add as the per-dispatch floor, and the one-position unembedding both ways.
// Run: deno run -A bench/demo_breakdown.ts
import { Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { info, median, randn, sync } from "./_common.ts";

const [P, D, H, E, F, V] = [128, 128, 4, 32, 512, 50260];
let seed = 1;
const t = (shape: number[], scale = 0.05) =>
  Tensor.from(randn(shape.reduce((a, b) => a * b), scale, seed++), shape).keep();
const x = t([P, D], 1), h = t([P, F], 1);
const wqkv = ops.freezeWeight(t([D, 3 * D])), wo = t([D, D]), win = t([D, F]), wout = t([F, D]);
const bD = t([D]), bF = t([F]), b3 = t([3 * D]);
const q = t([1, P, H, E], 1), k = t([1, P, H, E], 1), v = t([1, P, H, E], 1);
const pattern = t([1, H, P, P], 1);
const x1 = t([1, D], 1), wU = t([D, V]), wUf = ops.freezeWeight(t([D, V]));

const scores = (): Tensor => {
  const s = Tensor.empty([1, H, P, P]);
  ops.gemm(
    { t: s, b1: H * P * P, b2: P * P, row: P, col: 1 },
    { t: q, b1: P * H * E, b2: E, row: H * E, col: 1 },
    { t: k, b1: P * H * E, b2: E, row: 1, col: H * E },
    { M: P, N: P, K: E, nb1: 1, nb2: H, alpha: 1 / Math.sqrt(E), causal: true },
  );
  return s;
};
const z = (p: Tensor): Tensor => {
  const out = Tensor.empty([1, P, H, E]);
  ops.gemm(
    { t: out, b1: P * H * E, b2: E, row: H * E, col: 1 },
    { t: p, b1: H * P * P, b2: P * P, row: P, col: 1 },
    { t: v, b1: P * H * E, b2: E, row: H * E, col: 1 },
    { M: P, N: E, K: P, nb1: 1, nb2: H },
  );
  return out;
};
const both = ([a, b]: [Tensor, Tensor | null]): Tensor[] => [a, b!];
const cases: [string, () => Tensor[]][] = [
  [
    "ln (fused scale + apply)",
    () => ops.normFused(x, "LN", 1e-5, bD, bD).filter((y) => y !== null),
  ],
  [
    "q/k/v 128x128x384 (one dispatch, three outputs)",
    () => ops.linearSplit(x, wqkv, b3, [D, D, D]),
  ],
  ["attention scores 4x128x128 (causal)", () => [scores()]],
  ["attention softmax 4x128x128", () => [ops.softmax(pattern)]],
  ["attention z 4x128x32", () => [z(pattern)]],
  ["attention out 128x128x128 + residual", () => both(ops.linear(x, wo, bD, { resid: x }))],
  ["mlp in 128x128x512 + gelu_new", () => both(ops.linear(x, win, bF, { act: "gelu_new" }))],
  ["mlp out 128x512x128 + residual", () => both(ops.linear(h, wout, bD, { resid: x }))],
  ["elementwise add 128x128 (the per-dispatch floor)", () => [ops.binary(x, x, "add")]],
  ["unembed 1x128x50257, storage buffer", () => [ops.linear(x1, wU, undefined, {}, 50257)[0]]],
  ["unembed 1x128x50257, texture copy", () => [ops.linear(x1, wUf, undefined, {}, 50257)[0]]],
]; // deno-fmt-ignore

const REPS = 40;
console.log(`demo model ops on ${info.adapter}: ms per call (${REPS} calls per sync, median of 5)`);
for (const [name, fn] of cases) {
  for (const y of fn()) y.dispose(); // pipelines built, texture copy made
  await sync();
  const rounds: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    await sync();
    const empty = performance.now() - t0;
    const outs: Tensor[] = [];
    const t1 = performance.now();
    for (let i = 0; i < REPS; i++) outs.push(...fn());
    await sync();
    rounds.push((performance.now() - t1 - empty) / REPS);
    for (const y of outs) y.dispose();
  }
  console.log(`${median(rounds).toFixed(3).padStart(8)} ms  ${name}`);
}
