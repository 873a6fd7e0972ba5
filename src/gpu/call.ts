/**
 * The model call an async task is part of. Each model call (a forward, a cached run, a backward
 * pass, a generation) runs its body inside {@link runInCall}; everything it awaits, the hooks it
 * fires included, sees the same {@link CallRecord}. What a call owns lives there instead of in
 * module state, so calls that overlap (two tasks, or a hook that calls a model) keep apart:
 * the tensors a call makes go to its own arenas, and its backward tape records its steps only.
 *
 * This uses `AsyncLocalStorage.run`, which keeps the store to the async work started inside it
 * (measured on Deno 2.9.6: three interleaved tasks and a plain one each saw their own store at
 * every await). `enterWith`, which leaks into other tasks there, is not used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentCall, newCallRecord, runInCall } from "./call.ts";
 *
 * const rec = newCallRecord(null);
 * await runInCall(rec, async () => {
 *   await Promise.resolve();
 *   assert.equal(currentCall(), rec); // also after an await
 * });
 * assert.equal(currentCall(), undefined);
 * assert.equal(rec.done, true);
 * ```
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** What one model call owns. */
export interface CallRecord {
  /** The object the call runs on (a model), or null. */
  readonly owner: object | null;
  /** Open arenas of this call, innermost last (see `openArena` in tensor.ts). */
  readonly arenas: Set<unknown>[];
  /** The backward tape this call records into, if any (see src/model/tape.ts). */
  tape: unknown;
  /** Set when the call has returned or thrown. */
  done: boolean;
  /** Ends the call early (a per-call `signal`). */
  readonly signal?: AbortSignal;
}

const store = new AsyncLocalStorage<CallRecord>();

/**
 * A fresh record for a call on `owner`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newCallRecord } from "./call.ts";
 *
 * const controller = new AbortController();
 * const owner = {};
 * const rec = newCallRecord(owner, controller.signal);
 * assert.equal(rec.owner, owner);
 * assert.equal(rec.done, false);
 * ```
 */
export function newCallRecord(owner: object | null, signal?: AbortSignal): CallRecord {
  return { owner, arenas: [], tape: null, done: false, signal };
}

/**
 * Runs `fn` as the body of the call `rec`: `currentCall()` is `rec` in everything it awaits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newCallRecord, runInCall } from "./call.ts";
 *
 * const out = await runInCall(newCallRecord(null), () => Promise.resolve(1));
 * assert.equal(out, 1);
 * ```
 */
export function runInCall<T>(rec: CallRecord, fn: () => Promise<T>): Promise<T> {
  return store.run(rec, async () => {
    try {
      return await fn();
    } finally {
      rec.done = true;
    }
  });
}

/**
 * The call the running code is part of, or undefined outside every model call.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedTransformer } from "@hooklens/hooklens";
 * import { currentCall } from "./call.ts";
 *
 * using model = await HookedTransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * let inside = false;
 * model.addHook("hook_embed", () => void (inside = currentCall()?.owner === model));
 * using _logits = await model.forward([[1, 2]]);
 * assert.ok(inside); // hooks run inside the model's call
 * assert.equal(currentCall(), undefined);
 * ```
 */
export function currentCall(): CallRecord | undefined {
  return store.getStore();
}
