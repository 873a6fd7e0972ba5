// End to end on a GPT-2-small-shaped model with random weights made in memory (12 layers,
// d_model 768, vocab 50257; scaled down on a software adapter): forward at several batch x seq,
// runWithCache (all hooks and residual only), runWithSaes (d_sae 24576 at blocks.8.hook_resid_pre),
// and 32 generated tokens.
import type { Tensor } from "../mod.ts";
import {
  bench,
  benchSae,
  benchTokens,
  FULL,
  info,
  MODEL_DIMS,
  randomGpt2,
  suite,
  warmGpu,
  withLinearConfig,
} from "./_common.ts";
import * as ops from "../src/gpu/ops.ts";

suite("model");
await warmGpu();
const dims = MODEL_DIMS;
const model = randomGpt2(dims);
const c = model.cfg;
const params = c.nLayers * (4 * c.dModel * c.dModel + 2 * c.dModel * c.dMlp) + c.dModel * c.dVocab;
const flops = (B: number, P: number) =>
  2 * B * P * params + c.nLayers * 4 * B * c.nHeads * P * P * c.dHead;
const tokens = (B: number, P: number) => benchTokens(B, P, c.dVocab);

const sizes: [number, number][] = FULL
  ? [[1, 128], [8, 128], [32, 128], [8, 1024]]
  : [[1, 64], [4, 64]];
for (const [B, P] of sizes) {
  const t = tokens(B, P);
  bench(
    `forward ${B}x${P}`,
    { flops: flops(B, P) },
    async () => (await model.forward(t)).dispose(),
    { n: B * P > 4096 ? 3 : 8 },
  );
}
const [B, P] = FULL ? [8, 128] : [4, 64];
const t = tokens(B, P);
// The one-pass attention (off by default until these two lines are compared on a GPU).
bench(`forward ${B}x${P} with fused attention`, { flops: flops(B, P) }, async () => {
  ops.attentionConfig.fused = true;
  try {
    (await model.forward(t)).dispose();
  } finally {
    ops.attentionConfig.fused = false;
  }
});
if (!info.fallback) {
  // Dense-layer choices for outputs of few 128x128 tiles (ops.linearConfig; a software adapter
  // takes its own kernels, so only a GPU has anything to compare): 128x128 tiles throughout (the
  // rule before bigTileMinTiles), and split-K of GPT-2's layers too (slices of >= 256 k) instead
  // of 64x64 tiles (by default only sums deeper than 4096 are split).
  const forwardWith = (cfg: Partial<typeof ops.linearConfig>) =>
    withLinearConfig(cfg, async () => (await model.forward(t)).dispose());
  bench(
    `forward ${B}x${P} with 128x128 tiles throughout`,
    { flops: flops(B, P) },
    () => forwardWith({ bigTileMinTiles: 0 }),
  );
  bench(
    `forward ${B}x${P} with split-K`,
    { flops: flops(B, P) },
    () => forwardWith({ splitK: "auto", splitKMinDepth: 256 }),
  );
}
bench(`runWithCache ${B}x${P}, all hooks`, { flops: flops(B, P) }, async () => {
  const [out, cache] = await model.runWithCache(t);
  (out as Tensor).dispose();
  cache.dispose();
});
bench(`runWithCache ${B}x${P}, residual stream only`, { flops: flops(B, P) }, async () => {
  const [out, cache] = await model.runWithCache(t, { namesFilter: (n) => n.includes("resid") });
  (out as Tensor).dispose();
  cache.dispose();
});
bench(`runWithCache ${B}x${P} with the backward pass (mean loss, all hooks and their gradients)`, {
  flops: 3 * flops(B, P),
}, async () => {
  const [out, cache] = await model.runWithCache(t, { inclBwd: true });
  (out as Tensor).dispose();
  cache.dispose();
});
const sae = await benchSae(dims);
const saeWork = { flops: flops(B, P) + 4 * B * P * c.dModel * sae.cfg.dSae };
const runWithSaes = async () => ((await model.runWithSaes(t, { saes: [sae] })) as Tensor).dispose();
bench(`runWithSaes ${B}x${P} (d_sae ${sae.cfg.dSae})`, saeWork, runWithSaes);
if (!info.fallback) {
  // The SAE decode of many tokens is split over K by default (ops.linearConfig.splitK): the same
  // call without.
  bench(
    `runWithSaes ${B}x${P} (d_sae ${sae.cfg.dSae}) without split-K`,
    saeWork,
    () => withLinearConfig({ splitK: "off" }, runWithSaes),
  );
}
if ((await import("../src/gpu/info.ts")).gpuInfo().f16) {
  const half = randomGpt2(dims, "float16");
  const t16 = tokens(B, P);
  bench(
    `forward ${B}x${P} with f16 weights`,
    { flops: flops(B, P) },
    async () => (await half.forward(t16)).dispose(),
  );
}
const prompt = tokens(1, 8);
bench("generate 32 tokens (greedy, KV cache, batch 1)", {}, async () => {
  await model.generate(prompt, { maxNewTokens: 32, doSample: false, stopAtEos: false });
}, { n: 3, pipelined: 2 });
bench("generate 32 tokens with fused attention", {}, async () => {
  ops.attentionConfig.fused = true;
  try {
    await model.generate(prompt, { maxNewTokens: 32, doSample: false, stopAtEos: false });
  } finally {
    ops.attentionConfig.fused = false;
  }
}, { n: 3, pipelined: 2 });
