// Every WGSL file compiles and every entry point builds a pipeline (a shader error would otherwise
// surface only as a rejected submission).
import assert from "node:assert/strict";
import { initRuntime, shaderCode } from "../src/gpu/runtime.ts";
import { SHADERS } from "../src/gpu/shaders.ts";
import { linearCpuWgsl } from "../tools/gen_linear_cpu.ts";

Deno.test("every shader compiles without errors and every entry point builds", async () => {
  const { gpu } = await initRuntime();
  // Specialisation constants of the shaders that take them (each variant is built below too).
  const variants: Record<string, Record<string, number | boolean | string>[]> = {
    embed: [{ WT: "f32" }, { WT: "f16" }],
    linear: [
      { WT: "f32", BK: 8, ACT: 0, RESID: false, GATE: 0, SPLIT: false },
      { WT: "f16", BK: 16, ACT: 1, RESID: false, GATE: 0, SPLIT: false },
      { WT: "f32", BK: 8, ACT: 0, RESID: true, GATE: 0, SPLIT: false },
      { WT: "f32", BK: 8, ACT: 3, RESID: false, GATE: 1, SPLIT: false },
      { WT: "f32", BK: 8, ACT: 3, RESID: false, GATE: 2, SPLIT: false },
      { WT: "f32", BK: 8, ACT: 0, RESID: false, GATE: 0, SPLIT: true },
    ],
    flash: [{ E: 64 }, { E: 16 }],
    linear_cpu: [
      { WT: "f32", ACT: 0, RESID: true, GATE: 0, SPLIT: false },
      { WT: "f16", ACT: 3, RESID: false, GATE: 1, SPLIT: false },
      { WT: "f32", ACT: 3, RESID: false, GATE: 2, SPLIT: false },
      { WT: "f32", ACT: 0, RESID: false, GATE: 0, SPLIT: true },
    ],
  };
  for (const [name, s] of Object.entries(SHADERS)) {
    // f16 variants need the adapter's shader-f16 feature (hooklens only builds them then).
    const built = (variants[name] ?? [{}]).filter((d) => gpu.hasF16 || d.WT !== "f16");
    for (const defines of built) {
      const code = shaderCode(s, defines);
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
  }
});

Deno.test("shaders/linear_cpu.wgsl is what tools/gen_linear_cpu.ts writes (edit the generator, then run it)", () => {
  const committed = Deno.readTextFileSync(new URL("../shaders/linear_cpu.wgsl", import.meta.url));
  assert.equal(committed, linearCpuWgsl());
});
