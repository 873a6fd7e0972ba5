// `train` on the command line: a short run on the demo model writes an SAE that SAE.load reads,
// with one JSON progress line per report; a missing option is a typed error.
import assert from "node:assert/strict";
import { join } from "node:path";
import { SAE, TrainConfigError } from "../mod.ts";
import { main } from "../src/cli.ts";

async function run(args: string[]): Promise<string[]> {
  const out: string[] = [];
  const orig = console.log;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  try {
    await main(args);
  } finally {
    console.log = orig;
  }
  return out;
}

Deno.test("cli train --json: progress lines, then an SAE on disk that SAE.load reads", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = join(dir, "sae");
    const lines = await run([
      "train",
      "--hook",
      "blocks.1.hook_resid_post",
      "--d-sae",
      "48",
      "--arch",
      "standard",
      "--steps",
      "6",
      "--batch",
      "31",
      "--context",
      "32",
      "--log-every",
      "3",
      "--l1",
      "0.5",
      "--json",
    ].concat(["--out", out]));
    const progress = lines.slice(0, -1).map((l) => JSON.parse(l));
    assert.deepEqual(progress.map((p) => p.step), [3, 6, 6]);
    const final = JSON.parse(lines.at(-1)!);
    assert.equal(final.out, out);
    assert.equal(final.tokens, 6 * 31);
    assert.ok(Number.isFinite(final.eval.recovered));
    const sae = await SAE.load(out);
    assert.equal(sae.cfg.hookName, "blocks.1.hook_resid_post");
    assert.equal(sae.cfg.dSae, 48);
    sae.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli train without --out is a TrainConfigError naming the option", async () => {
  await assert.rejects(
    run(["train", "--hook", "blocks.0.hook_resid_pre", "--d-sae", "8"]),
    (e: Error) => e instanceof TrainConfigError && /--out/.test(e.message),
  );
});
