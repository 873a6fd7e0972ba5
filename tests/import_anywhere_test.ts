// mod.ts imported from a script in a directory with no deno.json (no import map): every
// dependency must be a full specifier. The script loads the demo model and tokenizes text, which
// uses the npm tokenizer package.
import assert from "node:assert/strict";

Deno.test("mod.ts imports from a script outside the repository, with no deno.json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hooklens-outside-" });
  const mod = new URL("../mod.ts", import.meta.url).href;
  const model = new URL("../models/demo-pycode/hf", import.meta.url).pathname;
  await Deno.writeTextFile(
    `${dir}/main.ts`,
    `import { HookedTransformer, SUPPORTED_ARCHITECTURES } from ${JSON.stringify(mod)};\n` +
      `const m = await HookedTransformer.fromPretrained(${JSON.stringify(model)});\n` +
      `console.log(JSON.stringify({ ids: m.toTokenIds("def f(x):")[0].length, archs: SUPPORTED_ARCHITECTURES.length }));\n` +
      `m.dispose();\n`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts"],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const res = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  assert.ok(res.ids > 1 && res.archs > 0, JSON.stringify(res));
  await Deno.remove(dir, { recursive: true });
});
