// Every shader (the WGSL files and the generated dense kernels, each behind its family's uniform
// block) compiles and every entry point builds a pipeline (a shader error would otherwise surface
// only as a rejected submission).
import assert from "node:assert/strict";
import { f32, shaderCode } from "../src/gpu/dispatch.ts";
import { uniforms } from "../src/gpu/kernels/uniforms.ts";
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
      { WT: "f32", ACT: 0, RESID: true, GATE: 0, SPLIT: false, CROP: false },
      { WT: "f16", ACT: 3, RESID: false, GATE: 1, SPLIT: false, CROP: false },
      { WT: "f32", ACT: 3, RESID: false, GATE: 2, SPLIT: false, CROP: false },
      { WT: "f32", ACT: 0, RESID: false, GATE: 0, SPLIT: true, CROP: false },
      { WT: "f32", ACT: 0, RESID: false, GATE: 0, SPLIT: false, CROP: true },
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

Deno.test("a uniform block packs its values by field name into the struct it declares", () => {
  const P = uniforms({ a: "u32", s: "f32", on: "u32", i: "i32", t: "f32" });
  assert.equal(
    P.wgsl,
    "struct P { a: u32, s: f32, on: u32, i: i32, t: f32, _pad0: u32, _pad1: u32, _pad2: u32 }\n",
  );
  // Missing fields are 0, booleans 1/0, f32 fields marked as such, then the padding.
  assert.deepEqual(P.pack({ t: 0.5, on: true, i: -3 }), [0, f32(0), 1, -3, f32(0.5), 0, 0, 0]);
});

Deno.test("every shader declares its uniform block once, ahead of the WGSL files' text", () => {
  for (const s of Object.values(SHADERS)) {
    assert.equal(s.code.match(/\bstruct P\b/g)?.length, 1, s.name);
    assert.ok(s.code.startsWith("struct P {"), s.name);
  }
});
