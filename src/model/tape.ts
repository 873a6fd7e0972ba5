/**
 * The backward tape: while a run with `inclBwd` is in progress, each differentiable step of the
 * forward pass records how to turn gradients of its outputs into gradients of its inputs, and each
 * hook point records where it is. Walking the tape in reverse yields the gradient of the metric at
 * every hook point (activation gradients only; weights are constants). All arithmetic is recorded
 * on the GPU (`shaders/backward.wgsl` and the matmul kernels).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Tape } from "./tape.ts";
 *
 * const tape = Tape.begin();
 * assert.equal(Tape.active, tape); // steps run now record into it
 * await Tape.untaped(() => Promise.resolve(assert.equal(Tape.active, null)));
 * Tape.end(tape);
 * assert.equal(Tape.active, null);
 * ```
 * @module
 */
import { currentCall } from "../gpu/call.ts";
import type { Tensor } from "../gpu/tensor.ts";

/** One recorded step. `back` maps output gradients (null: none) to input gradients. */
interface Entry {
  outs: Tensor[];
  ins: (Tensor | null)[];
  back?: (g: (Tensor | null)[]) => (Tensor | null)[];
  hook?: string;
}

/** The tape of code outside every model call (tests, direct use). */
let outsideCalls: Tape | null = null;

/** The tape the running call records into: each model call has its own (see src/gpu/call.ts). */
function current(): Tape | null {
  const call = currentCall();
  return call ? call.tape as Tape | null : outsideCalls;
}

/** Makes `t` the running call's tape. */
function setCurrent(t: Tape | null): void {
  const call = currentCall();
  if (call) call.tape = t;
  else outsideCalls = t;
}

/** A backward tape. See the module docs. */
export class Tape {
  readonly #entries: Entry[] = [];
  readonly #grads = new Map<Tensor, Tensor>();
  #paused = 0;

  /** The tape being recorded, if any. */
  static get active(): Tape | null {
    const active = current();
    return active && active.#paused === 0 ? active : null;
  }

  /** Starts recording into a new tape. */
  static begin(): Tape {
    const t = new Tape();
    setCurrent(t);
    return t;
  }

  /** Stops recording. */
  static end(t: Tape): void {
    if (current() === t) setCurrent(null);
  }

  /**
   * Runs `fn` without recording (e.g. SAELens's clean pass for the error term, under no_grad).
   */
  static async untaped<T>(fn: () => Promise<T>): Promise<T> {
    const t = current();
    if (t) t.#paused++;
    try {
      return await fn();
    } finally {
      if (t) t.#paused--;
    }
  }

  /** Records a differentiable step. */
  static record(
    outs: Tensor[],
    ins: (Tensor | null)[],
    back: (g: (Tensor | null)[]) => (Tensor | null)[],
  ): void {
    const t = Tape.active;
    if (t) t.#entries.push({ outs, ins, back });
  }

  /** Records a hook point (its output tensor). */
  static hook(name: string, t: Tensor): void {
    const tape = Tape.active;
    if (tape) tape.#entries.push({ outs: [t], ins: [], hook: name });
  }

  /** Adds `g` to the gradient of `t`. */
  #accumulate(t: Tensor, g: Tensor): void {
    const prev = this.#grads.get(t);
    this.#grads.set(t, prev ? prev.add(g) : g);
  }

  /**
   * Walks the tape backward from `seed` (the metric's gradient with respect to `output`), calling
   * `onHook` at each hook point with the gradient there; a returned tensor replaces it.
   */
  async backward(
    output: Tensor,
    seed: Tensor,
    onHook: (name: string, g: Tensor) => Promise<Tensor>,
  ): Promise<void> {
    this.#grads.set(output, seed);
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const e = this.#entries[i];
      if (e.hook) {
        const g = this.#grads.get(e.outs[0]);
        if (!g) continue;
        const replaced = await onHook(e.hook, g);
        if (replaced !== g) this.#grads.set(e.outs[0], replaced);
        continue;
      }
      const gOut = e.outs.map((t) => this.#grads.get(t) ?? null);
      if (gOut.every((g) => g === null)) continue;
      const gIn = e.back!(gOut);
      e.ins.forEach((t, j) => {
        const g = gIn[j];
        if (t && g) this.#accumulate(t, g);
      });
    }
  }
}
