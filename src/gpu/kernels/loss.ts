/**
 * Next-token cross-entropy per position and the mean of a tensor (shaders/loss.wgsl); the loss's
 * gradient is in backward.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { lossPerToken, meanAll } from "./loss.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using logits = Tensor.from([0, 0, 0, 0, 0, 0], [1, 2, 3]); // uniform over 3 tokens
 * using tokens = Tensor.from([1, 2], [1, 2], "int32");
 * using lpt = lossPerToken(logits, tokens); // [batch, pos - 1]
 * using loss = meanAll(lpt);
 * assert.deepEqual(r4(await loss.toArray()), r4([Math.log(3)]));
 * ```
 * @module
 */
import lossWgsl from "../../../shaders/loss.wgsl" with { type: "text" };
import reduceWgsl from "../../../shaders/reduce.wgsl" with { type: "text" };
import { dispatch, pipeline, type ShaderSource } from "../dispatch.ts";
import { Tensor } from "../tensor.ts";
import { dispatchRows } from "./launch.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/loss.wgsl. */
const LOSS_P = uniforms({
  batch: "u32",
  pos: "u32",
  vocab: "u32",
  /** mean: elements. */
  n: "u32",
});

/** shaders/loss.wgsl (with shaders/reduce.wgsl). */
export const LOSS_SHADER: ShaderSource = shaderSource("loss", LOSS_P, reduceWgsl, lossWgsl);

/**
 * Next-token cross-entropy per position: logits [batch, pos, vocab], tokens int32 [batch, pos]
 * -> [batch, pos - 1].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { lossPerToken } from "./loss.ts";
 *
 * await initGpu();
 * const r4 = (a: ArrayLike<number>) => Array.from(a, (v) => Math.round(v * 1e4) / 1e4);
 * using logits = Tensor.from([0, 0, 0, 0, 0, 0], [1, 2, 3]);
 * using tokens = Tensor.from([1, 2], [1, 2], "int32");
 * using lpt = lossPerToken(logits, tokens); // -log p(token at pos + 1)
 * assert.deepEqual(lpt.shape, [1, 1]);
 * assert.deepEqual(r4(await lpt.toArray()), r4([Math.log(3)]));
 * ```
 */
export function lossPerToken(logits: Tensor, tokens: Tensor): Tensor {
  const [batch, pos, vocab] = logits.shape;
  const out = Tensor.empty([batch, Math.max(pos - 1, 0)]);
  dispatchRows(
    LOSS_SHADER,
    "per_token",
    LOSS_P.pack({ batch, pos, vocab }),
    [logits.buffer, tokens.buffer, out.buffer],
    batch * (pos - 1),
  );
  return out;
}

/**
 * Mean of all elements: returns a scalar (shape []).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { meanAll } from "./loss.ts";
 *
 * await initGpu();
 * using lpt = Tensor.from([1, 2, 3, 6], [2, 2]);
 * using loss = meanAll(lpt);
 * assert.deepEqual([...await loss.toArray()], [3]);
 * ```
 */
export function meanAll(x: Tensor): Tensor {
  const out = Tensor.empty([]);
  dispatch(
    pipeline(LOSS_SHADER, "mean"),
    LOSS_P.pack({ n: x.size }),
    [x.buffer, undefined, out.buffer],
    [1],
  );
  return out;
}
