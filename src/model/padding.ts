/**
 * Batches of different lengths: attention masks (TransformerLens's `attention_mask`, 1 for a real
 * token and 0 for a pad), their validation, their upload for the kernels, and the helpers users
 * otherwise write by hand (each row's last real token, a token's first or last position).
 *
 * A mask row's real tokens must be one contiguous run: left padding (pads, then tokens), right
 * padding (tokens, then pads), or none. Positions count real tokens only, as TransformerLens's
 * offset position ids: row b's token at index t sits at position t - start_b.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkMask, lastTokenIndices } from "./padding.ts";
 *
 * const padding = checkMask([[0, 1, 1], [1, 1, 1]], 2, 3);
 * assert.deepEqual(lastTokenIndices(padding.mask), [2, 2]);
 * ```
 * @module
 */
import { AttentionMaskError, InputError } from "../errors.ts";
import { Tensor } from "../gpu/tensor.ts";

/** An attention mask: 0/1 per position, [batch][pos] (1: a real token, 0: a pad). */
export type AttentionMask = number[][];

/** Where shorter prompts of a batch are padded. */
export type PaddingSide = "left" | "right";

/** A validated mask and each row's run of real tokens [start, end). */
export interface Padding {
  /** The mask, [batch][pos]. */
  mask: AttentionMask;
  /** Index of each row's first real token. */
  starts: number[];
  /** One past each row's last real token. */
  ends: number[];
}

/** What the kernels read of a padded batch (uploaded once per call or generation). */
export interface PadState {
  /** The CPU side. */
  padding: Padding;
  /** int32 [B, stride]: the key mask (ones past the mask's own width, e.g. generated tokens). */
  keyMask: Tensor;
  /** Positions per row in `keyMask`. */
  stride: number;
  /** int32 [B]: each row's first real position. */
  starts: Tensor;
  /** Whether some row starts after 0 (left padding): positions then need the per-row kernels. */
  shifted: boolean;
}

/**
 * Validates an attention mask for a [B, P] batch: shape, 0/1 values, at least one real token per
 * row, and no gaps. Throws an {@link AttentionMaskError} saying what is wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError } from "../errors.ts";
 * import { checkMask } from "./padding.ts";
 *
 * const { starts, ends } = checkMask([[0, 0, 1, 1]], 1, 4);
 * assert.deepEqual([starts, ends], [[2], [4]]);
 * assert.throws(() => checkMask([[1, 0, 1]], 1, 3), InputError); // a gap inside a row
 * ```
 */
export function checkMask(mask: unknown, B: number, P: number): Padding {
  if (!Array.isArray(mask) || mask.length !== B) {
    const got = Array.isArray(mask) ? `${mask.length} rows` : typeof mask;
    throw new AttentionMaskError(
      `attentionMask has ${got}, the tokens have ${B} rows of ${P}: pass one 0/1 row per ` +
        "sequence, [batch][pos], as toTokensWithMask returns.",
    );
  }
  const starts: number[] = [], ends: number[] = [];
  mask.forEach((row: unknown, b) => {
    if (!Array.isArray(row) || row.length !== P) {
      const got = Array.isArray(row) ? `${row.length} positions` : typeof row;
      throw new AttentionMaskError(
        `attentionMask row ${b} has ${got}, the tokens have ${P}: pass one 0/1 entry per token.`,
      );
    }
    let start = -1, end = -1;
    row.forEach((v: unknown, p) => {
      if (v !== 0 && v !== 1) {
        throw new AttentionMaskError(
          `attentionMask[${b}][${p}] is ${JSON.stringify(v)}: use 1 for a real token, 0 for a pad.`,
        );
      }
      if (v === 1) {
        if (start < 0) start = p;
        else if (end !== p) {
          throw new AttentionMaskError(
            `attentionMask row ${b} has a gap: pads at ${end}..${p - 1} between real tokens ` +
              `(${start}..${
                end - 1
              } and ${p}..): real tokens must be one run, padded on the left ` +
              "or right only.",
          );
        }
        end = p + 1;
      }
    });
    if (start < 0) {
      throw new AttentionMaskError(
        `attentionMask row ${b} is all zeros: every sequence needs at least one real token; ` +
          "drop the empty row from the batch.",
      );
    }
    starts.push(start);
    ends.push(end);
  });
  return { mask: mask as AttentionMask, starts, ends };
}

/**
 * Options with a Tensor `attentionMask` (int32 or float32 [batch, pos], 0/1) read back once into
 * rows, so that it can be validated and the row starts found; other options as they are.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { maskRows } from "./padding.ts";
 *
 * await initGpu();
 * const o = await maskRows({ attentionMask: Tensor.from([0, 1, 1], [1, 3], "int32") });
 * assert.deepEqual(o.attentionMask, [[0, 1, 1]]); // read back to rows
 * ```
 */
export async function maskRows<O extends { attentionMask?: AttentionMask | Tensor }>(
  o: O,
): Promise<O & { attentionMask?: AttentionMask }> {
  const m = o.attentionMask;
  if (!(m instanceof Tensor)) return o as O & { attentionMask?: AttentionMask };
  if (m.shape.length !== 2) {
    throw new AttentionMaskError(
      `attentionMask Tensor has shape [${m.shape.join(", ")}]: pass it as [batch, pos], 0/1.`,
    );
  }
  const [B, P] = m.shape;
  const data = await m.toArray();
  const rows = Array.from({ length: B }, (_, b) => Array.from(data.subarray(b * P, (b + 1) * P)));
  return { ...o, attentionMask: rows };
}

/**
 * The padding of rows of these real lengths padded to `P` on `side`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paddingOf } from "./padding.ts";
 *
 * assert.deepEqual(paddingOf([2, 4], 4, "left").mask, [[0, 0, 1, 1], [1, 1, 1, 1]]);
 * ```
 */
export function paddingOf(lengths: readonly number[], P: number, side: PaddingSide): Padding {
  const starts = lengths.map((n) => side === "left" ? P - n : 0);
  const ends = lengths.map((n) => side === "left" ? P : n);
  const mask = lengths.map((_, b) =>
    Array.from({ length: P }, (_, p) => (p >= starts[b] && p < ends[b] ? 1 : 0))
  );
  return { mask, starts, ends };
}

/**
 * Whether a padding masks nothing (every row real end to end): such a batch runs as an unpadded
 * one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isFull, paddingOf } from "./padding.ts";
 *
 * assert.equal(isFull(paddingOf([3, 3], 3, "left")), true);
 * assert.equal(isFull(paddingOf([2, 3], 3, "left")), false);
 * ```
 */
export function isFull(p: Padding): boolean {
  return p.mask.every((r, b) => p.starts[b] === 0 && p.ends[b] === r.length);
}

/**
 * Uploads a padding for the kernels: the key mask widened to `stride` positions (ones past the
 * mask's width) and each row's start.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { paddingOf, padState } from "./padding.ts";
 *
 * await initGpu();
 * const pad = padState(paddingOf([2, 3], 3, "left"), 16); // room for 13 generated tokens
 * assert.deepEqual(pad.keyMask.shape, [2, 16]);
 * assert.equal(pad.shifted, true);
 * ```
 */
export function padState(p: Padding, stride = p.mask[0].length): PadState {
  const B = p.mask.length;
  const data = new Int32Array(B * stride).fill(1);
  p.mask.forEach((r, b) => data.set(r.slice(0, stride), b * stride));
  return {
    padding: p,
    keyMask: Tensor.from(data, [B, stride], "int32"),
    stride,
    starts: Tensor.from(p.starts, [B], "int32"),
    shifted: p.starts.some((s) => s > 0),
  };
}

/**
 * The index of each row's last real token (where its next-token prediction is read).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lastTokenIndices } from "./padding.ts";
 *
 * assert.deepEqual(lastTokenIndices([[1, 1, 0], [1, 1, 1]]), [1, 2]);
 * ```
 */
export function lastTokenIndices(mask: AttentionMask): number[] {
  return checkMask(mask, mask.length, mask[0]?.length ?? 0).ends.map((e) => e - 1);
}

/**
 * The next-token loss mask [B, P - 1] (TransformerLens's: a position counts when it and the next
 * one are real) and how many positions count.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lossMask, paddingOf } from "./padding.ts";
 *
 * const [m, n] = lossMask(paddingOf([2, 3], 3, "right"));
 * assert.deepEqual([m, n], [[1, 0, 1, 1], 3]);
 * ```
 */
export function lossMask(p: Padding): [number[], number] {
  const out: number[] = [];
  let n = 0;
  for (const r of p.mask) {
    for (let i = 0; i + 1 < r.length; i++) {
      const v = r[i] & r[i + 1];
      out.push(v);
      n += v;
    }
  }
  return [out, n];
}

/**
 * Where `token` occurs in each row's real tokens (TransformerLens's `get_token_position`): the
 * index of its first (or last) occurrence in the padded row. Throws an {@link InputError} when a
 * row has no real occurrence.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { paddingOf, tokenPositions } from "./padding.ts";
 *
 * assert.deepEqual(tokenPositions(7, [[0, 7, 3, 7]], paddingOf([3], 4, "left"), "last"), [3]);
 * ```
 */
export function tokenPositions(
  token: number,
  rows: readonly number[][],
  p: Padding,
  mode: "first" | "last",
): number[] {
  return rows.map((r, b) => {
    let at = -1;
    for (let i = p.starts[b]; i < p.ends[b]; i++) {
      if (r[i] === token) {
        at = i;
        if (mode === "first") break;
      }
    }
    if (at < 0) {
      throw new InputError(
        `Token ${token} does not occur in row ${b}'s real tokens (positions ` +
          `${p.starts[b]}..${p.ends[b] - 1}): look for a token of the prompt.`,
      );
    }
    return at;
  });
}
