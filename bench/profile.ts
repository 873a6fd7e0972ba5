// Where the GPU time of the end-to-end cases goes, kernel by kernel: each dispatch timed between
// its own timestamps (src/gpu/timing.ts's profileDispatches). Same model and shapes as
// model_bench.ts (GPT-2-small-shaped on a GPU, scaled down on a software adapter). Prints a table
// per case and writes bench/results/profile.json. Run: deno run -A bench/profile.ts
// (bench/gpu.sh runs it on the GPU machine).
import type { Tensor } from "../mod.ts";
import { profileDispatches, summarizeProfile } from "../src/gpu/timing.ts";
import {
  benchSae,
  benchTokens,
  E2E_SHAPE,
  FULL,
  info,
  MODEL_DIMS,
  randomGpt2,
  warmGpu,
} from "./_common.ts";

if (!info.timestamps) {
  console.log(`${info.adapter} has no timestamp-query: nothing to profile.`);
  Deno.exit(0);
}
const model = randomGpt2(MODEL_DIMS);
const [B, P] = E2E_SHAPE;
const t = benchTokens(B, P, MODEL_DIMS.vocab);
const sae = await benchSae(MODEL_DIMS);

const cases: [string, () => Promise<void>][] = [
  [`forward ${B}x${P}`, async () => (await model.forward(t)).dispose()],
  [`runWithCache ${B}x${P}, all hooks`, async () => {
    const [out, cache] = await model.runWithCache(t);
    (out as Tensor).dispose();
    cache.dispose();
  }],
  [`runWithSaes ${B}x${P} (d_sae ${sae.cfg.dSae})`, async () => {
    ((await model.runWithSaes(t, { saes: [sae] })) as Tensor).dispose();
  }],
  [`runWithCache ${B}x${P} with the backward pass`, async () => {
    const [out, cache] = await model.runWithCache(t, { inclBwd: true });
    (out as Tensor).dispose();
    cache.dispose();
  }],
  // Generation's kernels: the prompt's forward, then three one-token steps with the KV cache
  // (~126 dispatches each on GPT-2 small; a 32-token call has more than the profile's 2048).
  ["generate 4 tokens after 8 (greedy)", async () => {
    await model.generate(benchTokens(1, 8, MODEL_DIMS.vocab), {
      maxNewTokens: 4,
      doSample: false,
      stopAtEos: false,
    });
  }],
];

// After the setup above (seconds of CPU work for the random weights, GPU idle), so the first case
// does not run at the clocks an idle GPU falls back to.
await warmGpu();
const out: Record<string, unknown> = {
  adapter: info.adapter,
  full: FULL,
  date: new Date().toISOString(),
  cases: {},
};
for (const [name, run] of cases) {
  await run(); // pipelines built, pool warm
  const p = (await profileDispatches(run))!;
  const kernels = summarizeProfile(p.dispatches);
  const total = kernels.reduce((s, k) => s + k.ms, 0);
  console.log(
    `\n${name}: ${p.dispatches.length} dispatches, ${total.toFixed(2)} ms GPU summed` +
      (p.truncated ? " (truncated: later dispatches not timed)" : ""),
  );
  for (const k of kernels) {
    console.log(
      `${k.ms.toFixed(3).padStart(10)} ms ${String(k.count).padStart(5)}x  ${k.kernel}`,
    );
  }
  (out.cases as Record<string, unknown>)[name] = { total, truncated: p.truncated, kernels };
}
const dir = new URL("./results/", import.meta.url);
Deno.mkdirSync(dir, { recursive: true });
Deno.writeTextFileSync(new URL("profile.json", dir), JSON.stringify(out, null, 1));
