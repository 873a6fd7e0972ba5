// Software adapters: the demo model (models/demo-pycode) with its one-row products reading texture
// copies of the frozen weights (`tuning.linear.matvecTexture` "auto", the default) against the
// storage-buffer kernel ("never"): the forward of 1x128 and 1x1 tokens with the last position's
// logits read back, and 32 greedy tokens after 8. The two settings alternate call by call (the
// order swapped every round), so both see the same machine; figures are medians of wall ms per
// call. Prints a table on exit and writes bench/results/texture.json. On a GPU it times nothing.
import { HookedTransformer, type Tensor } from "../mod.ts";
import { DEMO_MODEL } from "../src/cli.ts";
import { tuning } from "../src/gpu/tuning.ts";
import { info, median } from "./_common.ts";

const ROUNDS = Number(Deno.env.get("HOOKLENS_TEXTURE_ROUNDS") ?? 15);
const results: { case: string; texture: number[]; storage: number[] }[] = [];

if (!info.fallback) {
  console.log(`bench/texture_bench.ts: ${info.adapter} is not a software adapter; nothing timed.`);
} else {
  const model = await HookedTransformer.fromPretrained(DEMO_MODEL);
  const V = model.cfg.dVocab;
  const toks = (n: number) => [Array.from({ length: n }, (_, i) => (i * 104729 + 7) % V)];
  const last = (n: number) => {
    const t = toks(n);
    return async () => {
      const logits: Tensor = await model.forward(t, { logitsAt: "last" });
      await logits.toArray();
      logits.dispose();
    };
  };
  const prompt = toks(8);
  const cases: [string, () => Promise<unknown>][] = [
    ['demo forward 1x128, logitsAt "last", read back', last(128)],
    ['demo forward 1x1, logitsAt "last", read back', last(1)],
    [
      "demo generate 32 tokens after 8 (greedy)",
      () => model.generate(prompt, { maxNewTokens: 32, doSample: false, stopAtEos: false }),
    ],
  ]; // deno-fmt-ignore
  const timed = async (mode: "auto" | "never", fn: () => Promise<unknown>): Promise<number> => {
    tuning.linear.matvecTexture = mode;
    try {
      const t0 = performance.now();
      await fn();
      return performance.now() - t0;
    } finally {
      tuning.linear.matvecTexture = "auto";
    }
  };
  for (const [name, fn] of cases) {
    Deno.bench({ name, n: 1, warmup: 0, group: "texture" }, async () => {
      for (const mode of ["auto", "never"] as const) await timed(mode, fn); // pipelines, copies
      const r = { case: name, texture: [] as number[], storage: [] as number[] };
      for (let i = 0; i < ROUNDS; i++) {
        const order = i % 2 ? ["never", "auto"] as const : ["auto", "never"] as const;
        for (const mode of order) {
          (mode === "auto" ? r.texture : r.storage).push(await timed(mode, fn));
        }
      }
      const k = results.findIndex((x) => x.case === name);
      if (k >= 0) results.splice(k, 1); // (Deno may call a case more than once)
      results.push(r);
    });
  }
}

globalThis.addEventListener("unload", () => {
  if (!results.length) return;
  const lines = [`\ntexture copies against storage buffers on ${info.adapter} (wall ms per call)`];
  for (const r of results) {
    const [t, s] = [median(r.texture), median(r.storage)];
    lines.push(
      `${r.case.padEnd(48)} texture ${t.toFixed(1).padStart(7)}  storage ${
        s.toFixed(1).padStart(7)
      }  storage / texture ${(s / t).toFixed(2)}`,
    );
  }
  console.log(lines.join("\n"));
  const dir = new URL("./results/", import.meta.url);
  Deno.mkdirSync(dir, { recursive: true });
  Deno.writeTextFileSync(
    new URL("texture.json", dir),
    JSON.stringify({ adapter: info.adapter, date: new Date().toISOString(), results }, null, 1),
  );
});
