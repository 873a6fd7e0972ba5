// Every WGSL file compiles and every entry point builds a pipeline (a shader error would otherwise
// surface only as a rejected submission).
import assert from "node:assert/strict";
import { shaderCode } from "../src/gpu/dispatch.ts";
import { initRuntime } from "../src/gpu/runtime.ts";
import { SHADERS } from "../src/gpu/shaders.ts";

/** shaders/linear.wgsl's plainest specialisation; the variants below change a few of these. */
const LINEAR = {
  WT: "f32",
  BK: 8,
  ACT: 0,
  RESID: false,
  GATE: 0,
  SPLIT: false,
  TRANS: false,
  SPLITK: false,
};

Deno.test("every shader compiles without errors and every entry point builds", async () => {
  const { gpu } = await initRuntime();
  // Specialisation constants of the shaders that take them (each variant is built below too).
  const variants: Record<string, Record<string, number | boolean | string>[]> = {
    embed: [{ WT: "f32" }, { WT: "f16" }],
    linear: [
      LINEAR,
      { ...LINEAR, WT: "f16", BK: 16, ACT: 1 },
      { ...LINEAR, RESID: true },
      { ...LINEAR, ACT: 3, GATE: 1 },
      { ...LINEAR, ACT: 3, GATE: 2 },
      { ...LINEAR, SPLIT: true },
      { ...LINEAR, SPLITK: true },
      { ...LINEAR, WT: "f16", BK: 16, TRANS: true },
    ],
    flash: [{ E: 64 }, { E: 16 }],
    linear_cpu: [
      { WT: "f32", ACT: 0, RESID: true, GATE: 0, SPLIT: false },
      { WT: "f16", ACT: 3, RESID: false, GATE: 1, SPLIT: false },
      { WT: "f32", ACT: 3, RESID: false, GATE: 2, SPLIT: false },
      { WT: "f32", ACT: 0, RESID: false, GATE: 0, SPLIT: true },
    ],
  };
  variants.linear_sg = variants.linear_cpu;
  // The *_sg shaders need the subgroups feature, which hooklens enables only where it uses them.
  const shaders = Object.entries(SHADERS).filter(([n]) => !n.endsWith("_sg") || gpu.subgroupSize);
  for (const [name, s] of shaders) {
    // f16 variants need the adapter's shader-f16 feature (hooklens only builds them then).
    const built = (variants[name] ?? [{}]).filter((d) => gpu.hasF16 || d.WT !== "f16");
    for (const [i, defines] of built.entries()) {
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
        // The large blocks of the generated dense kernels take the driver ~0.6 s each even from
        // Mesa's cache; their epilogue is the small entries' (validated with every variant above,
        // as the module is), so they are built with the first variant only.
        if (i > 0 && name.startsWith("linear_") && entryPoint.startsWith("main")) continue;
        gpu.device.pushErrorScope("validation");
        gpu.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint } });
        const err = await gpu.device.popErrorScope();
        assert.equal(err, null, `${s.name}:${entryPoint}: ${err?.message}`);
      }
    }
  }
});
