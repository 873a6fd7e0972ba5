/**
 * CPU copies of small int32 tensors uploaded from the CPU (token ids), so that their values can be
 * checked (a vocabulary range) without reading the GPU back. Only `Tensor.from` records them;
 * tensors computed on the GPU have none.
 *
 * @example
 * ```ts
 * import { hostInts, recordHostInts } from "./host_ints.ts";
 * const key = {};
 * recordHostInts(key, new Int32Array([1, 2]));
 * console.log(hostInts(key)); // Int32Array [1, 2]
 * ```
 * @module
 */

/** Largest int32 upload whose CPU copy is kept (token batches are far smaller). */
export const MAX_HOST_INTS = 1 << 20;

const copies = new WeakMap<object, Int32Array>();

/**
 * Keeps a copy of `data` for `tensor` (nothing for uploads over {@link MAX_HOST_INTS} values).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostInts, recordHostInts } from "./host_ints.ts";
 *
 * const tensor = {};
 * recordHostInts(tensor, new Int32Array([5, 17]));
 * assert.deepEqual(hostInts(tensor), new Int32Array([5, 17]));
 * ```
 */
export function recordHostInts(tensor: object, data: Int32Array): void {
  if (data.length <= MAX_HOST_INTS) copies.set(tensor, data.slice());
}

/**
 * The values `tensor` was uploaded with, if recorded.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { hostInts } from "./host_ints.ts";
 *
 * await initGpu();
 * using tokens = Tensor.from([5, 17], [1, 2], "int32"); // Tensor.from records int32 uploads
 * assert.deepEqual(hostInts(tokens), new Int32Array([5, 17]));
 * assert.equal(hostInts({}), undefined);
 * ```
 */
export function hostInts(tensor: object): Int32Array | undefined {
  return copies.get(tensor);
}
