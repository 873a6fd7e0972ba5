/**
 * Uniform blocks declared once by name: the same declaration emits the WGSL `struct P` a shader
 * family is compiled with and packs a launcher's values into it, so the two cannot drift apart.
 * The `.wgsl` files in `shaders/` use `p.<field>` and do not declare `P` themselves.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shaderSource, uniforms } from "./uniforms.ts";
 *
 * const P = uniforms({ rows: "u32", n: "u32", eps: "f32" });
 * const src = shaderSource("demo", P, "@group(0) @binding(0) var<uniform> p: P;");
 * assert.ok(src.code.startsWith(P.wgsl));
 * const params = P.pack({ rows: 4, n: 8, eps: 1e-5 });
 * assert.deepEqual(params, [4, 8, { f32: 1e-5 }, 0]); // padded to 16 bytes
 * ```
 * @module
 */
import { f32, type Param, type ShaderSource } from "../dispatch.ts";

/** WGSL scalar type of a uniform field. */
export type UniformType = "u32" | "i32" | "f32";

/** A uniform block layout: its fields in order, their WGSL struct, and a packer. */
export interface Uniforms<F extends string> {
  /** Field names and types in declaration (memory) order, without the padding. */
  readonly fields: readonly (readonly [F, UniformType])[];
  /** `struct P { ... }`, padded with `_pad<i>: u32` to whole 16-byte rows. */
  readonly wgsl: string;
  /**
   * The block's values in struct order: fields by name (missing ones 0; booleans 1 or 0; f32
   * fields marked as such), then the padding.
   */
  pack(values: { readonly [K in F]?: number | boolean }): Param[];
}

/**
 * Declares a uniform block (see the module docs). Field order is memory order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { uniforms } from "./uniforms.ts";
 *
 * const P = uniforms({ n: "u32", scale: "f32" });
 * assert.equal(P.wgsl, "struct P { n: u32, scale: f32, _pad0: u32, _pad1: u32 }\n");
 * ```
 */
export function uniforms<const T extends Record<string, UniformType>>(
  fields: T,
): Uniforms<keyof T & string> {
  type F = keyof T & string;
  const list = Object.entries(fields) as [F, UniformType][];
  const pads = (4 - (list.length % 4)) % 4;
  const decl = [
    ...list.map(([k, t]) => `${k}: ${t}`),
    ...Array.from({ length: pads }, (_, i) => `_pad${i}: u32`),
  ];
  const wgsl = `struct P { ${decl.join(", ")} }\n`;
  return {
    fields: list,
    wgsl,
    pack(values): Param[] {
      const out: Param[] = list.map(([k, t]) => {
        const v: number | boolean | undefined = values[k];
        const n = v === undefined ? 0 : typeof v === "boolean" ? (v ? 1 : 0) : v;
        return t === "f32" ? f32(n) : n;
      });
      for (let i = 0; i < pads; i++) out.push(0);
      return out;
    },
  };
}

/**
 * A shader module: the uniform block's struct, then the WGSL `parts` (shared helpers such as
 * `shaders/reduce.wgsl` first, then the family's file), cached under `name` (the first part of
 * every pipeline label of the family).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shaderSource, uniforms } from "./uniforms.ts";
 *
 * const P = uniforms({ n: "u32" });
 * const src = shaderSource("demo", P, "// reduce\n", "// softmax\n");
 * assert.equal(src.name, "demo");
 * assert.equal(src.code, P.wgsl + "// reduce\n// softmax\n"); // the struct, then the parts
 * ```
 */
export function shaderSource(
  name: string,
  layout: Uniforms<string>,
  ...parts: string[]
): ShaderSource {
  return { name, code: layout.wgsl + parts.join("") };
}

/**
 * {@link shaderSource} for WGSL made by a generator, which runs the first time the code is read
 * (the first pipeline built from it), not at import.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lazyShaderSource, uniforms } from "./uniforms.ts";
 *
 * let made = 0;
 * const src = lazyShaderSource("demo_lazy", uniforms({ n: "u32" }), () => (made++, "// generated"));
 * assert.equal(made, 0); // not at import
 * assert.match(src.code, /generated/);
 * assert.equal(made, 1);
 * ```
 */
export function lazyShaderSource(
  name: string,
  layout: Uniforms<string>,
  make: () => string,
): ShaderSource {
  let code: string | undefined;
  return {
    name,
    get code(): string {
      return code ??= layout.wgsl + make();
    },
  };
}
