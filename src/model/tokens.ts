/**
 * Tokens: text to token ids as TransformerLens's `to_tokens` (BOS, padding), token ids to text
 * and string pieces, and the validation and upload of a model input as int32 [B, P].
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { encodeTexts } from "./tokens.ts";
 *
 * const dir = "models/demo-pycode/hf"; // a GPT-2 tokenizer
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * const tokenizer = await HfTokenizer.load(dir);
 * const rows = encodeTexts(cfg, tokenizer, "def f(x):", {});
 * assert.equal(rows[0][0], 50256); // BOS first, as TransformerLens
 * ```
 * @module
 */
import { InputError } from "../errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { HfTokenizer } from "../io/tokenizer.ts";
import type { HookedTransformerConfig } from "./config.ts";
import type { Input, ToTokensOptions } from "./options.ts";
import { type AttentionMask, checkMask, isFull, type Padding, paddingOf } from "./padding.ts";
import { checkTokenTensor } from "./input.ts";

/**
 * The tokenizer, or a typed error saying to pass token ids.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError } from "../errors.ts";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { requireTokenizer } from "./tokens.ts";
 *
 * const tok = requireTokenizer(await HfTokenizer.load("models/demo-pycode/hf"));
 * assert.deepEqual(tok.encode("def"), [4299]);
 * assert.throws(() => requireTokenizer(null), InputError); // "pass token ids instead of text"
 * ```
 */
export function requireTokenizer(tok: HfTokenizer | null): HfTokenizer {
  if (!tok) {
    throw new InputError(
      "This model has no tokenizer (no tokenizer.json in its directory): pass token ids instead of text.",
    );
  }
  return tok;
}

/**
 * Token ids of texts, BOS-prefixed and padded as TransformerLens's `to_tokens`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { encodeTexts } from "./tokens.ts";
 *
 * const dir = "models/demo-pycode/hf"; // a GPT-2 tokenizer
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * const tokenizer = await HfTokenizer.load(dir);
 * const [ids] = encodeTexts(cfg, tokenizer, "def f", { prependBos: true });
 * assert.deepEqual(ids, [50256, 4299, 277]);
 * ```
 */
export function encodeTexts(
  cfg: HookedTransformerConfig,
  tokenizer: HfTokenizer | null,
  text: string | string[],
  o: ToTokensOptions,
): number[][] {
  return encodeBatch(cfg, tokenizer, text, o).rows;
}

/**
 * Token ids of texts padded to one length on `o.paddingSide` (default the model's
 * `defaultPaddingSide`), with the padding (TransformerLens's `to_tokens` and its attention mask).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { encodeBatch } from "./tokens.ts";
 *
 * const dir = "models/demo-pycode/hf"; // a GPT-2 tokenizer
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * const tokenizer = await HfTokenizer.load(dir);
 * const { rows, padding } = encodeBatch(cfg, tokenizer, ["a", "a b c"], { paddingSide: "left" });
 * assert.equal(rows[0].length, rows[1].length);
 * assert.deepEqual(padding.mask, [[0, 0, 1, 1], [1, 1, 1, 1]]);
 * ```
 */
export function encodeBatch(
  cfg: HookedTransformerConfig,
  tokenizer: HfTokenizer | null,
  text: string | string[],
  o: ToTokensOptions,
): { rows: number[][]; padding: Padding } {
  const tok = requireTokenizer(tokenizer);
  const texts = typeof text === "string" ? [text] : text;
  if (!texts.length) throw new InputError("Empty input: pass at least one text.");
  const bos = o.prependBos ?? cfg.defaultPrependBos;
  const rows = texts.map((t) => {
    const ids = tok.encode(t);
    if (bos) {
      if (tok.bosTokenId === null) {
        throw new InputError("prependBos: this tokenizer has no BOS token.");
      }
      ids.unshift(tok.bosTokenId);
    }
    return ids;
  });
  const P = Math.max(...rows.map((r) => r.length));
  if (P === 0) throw new InputError("Empty input: the text has no tokens.");
  const empty = rows.findIndex((r) => r.length === 0);
  if (empty >= 0) {
    throw new InputError(`Text ${empty} of the batch has no tokens: drop it or give it text.`);
  }
  const pad = tok.padTokenId ?? 0;
  const side = o.paddingSide ?? cfg.defaultPaddingSide;
  const padding = paddingOf(rows.map((r) => r.length), P, side);
  return {
    rows: rows.map((r) => {
      const fill = new Array(P - r.length).fill(pad);
      return side === "left" ? [...fill, ...r] : [...r, ...fill];
    }),
    padding,
  };
}

/** Asserts a mask is rows, not a Tensor (a call reads a Tensor mask back first: maskRows). */
function notTensor(m: AttentionMask | Tensor | undefined): asserts m is AttentionMask | undefined {
  if (m instanceof Tensor) {
    throw new TypeError("internal: a Tensor attentionMask must be read back first (maskRows).");
  }
}

/** Throws unless 1 <= P <= n_ctx. */
function checkLength(cfg: HookedTransformerConfig, P: number): void {
  if (P > cfg.nCtx) {
    throw new InputError(
      `Sequence of ${P} tokens is longer than the model's context n_ctx = ${cfg.nCtx}.`,
    );
  }
  if (P < 1) throw new InputError("Empty input: pass at least one token.");
}

/**
 * Validates and uploads a model input as token ids: int32 [B, P] (text is tokenized with the
 * model's defaults).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { InputError } from "../errors.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { tokensTensor } from "./tokens.ts";
 *
 * await initGpu();
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * using tokens = tokensTensor(cfg, null, [[1, 2, 3]]);
 * assert.deepEqual(tokens.shape, [1, 3]);
 * assert.throws(() => tokensTensor(cfg, null, [[1, 2, 1000]]), InputError); // d_vocab is 1000
 * ```
 */
export function tokensTensor(
  cfg: HookedTransformerConfig,
  tokenizer: HfTokenizer | null,
  input: Input,
): Tensor {
  if (input instanceof Tensor) {
    checkTokenTensor(input, cfg); // dtype, shape, length, vocabulary range
    return input;
  }
  const rows = typeof input === "string" || (Array.isArray(input) && typeof input[0] === "string")
    ? encodeTexts(cfg, tokenizer, input as string | string[], {})
    : (Array.isArray(input[0]) ? input : [input]) as number[][];
  if (!rows.length || !rows[0].length) {
    throw new InputError("Empty input: pass at least one token.");
  }
  const P = rows[0].length;
  checkLength(cfg, P);
  const data = new Int32Array(rows.length * P);
  rows.forEach((r, b) => {
    if (!Array.isArray(r) || r.length !== P) {
      throw new InputError(
        `Input row ${b} has ${r?.length} tokens, row 0 has ${P}: pad them to one length.`,
      );
    }
    r.forEach((id, p) => {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.dVocab) {
        throw new InputError(
          `Token id ${id} at [${b}, ${p}] is outside the vocabulary (0..${cfg.dVocab - 1}).`,
        );
      }
      data[b * P + p] = id;
    });
  });
  return Tensor.from(data, [rows.length, P], "int32");
}

/**
 * A model input as token ids int32 [B, P] and its padding: built from the tokenization for text
 * (padded on `paddingSide`, default the model's), the given `attentionMask` for token ids, none
 * when nothing is masked.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { batchInput } from "./tokens.ts";
 *
 * await initGpu();
 * const dir = "models/demo-pycode/hf"; // a GPT-2 tokenizer
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * const tokenizer = await HfTokenizer.load(dir);
 * const { tokens, padding } = batchInput(cfg, tokenizer, ["a", "a b"], { paddingSide: "left" });
 * using _tokens = tokens;
 * assert.deepEqual(tokens.shape, [2, 3]);
 * assert.deepEqual(padding?.starts, [1, 0]);
 * ```
 */
export function batchInput(
  cfg: HookedTransformerConfig,
  tokenizer: HfTokenizer | null,
  input: Input,
  o: { attentionMask?: AttentionMask | Tensor; paddingSide?: "left" | "right" },
): { tokens: Tensor; padding: Padding | null } {
  notTensor(o.attentionMask);
  const isText = typeof input === "string" ||
    (Array.isArray(input) && typeof input[0] === "string");
  let padding: Padding | null = null;
  let tokens: Tensor;
  if (isText) {
    if (o.attentionMask !== undefined) {
      throw new InputError(
        "attentionMask is for token input; text input builds its own (choose paddingSide).",
      );
    }
    const enc = encodeBatch(cfg, tokenizer, input as string | string[], o);
    tokens = tokensTensor(cfg, tokenizer, enc.rows);
    padding = enc.padding;
  } else {
    tokens = tokensTensor(cfg, tokenizer, input);
    if (o.attentionMask !== undefined) {
      const [B, P] = tokens.shape;
      padding = checkMask(o.attentionMask, B, P);
    }
  }
  return { tokens, padding: padding && !isFull(padding) ? padding : null };
}

/**
 * The padding of a model input (as {@link batchInput} finds it) without uploading anything: the
 * tokenization's for text, the given `attentionMask`'s for token ids, null when nothing is masked.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { inputPadding } from "./tokens.ts";
 *
 * const dir = "models/demo-pycode/hf"; // a GPT-2 tokenizer
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * const tokenizer = await HfTokenizer.load(dir);
 * const padding = inputPadding(cfg, tokenizer, ["a", "a b"], {}); // the model's side: right
 * assert.deepEqual(padding?.mask, [[1, 1, 0], [1, 1, 1]]);
 * assert.equal(inputPadding(cfg, tokenizer, [[1, 2]], {}), null); // nothing masked
 * ```
 */
export function inputPadding(
  cfg: HookedTransformerConfig,
  tokenizer: HfTokenizer | null,
  input: Input,
  o: { attentionMask?: AttentionMask | Tensor; paddingSide?: "left" | "right" },
): Padding | null {
  notTensor(o.attentionMask);
  let padding: Padding | null = null;
  if (typeof input === "string" || (Array.isArray(input) && typeof input[0] === "string")) {
    padding = encodeBatch(cfg, tokenizer, input as string | string[], o).padding;
  } else if (o.attentionMask !== undefined) {
    const rows = input instanceof Tensor
      ? input.shape
      : Array.isArray(input[0])
      ? [input.length, (input[0] as number[]).length]
      : [1, input.length];
    padding = checkMask(o.attentionMask, rows[0], rows[1]);
  }
  return padding && !isFull(padding) ? padding : null;
}

/**
 * Text of token ids (TransformerLens's `to_string`): one string per row.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { decodeTokens } from "./tokens.ts";
 *
 * const tokenizer = await HfTokenizer.load("models/demo-pycode/hf");
 * assert.equal(decodeTokens(tokenizer, [50256, 4299]), "<|endoftext|>def");
 * ```
 */
export function decodeTokens(
  tokenizer: HfTokenizer | null,
  tokens: number[] | number[][],
): string | string[] {
  const tok = requireTokenizer(tokenizer);
  if (Array.isArray(tokens[0])) return (tokens as number[][]).map((r) => tok.decode(r));
  return tok.decode(tokens as number[]);
}

/**
 * Each token as a string (TransformerLens's `to_str_tokens`); text is tokenized first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { readJsonFile } from "../io/json.ts";
 * import { configFromHf } from "./config.ts";
 * import { strTokens } from "./tokens.ts";
 *
 * const dir = "models/demo-pycode/hf"; // a GPT-2 tokenizer
 * const cfg = configFromHf(await readJsonFile(`${dir}/config.json`), dir);
 * const tokenizer = await HfTokenizer.load(dir);
 * assert.deepEqual(strTokens(cfg, tokenizer, "def f", {}), ["<|endoftext|>", "def", " f"]);
 * ```
 */
export function strTokens(
  cfg: HookedTransformerConfig,
  tokenizer: HfTokenizer | null,
  input: string | string[] | number[] | number[][],
  opts: ToTokensOptions,
): string[] | string[][] {
  const tok = requireTokenizer(tokenizer);
  const encode = (t: string) => encodeTexts(cfg, tok, t, opts)[0].map((i) => tok.piece(i));
  if (typeof input === "string") return encode(input);
  if (Array.isArray(input) && typeof input[0] === "string") {
    return (input as string[]).map(encode);
  }
  if (Array.isArray(input[0])) {
    return (input as number[][]).map((r) => r.map((i) => tok.piece(i)));
  }
  return (input as number[]).map((i) => tok.piece(i));
}

/**
 * The id of a string that is exactly one token (TransformerLens's `to_single_token`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError } from "../errors.ts";
 * import { HfTokenizer } from "../io/tokenizer.ts";
 * import { singleToken } from "./tokens.ts";
 *
 * const tokenizer = await HfTokenizer.load("models/demo-pycode/hf");
 * assert.equal(tokenizer!.piece(singleToken(tokenizer, " return")), " return");
 * assert.throws(() => singleToken(tokenizer, "def f"), InputError); // two tokens
 * ```
 */
export function singleToken(tokenizer: HfTokenizer | null, text: string): number {
  const ids = requireTokenizer(tokenizer).encode(text);
  if (ids.length !== 1) {
    const pieces = ids.map((i) => tokenizer!.piece(i));
    throw new InputError(`"${text}" is ${ids.length} tokens, not one: ${JSON.stringify(pieces)}.`);
  }
  return ids[0];
}
