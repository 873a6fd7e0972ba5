// tools/check_cycles.ts (part of `deno task check`): finds and names import cycles.
import assert from "node:assert/strict";
import { findCycles, localGraph } from "../tools/check_cycles.ts";

Deno.test("findCycles names each cycle as a path and passes an acyclic graph", () => {
  const g = new Map([
    ["a", ["b"]],
    ["b", ["c", "d"]],
    ["c", ["a"]],
    ["d", []],
    ["e", ["e"]],
  ]);
  assert.deepEqual(findCycles(g), [["a", "b", "c", "a"], ["e", "e"]]);
  assert.deepEqual(findCycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", []]])), []);
});

Deno.test("localGraph keeps local static imports, types included, not remote or dynamic ones", () => {
  const g = localGraph({
    modules: [
      {
        specifier: "file:///a.ts",
        dependencies: [
          { code: { specifier: "file:///b.ts" } },
          { type: { specifier: "file:///c.ts" } },
          { code: { specifier: "file:///d.ts" }, isDynamic: true },
          { code: { specifier: "npm:x" } },
        ],
      },
      { specifier: "npm:x" },
    ],
  });
  assert.deepEqual([...g], [["file:///a.ts", ["file:///b.ts", "file:///c.ts"]]]);
});

Deno.test("mod.ts's local modules import each other in no cycle", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "mod.ts"],
    cwd: new URL("../", import.meta.url),
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const cycles = findCycles(localGraph(JSON.parse(new TextDecoder().decode(out.stdout))));
  assert.deepEqual(cycles, []);
});
