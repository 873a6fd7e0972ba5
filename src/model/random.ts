/**
 * Seeded random numbers, shared by sampling, tests and benchmarks so that a seed means the same
 * stream everywhere.
 *
 * @example
 * ```ts
 * import { seededUniform } from "./random.ts";
 * const u = seededUniform(42);
 * console.log(u(), u());
 * ```
 * @module
 */

/**
 * A seeded uniform [0, 1) generator (mulberry32).
 *
 * @example
 * ```ts
 * const u = seededUniform(42);
 * const x = u(); // 0 <= x < 1
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
