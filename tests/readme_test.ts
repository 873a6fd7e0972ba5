// The README's TypeScript examples run as written (imports of "@hooklens/hooklens" resolve to
// mod.ts through deno.json's import map).
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const readme = await Deno.readTextFile(new URL("README.md", root));
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

Deno.test("the README has TypeScript examples", () => {
  assert.ok(blocks.length >= 2);
});

for (const [i, code] of blocks.entries()) {
  Deno.test(`README example ${i + 1} runs as written`, async () => {
    const dir = new URL("tests/.readme/", root);
    await Deno.mkdir(dir, { recursive: true });
    const file = new URL(`example_${i + 1}.ts`, dir);
    await Deno.writeTextFile(file, code);
    const logs: unknown[][] = [];
    const orig = console.log;
    console.log = (...a: unknown[]) => void logs.push(a);
    try {
      await import(file.href);
    } finally {
      console.log = orig;
    }
    assert.ok(logs.length > 0, "the example printed something");
    // Every `// value` comment after a console.log is what it printed.
    const expected = [...code.matchAll(/console\.log\(.*\);\s*\/\/ (.*)/g)].map((m) => m[1].trim());
    const printed = logs.map((a) =>
      a.map((v) => (Array.isArray(v) ? `[${v.join(", ")}]` : String(v))).join(" ")
    );
    for (const e of expected) {
      assert.ok(printed.includes(e), `printed "${e}" (got ${JSON.stringify(printed)})`);
    }
  });
}
