/**
 * How a model call starts: what it runs with is fixed at once (so a view's or a scope's state is
 * what it is at the call, whatever happens later), its body waits for the model's earlier calls,
 * or runs at once, nested, when made from inside one of that model's calls (a hook calling its own
 * model: waiting would never end), and a per-call `signal` ends it early with a typed error while
 * the model's queue moves on. Every output is tagged with what ran (provenance.ts).
 *
 * @example Not run as a doc test: the call spec and body come from the model (model.ts)
 * ```
 * import { newCallQueue, startCall } from "./calls.ts";
 * const queue = newCallQueue();
 * const out = await startCall(model, queue, undefined, () => spec, async (s) => run(s));
 * ```
 * @module
 */
import { currentCall, newCallRecord, runInCall } from "../gpu/call.ts";
import { abortedError, type HookLayer } from "./components/index.ts";
import type { HookLookup } from "./hooks.ts";
import { type Provenance, tagOutput } from "./provenance.ts";

/**
 * What one call runs with, fixed when it starts: the hooks (persistent, the scopes' and the
 * call's own), the layer that splices SAEs in, and the provenance its outputs carry.
 */
export interface CallSpec {
  /** Hooks by name, every layer merged. */
  readonly hooks: HookLookup;
  /** The layer over the hook points (SAEs), or null. */
  readonly layer: HookLayer | null;
  /** What ran, for the outputs. */
  readonly provenance: Provenance;
}

/** A model's call queue: the promise its next call waits for. */
export interface CallQueue {
  /** Settles when the last call started so far has ended. */
  tail: Promise<unknown>;
}

/**
 * An empty call queue.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newCallQueue } from "./calls.ts";
 *
 * const queue = newCallQueue();
 * assert.equal(await queue.tail, undefined); // nothing to wait for
 * ```
 */
export function newCallQueue(): CallQueue {
  return { tail: Promise.resolve() };
}

/** Rejects when `signal` aborts, else settles as `run` does. */
function abortable<T>(run: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    run.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Starts a call on `owner`: `spec()` now (a throw rejects), `body` after the queue's earlier
 * calls (or nested, from inside one of `owner`'s calls), inside its own call record (arenas,
 * tape). Resolves to the body's result tagged with the spec's provenance.
 *
 * @example Not run as a doc test: a method body of HookedTransformer (model.ts), which owns the spec
 * ```
 * return startCall(this, this.#queue, opts.signal, () => this.#spec(), (s) => this.#run(s));
 * ```
 */
export function startCall<T>(
  owner: object,
  queue: CallQueue,
  signal: AbortSignal | undefined,
  spec: () => CallSpec,
  body: (spec: CallSpec) => Promise<T>,
): Promise<T> {
  let s: CallSpec;
  try {
    if (signal?.aborted) throw abortedError(signal);
    s = spec();
  } catch (e) {
    return Promise.reject(e);
  }
  const outer = currentCall();
  const nested = outer !== undefined && outer.owner === owner && !outer.done;
  const rec = newCallRecord(owner, signal);
  const start = () =>
    runInCall(rec, () => {
      if (signal?.aborted) throw abortedError(signal);
      return body(s);
    });
  const run = nested ? start() : queue.tail.then(start, start);
  const out = signal ? abortable(run, signal) : run;
  if (!nested) queue.tail = out.catch(() => {});
  return out.then((r) => tagOutput(r, s.provenance));
}
