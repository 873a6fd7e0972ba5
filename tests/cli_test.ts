// The command line on the built-in demo model: --json output of features, hooks and generate.
import assert from "node:assert/strict";
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

Deno.test("cli features --json: top latents per token of the demo SAE", async () => {
  const [line] = await run([
    "features",
    "--text",
    "def add(a, b):\n    return a + b",
    "--top",
    "3",
    "--json",
  ]);
  const res = JSON.parse(line);
  assert.equal(res.hook, "blocks.2.hook_resid_pre");
  assert.deepEqual(res.tokens.slice(0, 3).map((t: { token: string }) => t.token), [
    "<|endoftext|>",
    "def",
    " add",
  ]);
  for (const t of res.tokens) {
    assert.ok(t.latents.length <= 3);
    for (let i = 1; i < t.latents.length; i++) assert.ok(t.latents[i - 1].act >= t.latents[i].act);
    for (const l of t.latents) assert.ok(l.act > 0 && l.latent >= 0 && l.latent < 1024);
  }
  const ret = res.tokens.find((t: { token: string }) => t.token === " return");
  assert.ok(ret.latents.length > 0, "the return token has active latents");
});

Deno.test("cli hooks --json lists every hook with its shape (SAE hooks too); generate --json", async () => {
  const [line] = await run([
    "hooks",
    "--json",
    "--sae",
    new URL("../models/demo-pycode/sae", import.meta.url).pathname,
  ]);
  const res = JSON.parse(line);
  const names = res.hooks.map((h: { name: string }) => h.name);
  assert.ok(names.includes("blocks.2.hook_resid_pre.hook_sae_acts_post"));
  assert.ok(!names.includes("blocks.2.hook_resid_pre"));
  const pat = res.hooks.find((h: { name: string }) => h.name === "blocks.0.attn.hook_pattern");
  assert.deepEqual(pat.shape, [1, 4, 4, 4]);
  const [g] = await run(["generate", "--text", "import os\n", "--max-new-tokens", "5", "--json"]);
  const gen = JSON.parse(g);
  assert.ok(gen.text.startsWith("import os\n") && gen.completion.length > 0);
  const help = await run(["--help"]);
  assert.ok(help.join("\n").includes("features"));
});

Deno.test("the built-in demo prints latents per token, ablation, steering and a completion", async () => {
  const out = (await run(["demo"])).join("\n");
  for (
    const part of [
      "Strongest SAE latents per token",
      "(a) Zeroing latent #",
      "(b) Steering along latent #",
      "(c) Greedy completion",
      "done in",
    ]
  ) {
    assert.ok(out.includes(part), `demo output has "${part}"`);
  }
  // Ablating and steering change the predictions the demo prints.
  const nexts = [...out.matchAll(/\n {2}(".*%)\n/g)].map((m) => m[1]);
  assert.ok(
    nexts.length >= 3 && new Set(nexts).size === nexts.length,
    "three different next-token lists",
  );
});
