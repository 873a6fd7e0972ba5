// Batches of different lengths give each prompt its own numbers (issue 21). A property test over
// the reference architectures: random batches of 2-6 prompts of random lengths, padded left and
// right, against each prompt run alone: every real position's logits and hook activations (the
// real query x real key block of scores and patterns), the per-token and mean loss, with an SAE
// attached, gradients, the fused attention, and greedy generation with and without the KV cache.
// Tolerance: 1e-4 of each tensor's largest magnitude, as the reference tests.
import assert from "node:assert/strict";
import {
  AttentionMaskError,
  HookedSAETransformer,
  nextTokens,
  SAE,
  Tensor,
  topLatentsPerToken,
} from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { lastTokenIndices } from "../src/model/padding.ts";
import { maxRelErr, rng } from "./_util.ts";

const TOL = 1e-4;
/** Each reference architecture and an SAE of its own (null: none vendored). */
const ARCHS: [string, string | null][] = [
  ["gpt2_tiny", "std_resid_pre1"],
  ["rmsgqa_tiny", "std_resid_post1"],
  ["neox_tiny", "topk_resid_mid"],
  ["llama3_tiny", null], // Llama 3 rope scaling
  ["gemma2_tiny", "gemmascope_blocks_1_hook_resid_post"], // soft caps, sliding window of 4
];

/** A batch of 2-6 random prompts of 2-9 tokens, padded on `side`, with its mask. */
function randomBatch(
  r: () => number,
  vocab: number,
  side: "left" | "right",
): { prompts: number[][]; rows: number[][]; mask: number[][] } {
  const B = 2 + Math.floor(r() * 5);
  const prompts = Array.from(
    { length: B },
    () => Array.from({ length: 2 + Math.floor(r() * 8) }, () => Math.floor(r() * vocab)),
  );
  const P = Math.max(...prompts.map((p) => p.length));
  const rows: number[][] = [], mask: number[][] = [];
  for (const p of prompts) {
    // Pads are random tokens too: a pad that leaked into a real position would change it.
    const fill = Array.from({ length: P - p.length }, () => Math.floor(r() * vocab));
    rows.push(side === "left" ? [...fill, ...p] : [...p, ...fill]);
    const m = p.map(() => 1), z = fill.map(() => 0);
    mask.push(side === "left" ? [...z, ...m] : [...m, ...z]);
  }
  return { prompts, rows, mask };
}

/** Row b's real positions of a cached tensor [B, P, ...] or [B, H, P, P] (scores, pattern). */
function realPart(
  name: string,
  t: { shape: number[]; data: ArrayLike<number> },
  b: number,
  start: number,
  end: number,
): number[] {
  const out: number[] = [];
  const { shape, data } = t;
  if (/hook_(attn_scores|pattern)$/.test(name)) {
    const [, H, Q, K] = shape;
    for (let h = 0; h < H; h++) {
      for (let q = start; q < end; q++) {
        const at = ((b * H + h) * Q + q) * K;
        for (let k = start; k < end; k++) out.push(data[at + k]);
      }
    }
    return out;
  }
  const P = shape[1], inner = shape.slice(2).reduce((a, n) => a * n, 1);
  for (let p = start; p < end; p++) {
    const at = (b * P + p) * inner;
    for (let i = 0; i < inner; i++) out.push(data[at + i]);
  }
  return out;
}

async function arrays(
  cache: { keys(): string[]; get(n: string): Tensor },
): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const out = new Map();
  for (const k of cache.keys()) {
    const t = cache.get(k);
    out.set(k, { shape: [...t.shape], data: await t.toArray() as Float32Array });
  }
  return out;
}

for (const [arch, saeName] of ARCHS) {
  const dir = new URL(`./reference/${arch}/`, import.meta.url).pathname;
  Deno.test(`${arch}: padded batches (left and right) give every real position the numbers of its prompt alone`, async () => {
    using model = await HookedSAETransformer.fromPretrained(`${dir}hf`);
    const sae = saeName ? await SAE.load(`${dir}saes/${saeName}`) : null;
    const withSae = sae !== null;
    const r = rng(arch.length * 7919 + 21);
    for (const side of ["left", "right"] as const) {
      const { prompts, rows, mask } = randomBatch(r, model.cfg.dVocab, side);
      const P = rows[0].length;
      const starts = mask.map((m) => m.indexOf(1));
      const what = `${arch} ${side} lengths ${prompts.map((p) => p.length)}`;

      // Every hook, logits and per-token loss, with the SAE attached (its hooks included).
      const run = async (input: number[][], m?: number[][]) => {
        const [out, cache] = await model.runWithCacheWithSaes(input, {
          saes: withSae ? [sae!] : [],
          returnType: "both",
          lossPerToken: true,
          attentionMask: m,
        });
        using _c = cache;
        const { logits, loss } = out as { logits: Tensor; loss: Tensor };
        using _l = logits, _s = loss;
        const acts = await arrays(cache);
        acts.set("logits", {
          shape: [...logits.shape],
          data: await logits.toArray() as Float32Array,
        });
        return { acts, loss: await loss.toArray() as Float32Array, mask: cache.attentionMask };
      };
      const batch = await run(rows, mask);
      assert.deepEqual(batch.mask, mask, `${what}: the cache keeps the mask`);
      if (withSae) assert.ok(batch.acts.has(`${sae!.cfg.hookName}.hook_sae_acts_post`));
      let lossSum = 0, lossN = 0;
      for (const [b, p] of prompts.entries()) {
        const alone = await run([p]);
        for (const [name, a] of alone.acts) {
          const got = realPart(name, batch.acts.get(name)!, b, starts[b], starts[b] + p.length);
          const want = realPart(name, a, 0, 0, p.length);
          const err = maxRelErr(got, want);
          assert.ok(err < TOL, `${what}: row ${b} ${name} off by ${err}`);
        }
        const got = Array.from(batch.loss.subarray(b * (P - 1) + starts[b]).slice(0, p.length - 1));
        assert.ok(maxRelErr(got, alone.loss) < TOL, `${what}: row ${b} per-token loss`);
        // Pairs touching a pad count nothing.
        for (let i = 0; i < P - 1; i++) {
          if (!(mask[b][i] && mask[b][i + 1])) assert.equal(batch.loss[b * (P - 1) + i], 0);
        }
        lossSum += alone.loss.reduce((s, x) => s + x, 0);
        lossN += alone.loss.length;
      }
      // The mean loss is over real next tokens only.
      using _saes = model.withSaes(withSae ? [sae!] : []);
      using mean = await model.forward(rows, { returnType: "loss", attentionMask: mask });
      const [m] = await mean.toArray();
      assert.ok(
        Math.abs(m - lossSum / lossN) < TOL * Math.abs(lossSum / lossN),
        `${what}: mean loss`,
      );

      // The fused attention (nothing reads the pattern): same logits at real positions, and the
      // per-row last-token logits by a device-side gather.
      ops.tuning.attention.fused = true;
      try {
        using logits = await model.forward(rows, { attentionMask: mask });
        using last = ops.gatherPositions(logits, lastTokenIndices(mask));
        const all = await last.toArray();
        const V = model.cfg.dVocab;
        for (const [b, p] of prompts.entries()) {
          const got = realPart(
            "logits",
            { shape: [...logits.shape], data: await logits.toArray() },
            b,
            starts[b],
            starts[b] + p.length,
          );
          const want = realPart(
            "logits",
            batch.acts.get("logits")!,
            b,
            starts[b],
            starts[b] + p.length,
          );
          assert.ok(maxRelErr(got, want) < TOL, `${what}: fused row ${b}`);
          const ref = want.slice((p.length - 1) * V);
          assert.ok(
            maxRelErr(all.subarray(b * V, (b + 1) * V), ref) < TOL,
            `${what}: last-token row ${b}`,
          );
        }
      } finally {
        ops.tuning.attention.fused = false;
      }
    }
  });

  Deno.test(`${arch}: gradients of a padded batch's loss are each prompt's, scaled by its share of the tokens`, async () => {
    using model = await HookedSAETransformer.fromPretrained(`${dir}hf`);
    const r = rng(arch.length * 31 + 5);
    const { prompts, rows, mask } = randomBatch(r, model.cfg.dVocab, "left");
    const names = ["hook_embed", "blocks.0.hook_resid_mid", "blocks.1.attn.hook_pattern"].filter(
      (n) => model.hasHook(n),
    );
    const grads = async (input: number[][], m?: number[][]) => {
      const [loss, cache] = await model.runWithCache(input, {
        inclBwd: true,
        namesFilter: (n) => names.includes(n),
        attentionMask: m,
      });
      using _c = cache;
      (loss as Tensor).dispose();
      return await arrays(cache);
    };
    const batch = await grads(rows, mask);
    const N = prompts.reduce((s, p) => s + p.length - 1, 0);
    const starts = mask.map((m) => m.indexOf(1));
    for (const [b, p] of prompts.entries()) {
      const alone = await grads([p]);
      for (const n of names) {
        const got = realPart(n, batch.get(`${n}_grad`)!, b, starts[b], starts[b] + p.length);
        const want = realPart(n, alone.get(`${n}_grad`)!, 0, 0, p.length).map((x) =>
          x * (p.length - 1) / N
        );
        const err = maxRelErr(got, want);
        assert.ok(err < TOL, `${arch} row ${b} ${n}_grad off by ${err}`);
      }
    }
  });

  Deno.test(`${arch}: batched greedy generation continues each prompt as it alone, with and without the KV cache (and fused attention)`, async () => {
    using model = await HookedSAETransformer.fromPretrained(`${dir}hf`);
    const r = rng(arch.length * 131 + 9);
    for (const side of ["left", "right"] as const) {
      const { prompts, rows, mask } = randomBatch(r, model.cfg.dVocab, side);
      const opts = { maxNewTokens: 5, doSample: false, stopAtEos: false };
      const alone = [];
      for (const p of prompts) alone.push((await model.generate([p], opts))[0]);
      for (const [useKvCache, fused] of [[true, false], [false, false], [true, true]]) {
        ops.tuning.attention.fused = fused;
        try {
          const got = await model.generate(rows, { ...opts, useKvCache, attentionMask: mask });
          assert.deepEqual(got, alone, `${arch} ${side} kv ${useKvCache} fused ${fused}`);
        } finally {
          ops.tuning.attention.fused = false;
        }
      }
    }
  });
} // deno-fmt-ignore

Deno.test("generate stops each row at its own stop token and pads it after", async () => {
  const dir = new URL("./reference/gpt2_tiny/hf", import.meta.url).pathname;
  using model = await HookedSAETransformer.fromPretrained(dir);
  const prompts = [[5, 17, 900], [3, 44, 2, 99, 7, 1]];
  const free = await model.generate(prompts.map((p) => [p]).flat(1).slice(0, 1), {
    maxNewTokens: 6,
    doSample: false,
    stopAtEos: false,
  });
  // Row 0's second generated token becomes a stop token: row 0 ends there, row 1 goes on.
  const stopAt = free[0][4];
  const P = 6;
  const rows = prompts.map((p) => [...new Array(P - p.length).fill(0), ...p]);
  const mask = prompts.map((p) => [...new Array(P - p.length).fill(0), ...p.map(() => 1)]);
  const out = await model.generate(rows, {
    maxNewTokens: 6,
    doSample: false,
    stopAtEos: false,
    stopTokens: [stopAt],
    attentionMask: mask,
  });
  const row0 = out[0];
  const i = row0.indexOf(stopAt, 3);
  assert.ok(i >= 0 && i <= 4, `row 0 makes the stop token: ${row0}`);
  assert.deepEqual(row0.slice(0, i + 1), free[0].slice(0, i + 1));
  assert.equal(out[0].length - 3, out[1].length - 6, "rows end at the same step");
});

Deno.test("attention masks that do not fit: typed errors that say what is wrong", async () => {
  const dir = new URL("./reference/gpt2_tiny/hf", import.meta.url).pathname;
  using model = await HookedSAETransformer.fromPretrained(dir);
  const rows = [[1, 2, 3, 4], [5, 6, 7, 8]];
  const bad: [unknown, RegExp][] = [
    [[[1, 1, 1, 1], [0, 0, 0, 0]], /row 1 is all zeros/],
    [[[1, 1, 1, 1]], /has 1 rows, the tokens have 2 rows of 4/],
    [[[1, 1, 1], [1, 1, 1, 1]], /row 0 has 3 positions, the tokens have 4/],
    [[[1, 0, 1, 1], [1, 1, 1, 1]], /row 0 has a gap: pads at 1..1 between real tokens/],
    [[[1, 1, 1, 2], [1, 1, 1, 1]], /attentionMask\[0\]\[3\] is 2/],
  ];
  for (const [mask, msg] of bad) {
    await assert.rejects(
      model.forward(rows, { attentionMask: mask as number[][] }),
      (e: Error) => e instanceof AttentionMaskError && msg.test(e.message),
      String(msg),
    );
  }
  await assert.rejects(
    model.generate(rows, { maxNewTokens: 1, attentionMask: [[1, 1, 1, 1], [0, 0, 0, 0]] }),
    AttentionMaskError,
  );
  await assert.rejects(
    model.runWithCache(rows, { attentionMask: [[1, 0, 0, 1], [1, 1, 1, 1]] }),
    AttentionMaskError,
  );
});

Deno.test("text batches: toTokensWithMask pads on the model's side or the call's, runs match token input with its mask, feature analyses skip pads", async () => {
  const root = new URL("../models/demo-pycode/", import.meta.url).pathname;
  using model = await HookedSAETransformer.fromPretrained(`${root}hf`);
  const sae = await SAE.load(`${root}sae`);
  const texts = ["def f(x):\n    return x + x", "import os", "for i in range(3):"];
  assert.equal(model.cfg.defaultPaddingSide, "right");
  const right = model.toTokensWithMask(texts);
  const left = model.toTokensWithMask(texts, { paddingSide: "left" });
  const lens = texts.map((t) => model.toTokenIds(t)[0].length);
  const P = Math.max(...lens);
  assert.deepEqual(
    right.attentionMask,
    lens.map((n) => Array.from({ length: P }, (_, p) => p < n ? 1 : 0)),
  );
  assert.deepEqual(
    left.attentionMask,
    lens.map((n) => Array.from({ length: P }, (_, p) => p >= P - n ? 1 : 0)),
  );
  right.tokens.dispose();

  // Text input builds the same mask as toTokensWithMask gives for token input.
  using fromText = await model.forward(texts, { paddingSide: "left" });
  using fromTokens = await model.forward(left.tokens, { attentionMask: left.attentionMask });
  assert.equal(maxRelErr(await fromText.toArray(), await fromTokens.toArray()), 0);
  left.tokens.dispose();
  using loss = await model.forward(texts, { returnType: "loss" });
  let sum = 0, n = 0;
  for (const t of texts) {
    using l = await model.forward(t, { returnType: "loss", lossPerToken: true });
    for (const x of await l.toArray()) sum += x, n++;
  }
  const [got] = await loss.toArray();
  assert.ok(Math.abs(got - sum / n) < TOL * (sum / n), `text loss ${got} vs ${sum / n}`);

  // Positions of a token among each row's real tokens, in padded coordinates.
  const paren = model.toSingleToken("(");
  const pair = [texts[0], texts[2]];
  const P2 = Math.max(lens[0], lens[2]);
  assert.deepEqual(
    model.getTokenPosition("(", pair, { paddingSide: "left" }),
    pair.map((t) => P2 - model.toTokenIds(t)[0].length + model.toTokenIds(t)[0].indexOf(paren)),
  );
  const x = model.toTokenIds(texts[0])[0];
  const xId = model.toSingleToken(" x");
  assert.equal(model.getTokenPosition(xId, texts[0], { mode: "first" }), x.indexOf(xId));
  assert.equal(model.getTokenPosition(xId, texts[0], { mode: "last" }), x.lastIndexOf(xId));
  assert.notEqual(x.indexOf(xId), x.lastIndexOf(xId));
  assert.throws(
    () => model.getTokenPosition(" x", texts, { paddingSide: "left" }),
    /does not occur in row 1/,
  );

  // Feature analyses of a padded batch: the first row's real tokens, as alone.
  const alone = await topLatentsPerToken(model, sae, texts[1], 3);
  const batched = await topLatentsPerToken(model, sae, texts.slice(1), 3, { paddingSide: "left" });
  assert.equal(batched.length, alone.length);
  for (const [i, a] of alone.entries()) {
    assert.equal(batched[i].id, a.id);
    assert.deepEqual(batched[i].latents.map((l) => l.latent), a.latents.map((l) => l.latent));
  }
  using logitsAlone = await model.forward(texts[1]);
  const nextAlone = await nextTokens(model, logitsAlone, 3);
  const rows = model.toTokensWithMask(texts, { paddingSide: "right" });
  using logitsBatch = await model.forward(rows.tokens, { attentionMask: rows.attentionMask });
  rows.tokens.dispose();
  const nextBatch = await nextTokens(model, logitsBatch, 3, {
    row: 1,
    attentionMask: rows.attentionMask,
  });
  assert.deepEqual(nextBatch.map((t) => t.id), nextAlone.map((t) => t.id));
  assert.ok(Math.abs(nextBatch[0].prob - nextAlone[0].prob) < 1e-4);
});

Deno.test("an attentionMask Tensor is read back once and acts as its rows", async () => {
  const dir = new URL("./reference/rmsgqa_tiny/hf", import.meta.url).pathname;
  using model = await HookedSAETransformer.fromPretrained(dir);
  const rows = [[1, 2, 3, 4], [5, 6, 7, 8]];
  const mask = [[0, 0, 1, 1], [1, 1, 1, 1]];
  using t = Tensor.from(mask.flat(), [2, 4], "int32");
  using a = await model.forward(rows, { attentionMask: mask });
  using b = await model.forward(rows, { attentionMask: t });
  assert.equal(maxRelErr(await b.toArray(), await a.toArray()), 0);
  const [, cache] = await model.runWithCache(rows, { attentionMask: t, namesFilter: "hook_embed" });
  assert.deepEqual(cache.attentionMask, mask);
  cache.dispose();
  assert.deepEqual(
    await model.generate(rows, { maxNewTokens: 2, doSample: false, attentionMask: t }),
    await model.generate(rows, { maxNewTokens: 2, doSample: false, attentionMask: mask }),
  );
  using flat = Tensor.from(mask.flat(), [8], "int32");
  await assert.rejects(model.forward(rows, { attentionMask: flat }), AttentionMaskError);
});

Deno.test("cache helpers of a padded batch: posSlice counts each row's real tokens", async () => {
  const dir = new URL("./reference/gpt2_tiny/hf", import.meta.url).pathname;
  using model = await HookedSAETransformer.fromPretrained(dir);
  const prompts = [[5, 17, 900], [3, 44, 2, 99, 7, 1]];
  for (const side of ["left", "right"] as const) {
    const P = 6;
    const fill = (p: number[]) => new Array(P - p.length).fill(0);
    const rows = prompts.map((p) => side === "left" ? [...fill(p), ...p] : [...p, ...fill(p)]);
    const mask = prompts.map((p) =>
      side === "left" ? [...fill(p), ...p.map(() => 1)] : [...p.map(() => 1), ...fill(p)]
    );
    const [out, cache] = await model.runWithCache(rows, { attentionMask: mask });
    using _c = cache;
    (out as Tensor).dispose();
    for (const posSlice of [-1, 0, 1]) {
      const resid = await cache.accumulatedResid({ applyLn: true, posSlice }) as Tensor;
      using attrs = await cache.logitAttrs(resid, { tokens: [7, 8], posSlice });
      const [C, B, D] = resid.shape;
      const got = await resid.toArray(), gotAttrs = await attrs.toArray();
      resid.dispose();
      for (const [b, p] of prompts.entries()) {
        const [o, c] = await model.runWithCache([p]);
        using _a = c;
        (o as Tensor).dispose();
        using want = await c.accumulatedResid({ applyLn: true, posSlice }) as Tensor;
        using wantAttrs = await c.logitAttrs(want, { tokens: [[7, 8][b]], posSlice });
        const w = await want.toArray(), wa = await wantAttrs.toArray();
        const mine = Array.from(
          { length: C },
          (_, k) => Array.from(got.subarray((k * B + b) * D, (k * B + b + 1) * D)),
        ).flat();
        const mineAttrs = Array.from({ length: C }, (_, k) => gotAttrs[k * B + b]);
        assert.ok(maxRelErr(mine, w) < TOL, `${side} posSlice ${posSlice} row ${b} resid`);
        assert.ok(maxRelErr(mineAttrs, wa) < TOL, `${side} posSlice ${posSlice} row ${b} attrs`);
      }
    }
    await assert.rejects(cache.accumulatedResid({ posSlice: 3 }), /outside row 0's 3 real tokens/);
  }
});
