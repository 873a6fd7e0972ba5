/**
 * Seeded random numbers, shared by sampling, tests and benchmarks so that a seed means the same
 * stream everywhere.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { seededUniform } from "./random.ts";
 *
 * const a = seededUniform(42), b = seededUniform(42);
 * assert.equal(a(), b()); // the same seed gives the same stream
 * ```
 * @module
 */

/**
 * A seeded uniform [0, 1) generator (mulberry32).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { seededUniform } from "./random.ts";
 *
 * const u = seededUniform(42);
 * const x = u();
 * assert.ok(x >= 0 && x < 1);
 * ```
 */
export function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
