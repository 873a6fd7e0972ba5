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

// ---- The command line as a user runs it: subprocesses, exit codes, stderr.

const ROOT = new URL("../", import.meta.url).pathname;
const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks as Record<
  string,
  string
>;

/** Runs a shell command line in the repository root. */
async function sh(line: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("sh", {
    args: ["-c", line],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: dec(out.stdout), stderr: dec(out.stderr) };
} // deno-fmt-ignore

Deno.test("the README's command lines run as written (deno task cli -- ...), options included", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const block = readme.slice(readme.indexOf("## Command line")).split("```")[1];
  const lines = block.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) => l.startsWith("deno task cli -- "));
  assert.ok(lines.length >= 4, block);
  for (const line of lines) {
    const r = await sh(line);
    assert.equal(r.code, 0, `${line}\n${r.stderr}`);
    const out = r.stdout.trim();
    if (line.includes("--json")) JSON.parse(out.split("\n").at(-1)!);
    if (line.includes(" hooks --sae")) assert.ok(out.includes("hook_sae_acts_post"), "--sae was applied");
    if (line.includes(" generate --text")) {
      const prompt = /--text "([^"]*)"/.exec(line)![1];
      assert.ok(out.startsWith(prompt) && out.length > prompt.length, out);
    }
  }
  // A command with options of its own (train) gets them after "--" too.
  const train = await sh("deno task cli -- train --help");
  assert.equal(train.code, 0, train.stderr);
  assert.match(train.stdout, /Usage: deno task cli -- train/);
  // The option that Deno 2.9.6 used to drop after "--".
  const doctor = await sh("deno task cli -- doctor --json");
  assert.equal(doctor.code, 0, doctor.stderr);
  assert.equal(JSON.parse(doctor.stdout.trim().split("\n").at(-1)!).ok, true);
}); // deno-fmt-ignore

Deno.test("cli errors: non-zero exit, one line on stderr without a stack; --verbose adds it", async () => {
  const cases: [string, number, RegExp][] = [
    ["nosuchcommand", 2, /^hooklens: Unknown command "nosuchcommand"; commands: demo, features/],
    ["features", 2, /^hooklens: features needs --text/],
    ["features --text hi --bogus", 2, /^hooklens: Unknown option '--bogus'/],
    ["generate --text hi --max-new-tokens lots", 2, /^hooklens: --max-new-tokens must be a number/],
    ["explore --port 70000", 2, /^hooklens: --port must be an integer in 0\.\.65535/],
    ["features --text hi --model /nonexistent/model", 1, /^hooklens: .*\/nonexistent\/model.*no such model directory/],
    ["features --text hi --sae /nonexistent/sae", 1, /^hooklens: .*no such SAE directory/],
  ];
  for (const [args, code, re] of cases) {
    const r = await sh(`deno task cli -- ${args}`);
    const err = r.stderr.split("\n").filter((l) => l && !l.startsWith("Task cli"));
    assert.equal(r.code, code, `${args}: ${r.stderr}`);
    assert.equal(err.length, 1, `${args}: one line, got:\n${r.stderr}`);
    assert.match(err[0], re);
  }
  const v = await sh("deno task cli -- features --text hi --model /nonexistent/model --verbose");
  assert.equal(v.code, 1);
  assert.match(v.stderr, /\n\s+at .*model\.ts/);
}); // deno-fmt-ignore

Deno.test("cli explore --port 0 picks a free port and prints its URL", async () => {
  // `deno task cli -- explore --port 0` runs the task's command with "--" before the arguments:
  // the same command line, run directly so that this test can stop the process it made.
  const [cmd, ...args] = tasks.cli.split(" ");
  const child = new Deno.Command(cmd, { args: [...args, "--", "explore", "--port", "0"], cwd: ROOT, stdout: "piped", stderr: "null" }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/http:\/\/127\.0\.0\.1:\d+\//.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const url = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(text);
    assert.ok(url, text);
    assert.notEqual(url[1], "8787", "not the default port");
    const info = await fetch(`${url[0]}api/info`);
    assert.equal(info.status, 200);
    assert.ok((await info.json()).sae.dSae > 0);
    await reader.cancel();
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
});
