// End to end on a GPT-2-small-shaped model with random weights made in memory (12 layers,
// d_model 768, vocab 50257; scaled down on a software adapter): forward at several batch x seq,
// runWithCache (all hooks and residual only), runWithSaes (d_sae 24576 at blocks.8.hook_resid_pre),
// and 32 generated tokens.
import type { Tensor } from "../mod.ts";
import {
  bench,
  benchHost,
  benchSae,
  benchTokens,
  E2E_SHAPE,
  FULL,
  info,
  MODEL_DIMS,
  randomGpt2,
  suite,
  withLinearConfig,
} from "./_common.ts";
import * as ops from "../src/gpu/ops.ts";

suite("model");
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
const [B, P] = E2E_SHAPE;
const t = tokens(B, P);
const forwardWith = (cfg: Partial<typeof ops.tuning.linear>) =>
  withLinearConfig(cfg, async () => (await model.forward(t)).dispose());
// Kernel choices, each timed against the same call with the defaults made here beside them: on the
// H100 the early rows of a suite read high (the forward 8x128 above 17-20 ms by timestamps, this
// row 13.2-13.3; bench/RESULTS.md, 2026-11-28 "later"), so the forward above is no fair base.
bench(`forward ${B}x${P}, default choices`, { flops: flops(B, P) }, () => forwardWith({}));
/** `fn` with the one-pass attention (off by default: 10x slower than three dispatches on the H100
 * alone). */
const withFusedAttention = async (fn: () => Promise<unknown>): Promise<void> => {
  ops.tuning.attention.fused = true;
  try {
    await fn();
  } finally {
    ops.tuning.attention.fused = false;
  }
};
bench(
  `forward ${B}x${P} with fused attention`,
  { flops: flops(B, P) },
  () => withFusedAttention(async () => (await model.forward(t)).dispose()),
);
// Dense-layer choices (ops.tuning.linear; a software adapter takes its own kernels, so only a GPU
// has anything to compare): the 128x128 tiles' K step of 8 (the default before 2026-11-28),
// split-K of deep sums only (slices of >= 2048, likewise), and split-K of the MLP input too (192
// tiles: fewer than bigTileMinTiles 264).
const GPU_CHOICES: [string, Partial<typeof ops.tuning.linear>][] = info.fallback ? [] : [
  ["with BK 8", { bk: 8 }],
  ["with split-K of deep sums only", { splitKMinDepth: 2048 }],
  ["with split-K of the MLP input too", { bigTileMinTiles: 264 }],
];
for (const [label, cfg] of GPU_CHOICES) {
  bench(`forward ${B}x${P} ${label}`, { flops: flops(B, P) }, () => forwardWith(cfg));
}
// Padding (issue 21): a batch of 8 prompts of 16-128 tokens, left-padded and run with its
// attention mask (mask and row starts uploaded per call, pad keys masked in the scores), against
// the unpadded batch of the longest length. Target: at most 1.2x.
const padLens = Array.from({ length: 8 }, (_, i) => Math.round(16 + (112 * i) / 7));
const padMask = padLens.map((n) => Array.from({ length: 128 }, (_, p) => (p >= 128 - n ? 1 : 0)));
const padTokens = tokens(8, 128);
bench(`forward 8x128 unpadded`, { flops: flops(8, 128) }, async () => {
  (await model.forward(padTokens)).dispose();
});
bench(
  `forward 8x128 padded (16-128 tokens, attention mask)`,
  { flops: flops(8, 128) },
  async () => {
    (await model.forward(padTokens, { attentionMask: padMask })).dispose();
  },
);
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
if (info.f16) {
  const half = randomGpt2(dims, "float16");
  const t16 = tokens(B, P);
  bench(
    `forward ${B}x${P} with f16 weights`,
    { flops: flops(B, P) },
    async () => (await half.forward(t16)).dispose(),
  );
}
const prompt = tokens(1, 8);
const generate32 = async () => {
  await model.generate(prompt, { maxNewTokens: 32, doSample: false, stopAtEos: false });
};
bench("generate 32 tokens (greedy, KV cache, batch 1)", {}, generate32, { n: 3, pipelined: 2 });
// As a user calls it (and TransformerLens's figure was taken): checking for EOS (the config's last
// token, as GPT-2's), which reads the token ids back every few steps.
bench("generate 32 tokens, checking for EOS (the default)", {}, async () => {
  const [row] = await model.generate(prompt, { maxNewTokens: 32, doSample: false });
  if (row.length !== prompt[0].length + 32) throw new Error(`EOS after ${row.length} tokens`);
}, { n: 3, pipelined: 2 });
// On a software adapter the one-row products read texture copies of the (frozen) weights; timed
// here against the storage-buffer kernel, in generation and for one position's logits.
if (info.fallback) {
  const storage = <T>(fn: () => Promise<T>) => withLinearConfig({ matvecTexture: "never" }, fn);
  bench(
    "generate 32 tokens, matrix-vector products from storage buffers",
    {},
    () => storage(generate32),
    { n: 3, pipelined: 2 },
  );
  const last = async () => (await model.forward(t, { logitsAt: "last" })).dispose();
  bench(`forward ${B}x${P}, logitsAt "last"`, { flops: flops(B, P) }, last);
  bench(`forward ${B}x${P}, logitsAt "last", W_U from a storage buffer`, {
    flops: flops(B, P),
  }, () => storage(last));
}
// One-pass attention in generation (a choice for GPUs: on lavapipe 32 tokens took 313 against 203
// ms; its host time is ~5 ms less, 24 fewer dispatches a token).
if (!info.fallback) {
  bench("generate 32 tokens, fused attention", {}, () => withFusedAttention(generate32), {
    n: 3,
    pipelined: 2,
  });
}
// What the CPU costs per call, nothing submitted: generation is host-bound on a fast GPU (a token
// is ~126 dispatches of tiny kernels on GPT-2 small), and so is a small forward.
benchHost(`forward ${B}x${P}, host recording only`, async () => (await model.forward(t)).dispose());
benchHost("generate 32 tokens, host recording only (and one readback)", generate32, 5);
