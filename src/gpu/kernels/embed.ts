/**
 * Embedding lookups (shaders/embed.wgsl): token rows of W_E and positional rows of W_pos, from
 * float32 or float16 tables.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { embedPositions, embedTokens } from "./embed.ts";
 *
 * await initGpu();
 * using W_E = Tensor.from([0, 0, 1, 1, 2, 2], [3, 2]); // [d_vocab, d_model]
 * using W_pos = Tensor.from([10, 10, 20, 20, 30, 30], [3, 2]); // [n_ctx, d_model]
 * using tokens = Tensor.from([2, 1], [1, 2], "int32");
 * using e = embedTokens(W_E, tokens);
 * using p = embedPositions(W_pos, 1, 2, 0);
 * assert.deepEqual([...await e.toArray()], [2, 2, 1, 1]);
 * assert.deepEqual([...await p.toArray()], [10, 10, 20, 20]);
 * ```
 * @module
 */
import embedWgsl from "../../../shaders/embed.wgsl" with { type: "text" };
import { ShapeError } from "../../errors.ts";
import { dispatch, pipeline, type ShaderSource } from "../dispatch.ts";
import { Tensor } from "../tensor.ts";
import { gridRows } from "./launch.ts";
import { shaderSource, uniforms } from "./uniforms.ts";

/** The uniform block of shaders/embed.wgsl. */
const EMBED_P = uniforms({
  /** Rows to write (tokens, or batch * pos). */
  tokens: "u32",
  /** Positions per batch row. */
  pos: "u32",
  /** Row length (d_model). */
  d: "u32",
  /** Position of the first row (positions). */
  pos_off: "u32",
  /** Rows of the table (ids are clamped to it). */
  vocab: "u32",
});

/** shaders/embed.wgsl (specialised by WT, the table's element type). */
export const EMBED_SHADER: ShaderSource = shaderSource("embed", EMBED_P, embedWgsl);

/** The WGSL element type of a float table (f16 tables are read as f32). */
function tableType(table: Tensor): "f16" | "f32" {
  if (table.dtype === "int32") {
    throw new ShapeError(
      `embedding needs a float32 or float16 table, got int32 [${table.shape.join(", ")}]: ` +
        "upload the table as floats.",
    );
  }
  return table.dtype === "float16" ? "f16" : "f32";
}

/**
 * Embedding lookup: rows of `table` [vocab, d] (float32 or float16) at int32 `ids` [..]: returns
 * float32 [.., d].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { embedTokens } from "./embed.ts";
 *
 * await initGpu();
 * using W_E = Tensor.from([0, 0, 1, 1, 2, 2], [3, 2]);
 * using tokens = Tensor.from([2, 0, 1], [1, 3], "int32");
 * using e = embedTokens(W_E, tokens); // [batch, pos, d_model]
 * assert.deepEqual(e.shape, [1, 3, 2]);
 * assert.deepEqual([...await e.toArray()], [2, 2, 0, 0, 1, 1]);
 * ```
 */
export function embedTokens(table: Tensor, ids: Tensor): Tensor {
  const [vocab, d] = table.shape;
  const out = Tensor.empty([...ids.shape, d]);
  dispatch(
    pipeline(EMBED_SHADER, "tokens", { WT: tableType(table) }),
    EMBED_P.pack({ tokens: ids.size, pos: 1, d, vocab }),
    [table.buffer, ids.buffer, out.buffer],
    gridRows(ids.size),
  );
  return out;
}

/**
 * Learned positional embedding for a [batch, pos] input: rows `offset..offset+pos` of `table`,
 * repeated per batch: returns [batch, pos, d].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { embedPositions } from "./embed.ts";
 *
 * await initGpu();
 * using W_pos = Tensor.from([10, 20, 30], [3, 1]);
 * using p = embedPositions(W_pos, 2, 2, 1); // 2 rows, positions 1..2
 * assert.deepEqual(p.shape, [2, 2, 1]);
 * assert.deepEqual([...await p.toArray()], [20, 30, 20, 30]);
 * ```
 */
export function embedPositions(table: Tensor, batch: number, pos: number, offset: number): Tensor {
  const d = table.shape[1];
  const out = Tensor.empty([batch, pos, d]);
  dispatch(
    pipeline(EMBED_SHADER, "positions", { WT: tableType(table) }),
    EMBED_P.pack({ tokens: batch * pos, pos, d, pos_off: offset, vocab: table.shape[0] }),
    [table.buffer, undefined, out.buffer],
    gridRows(batch * pos),
  );
  return out;
}

/**
 * Learned positional embedding [batch, pos, d] of a padded batch: row b's token t takes row
 * max(t + offset, starts[b]) - starts[b] of `table` [n_ctx, d], `starts` int32 [batch] holding
 * each row's first real position (TransformerLens's offset position ids).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu, Tensor } from "@hooklens/hooklens";
 * import { embedPositionsRows } from "./embed.ts";
 *
 * await initGpu();
 * using W_pos = Tensor.from([10, 20, 30], [3, 1]); // [n_ctx, d]
 * using starts = Tensor.from([1, 0], [2], "int32"); // row 0 is left-padded by one
 * using p = embedPositionsRows(W_pos, 2, 3, 0, starts);
 * assert.deepEqual([...await p.toArray()], [10, 10, 20, 10, 20, 30]);
 * ```
 */
export function embedPositionsRows(
  table: Tensor,
  batch: number,
  pos: number,
  offset: number,
  starts: Tensor,
): Tensor {
  if (starts.dtype !== "int32" || starts.size < batch) {
    throw new ShapeError(
      `embedPositionsRows: starts must be int32 with one entry per batch row (${batch}), got ` +
        `${starts.dtype} [${starts.shape.join(", ")}].`,
    );
  }
  const d = table.shape[1];
  const out = Tensor.empty([batch, pos, d]);
  dispatch(
    pipeline(EMBED_SHADER, "positions_rows", { WT: tableType(table) }),
    EMBED_P.pack({ tokens: batch * pos, pos, d, pos_off: offset, vocab: table.shape[0] }),
    [table.buffer, starts.buffer, out.buffer],
    gridRows(batch * pos),
  );
  return out;
}
