// Every WGSL file compiles and every entry point builds a pipeline (a shader error would otherwise
// surface only as a rejected submission).
import assert from "node:assert/strict";
import { initRuntime } from "../src/gpu/runtime.ts";
import { SHADERS } from "../src/gpu/shaders.ts";

Deno.test("every shader compiles without errors and every entry point builds", async () => {
  const { gpu } = await initRuntime();
  for (const s of Object.values(SHADERS)) {
    const code = (/\bf16\b/.test(s.code) ? "enable f16;\n" : "") + s.code;
    const module = gpu.device.createShaderModule({ code, label: s.name });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error").map((m) =>
      `${s.name}:${m.lineNum}: ${m.message}`
    );
    assert.deepEqual(errors, [], s.name);
    const entries = [...s.code.matchAll(/@compute[^\n]*\n(?:[^\n]*\n)?\s*fn (\w+)/g)].map((m) =>
      m[1]
    );
    assert.ok(entries.length > 0, `${s.name} has entry points`);
    for (const entryPoint of entries) {
      gpu.device.pushErrorScope("validation");
      gpu.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint } });
      const err = await gpu.device.popErrorScope();
      assert.equal(err, null, `${s.name}:${entryPoint}: ${err?.message}`);
    }
  }
});
