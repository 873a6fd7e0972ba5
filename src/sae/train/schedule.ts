/**
 * SAELens's training schedules, computed on the CPU per step (a few numbers): the learning rate
 * (linear warm-up, then constant or cosine annealing, then a linear decay to 0) and the sparsity
 * coefficient's linear warm-up (`CoefficientScheduler`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { coefficientAt, lrAt } from "./schedule.ts";
 *
 * const o = {
 *   lr: 3e-4,
 *   scheduler: "constant" as const,
 *   warmUpSteps: 10,
 *   decaySteps: 0,
 *   lrEnd: 3e-5,
 *   totalSteps: 100,
 * };
 * assert.ok(Math.abs(lrAt(o, 5) - 3e-4 * 6 / 10) < 1e-12); // linear warm-up
 * assert.equal(coefficientAt(5, 10, 3), 10); // warm-up over
 * assert.equal(coefficientAt(1, 9, 3), 3);
 * ```
 * @module
 */

/** Learning-rate schedule options (SAELens's lr, lr_scheduler_name, lr_warm_up_steps, ...). */
export interface LrSchedule {
  /** Peak learning rate. */
  lr: number;
  /** "constant" or "cosineannealing". */
  scheduler: "constant" | "cosineannealing";
  /** Linear warm-up steps from lr / warmUpSteps to lr. */
  warmUpSteps: number;
  /** Final steps of linear decay to 0 (from lr, or from lrEnd after cosine annealing). */
  decaySteps: number;
  /** Cosine annealing's floor. */
  lrEnd: number;
  /** Total training steps. */
  totalSteps: number;
}

/**
 * The learning rate of step `s` (0-based: the number of steps already taken).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lrAt } from "./schedule.ts";
 *
 * const o = {
 *   lr: 1,
 *   scheduler: "constant" as const,
 *   warmUpSteps: 4,
 *   decaySteps: 0,
 *   lrEnd: 0,
 *   totalSteps: 10,
 * };
 * assert.equal(lrAt(o, 0), 0.25);
 * assert.equal(lrAt(o, 8), 1);
 * ```
 */
export function lrAt(o: LrSchedule, s: number): number {
  const W = o.warmUpSteps, Dc = o.decaySteps;
  if (W > 0 && s < W) {
    const frac = W > 1 ? Math.min(s, W - 1) / (W - 1) : 1;
    return o.lr * (1 / W + (1 - 1 / W) * frac);
  }
  const decayStart = o.totalSteps - Dc;
  if (Dc > 0 && s >= decayStart) {
    const start = o.scheduler === "constant" ? o.lr : o.lrEnd;
    return start * (1 - Math.min(s - decayStart, Dc) / Dc);
  }
  if (o.scheduler === "cosineannealing") {
    const T = Math.max(1, o.totalSteps - W - Dc);
    const i = s - W;
    return o.lrEnd + (o.lr - o.lrEnd) * (1 + Math.cos(Math.PI * i / T)) / 2;
  }
  return o.lr;
}

/**
 * The sparsity coefficient at step `s` (0-based) warming up linearly over `warmUpSteps`
 * (SAELens's CoefficientScheduler: 0 at the first step, `final` from step `warmUpSteps` on).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { coefficientAt } from "./schedule.ts";
 *
 * assert.equal(coefficientAt(1, 1, 3), 1 / 3);
 * assert.equal(coefficientAt(7, 1, 0), 1); // no warm-up
 * ```
 */
export function coefficientAt(s: number, final: number, warmUpSteps: number): number {
  if (warmUpSteps <= 0) return final;
  return final * Math.min(s / warmUpSteps, 1);
}
