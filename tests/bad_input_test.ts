// Every row of the README's "What bad input gets" table is produced here, and the error's class and
// message are checked against the table (… in the table stands for a varying part). The device-lost
// row runs last: it destroys this test file's GPU device and checks that loading again recovers.
import assert from "node:assert/strict";
import { GpuError, HookedTransformer, Tensor } from "../mod.ts";
import { runtime } from "../src/gpu/runtime.ts";
import { badInputCases } from "./_bad_inputs.ts";

const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
const section = readme.slice(readme.indexOf("## What bad input gets"));
const rows = [...section.matchAll(/^\|\s*([^|]+?)\s*\|\s*`(\w+)`\s*\|\s*(.+?)\s*\|$/gm)].map((
  m,
) => ({
  name: m[1].trim(),
  cls: m[2],
  message: m[3].trim(),
}));

/** Checks that `msg` contains the table's fragments (split at …) in order. */
function matches(msg: string, pattern: string): boolean {
  let at = 0;
  for (const part of pattern.split("…").map((p) => p.trim()).filter(Boolean)) {
    const i = msg.indexOf(part, at);
    if (i < 0) return false;
    at = i + part.length;
  }
  return true;
}

const cases = await badInputCases();

Deno.test("the README table has a row for every case", () => {
  assert.deepEqual(rows.map((r) => r.name).sort(), [...Object.keys(cases), "device lost"].sort());
});

for (const row of rows.filter((r) => r.name !== "device lost")) {
  Deno.test(`bad input: ${row.name} -> ${row.cls}`, async () => {
    const e = await cases[row.name]();
    assert.equal(e.name, row.cls, e.message);
    assert.ok(
      matches(e.message, row.message),
      `message:\n  ${e.message}\ntable:\n  ${row.message}`,
    );
  });
}

Deno.test("bad input: device lost -> GpuError, and loading again acquires a new device", async () => {
  const row = rows.find((r) => r.name === "device lost")!;
  const dir = new URL("./reference/gpt2_tiny/hf", import.meta.url).pathname;
  const model = await HookedTransformer.fromPretrained(dir);
  const t = Tensor.from([1, 2, 3], [3]);
  runtime().gpu.device.destroy();
  await new Promise((r) => setTimeout(r, 50));
  const e = await model.forward([[1, 2, 3]]).then(() => null, (err) => err as Error);
  assert.ok(e instanceof GpuError, String(e));
  assert.equal(e.name, row.cls);
  assert.ok(matches(e.message, row.message), e.message);
  await assert.rejects(() => t.toArray(), GpuError);
  model.dispose(); // no throw on a lost device
  t.dispose();
  using again = await HookedTransformer.fromPretrained(dir);
  using logits = await again.forward([[1, 2, 3]]);
  assert.equal((await logits.toArray()).length, 3000);
});
