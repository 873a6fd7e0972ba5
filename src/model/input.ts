/**
 * Checks of model inputs that do not depend on the model's internals: token ids given as an int32
 * `Tensor` are checked as arrays are (shape, vocabulary range, context length), from the CPU copy
 * that `Tensor.from` keeps of int32 uploads, so no GPU readback is needed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError, initGpu, Tensor } from "@hooklens/hooklens";
 * import { checkTokenTensor } from "./input.ts";
 *
 * await initGpu();
 * using tokens = Tensor.from([1, 2, 3], [1, 3], "int32");
 * checkTokenTensor(tokens, { dVocab: 1000, nCtx: 64 });
 * assert.throws(() => checkTokenTensor(tokens, { dVocab: 1000, nCtx: 2 }), InputError); // too long
 * ```
 * @module
 */
import { InputError } from "../errors.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { hostInts } from "../gpu/host_ints.ts";

/**
 * Throws an {@link InputError} unless `t` is an int32 `[batch, pos]` tensor of ids in
 * `0..dVocab-1` with `1 <= pos <= nCtx`. Ids are checked when the tensor was uploaded from the CPU
 * (`Tensor.from`, `model.toTokens`); an int32 tensor computed on the GPU is taken as it is
 * (reading it back to check would add a GPU sync to every call).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError, initGpu, Tensor } from "@hooklens/hooklens";
 * import { checkTokenTensor } from "./input.ts";
 *
 * await initGpu();
 * const cfg = { dVocab: 1000, nCtx: 64 };
 * using ok = Tensor.from([1, 2, 3], [1, 3], "int32");
 * checkTokenTensor(ok, cfg);
 * using bad = Tensor.from([1, 2, 1000], [1, 3], "int32");
 * assert.throws(() => checkTokenTensor(bad, cfg), InputError); // "Token id 1000 at [0, 2] ..."
 * ```
 */
export function checkTokenTensor(t: Tensor, cfg: { dVocab: number; nCtx: number }): void {
  if (t.dtype !== "int32" || t.shape.length !== 2) {
    throw new InputError(
      `Token tensor must be int32 [batch, pos], got ${t.dtype} [${t.shape.join(", ")}].`,
    );
  }
  const [, P] = t.shape;
  if (P > cfg.nCtx) {
    throw new InputError(
      `Sequence of ${P} tokens is longer than the model's context n_ctx = ${cfg.nCtx}.`,
    );
  }
  if (P < 1 || t.shape[0] < 1) throw new InputError("Empty input: pass at least one token.");
  const ids = hostInts(t);
  if (!ids) return;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= cfg.dVocab) {
      throw new InputError(
        `Token id ${id} at [${Math.floor(i / P)}, ${i % P}] is outside the vocabulary (0..${
          cfg.dVocab - 1
        }).`,
      );
    }
  }
}
