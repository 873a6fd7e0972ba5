/**
 * Every shader module by family name: the WGSL files in `shaders/` (and the generated dense
 * kernels for software adapters), each behind the uniform block its kernel family in
 * `src/gpu/kernels/` declares. The names are the first part of every pipeline label.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SHADERS } from "./shaders.ts";
 *
 * assert.equal(SHADERS.matmul.name, "matmul");
 * assert.match(SHADERS.matmul.code, /@compute/);
 * ```
 * @module
 */
import type { ShaderSource } from "./dispatch.ts";
import { ATTENTION_SHADER, FLASH_SHADER } from "./kernels/attention.ts";
import { BACKWARD_SHADER } from "./kernels/backward.ts";
import { ELEMENTWISE_SHADER } from "./kernels/elementwise.ts";
import { EMBED_SHADER } from "./kernels/embed.ts";
import { LINEAR_CPU_SHADER, LINEAR_SG_SHADER, LINEAR_SHADER } from "./kernels/linear.ts";
import { LOSS_SHADER } from "./kernels/loss.ts";
import { MATMUL_SG_SHADER, MATMUL_SHADER } from "./kernels/matmul.ts";
import { NORM_SHADER } from "./kernels/norm.ts";
import { PADDING_SHADER } from "./kernels/padding.ts";
import { SAE_SHADER } from "./kernels/sae.ts";
import { SAMPLE_SHADER } from "./kernels/sample.ts";
import { SOFTMAX_SHADER } from "./kernels/softmax.ts";

/** Every shader module by family name (its ShaderSource's `name`). */
export const SHADERS: Readonly<Record<string, ShaderSource>> = Object.fromEntries(
  [
    ELEMENTWISE_SHADER,
    MATMUL_SHADER,
    NORM_SHADER,
    SOFTMAX_SHADER,
    EMBED_SHADER,
    LOSS_SHADER,
    SAE_SHADER,
    ATTENTION_SHADER,
    SAMPLE_SHADER,
    LINEAR_SHADER,
    LINEAR_CPU_SHADER,
    LINEAR_SG_SHADER,
    MATMUL_SG_SHADER,
    BACKWARD_SHADER,
    FLASH_SHADER,
    PADDING_SHADER,
  ].map((s) => [s.name, s]),
);
