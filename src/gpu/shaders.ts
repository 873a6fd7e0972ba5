/**
 * The WGSL sources, one file per kernel family in `shaders/`, imported as text.
 *
 * @example
 * ```ts
 * import { SHADERS } from "./shaders.ts";
 * console.log(SHADERS.matmul.code.length > 0);
 * ```
 * @module
 */
import elementwise from "../../shaders/elementwise.wgsl" with { type: "text" };
import matmul from "../../shaders/matmul.wgsl" with { type: "text" };
import norm from "../../shaders/norm.wgsl" with { type: "text" };
import softmax from "../../shaders/softmax.wgsl" with { type: "text" };
import embed from "../../shaders/embed.wgsl" with { type: "text" };
import loss from "../../shaders/loss.wgsl" with { type: "text" };
import sae from "../../shaders/sae.wgsl" with { type: "text" };
import attention from "../../shaders/attention.wgsl" with { type: "text" };
import sample from "../../shaders/sample.wgsl" with { type: "text" };
import linear from "../../shaders/linear.wgsl" with { type: "text" };
import linearCpu from "../../shaders/linear_cpu.wgsl" with { type: "text" };
import linearSg from "../../shaders/linear_sg.wgsl" with { type: "text" };
import matmulSg from "../../shaders/matmul_sg.wgsl" with { type: "text" };
import backward from "../../shaders/backward.wgsl" with { type: "text" };
import activations from "../../shaders/activations.wgsl" with { type: "text" };
import reduce from "../../shaders/reduce.wgsl" with { type: "text" };
import flash from "../../shaders/flash.wgsl" with { type: "text" };
import type { ShaderSource } from "./runtime.ts";

/** Every shader module by family name (activations.wgsl and reduce.wgsl are prepended where used). */
export const SHADERS: Readonly<Record<string, ShaderSource>> = {
  elementwise: { name: "elementwise", code: activations + elementwise },
  matmul: { name: "matmul", code: matmul },
  norm: { name: "norm", code: reduce + norm },
  softmax: { name: "softmax", code: reduce + softmax },
  embed: { name: "embed", code: embed },
  loss: { name: "loss", code: reduce + loss },
  sae: { name: "sae", code: reduce + sae },
  attention: { name: "attention", code: attention },
  sample: { name: "sample", code: reduce + sample },
  linear: { name: "linear", code: activations + linear },
  linear_cpu: { name: "linear_cpu", code: activations + linearCpu },
  linear_sg: { name: "linear_sg", code: activations + linearSg },
  matmul_sg: { name: "matmul_sg", code: matmul + matmulSg },
  backward: { name: "backward", code: activations + reduce + backward },
  flash: { name: "flash", code: flash },
};
