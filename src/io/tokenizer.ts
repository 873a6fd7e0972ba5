/**
 * Text <-> token ids from a Hugging Face `tokenizer.json` (via `npm:@huggingface/tokenizers`),
 * with TransformerLens's conventions: BOS prepended by default, right padding with the pad (or
 * EOS) token, per-token strings decoded one id at a time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HfTokenizer } from "./tokenizer.ts";
 *
 * const tok = await HfTokenizer.load("tests/reference/tokenizer_gpt2");
 * assert.deepEqual(tok!.encode("Hello world"), [15496, 995]);
 * ```
 * @module
 */
import { join } from "node:path";
// A full specifier, not a bare name mapped in deno.json: a script outside this repository imports
// mod.ts without our import map (tests/import_anywhere_test.ts).
// deno-lint-ignore no-import-prefix
import { Tokenizer } from "npm:@huggingface/tokenizers@0.2.0";
import { FormatError } from "../errors.ts";
import { readJsonFile } from "./json.ts";
import { requireRegularFile } from "./files.ts";

/** A loaded tokenizer. */
export class HfTokenizer {
  readonly #tok: Tokenizer;
  /** BOS token id (falls back to EOS, as GPT-2's tokenizer has one token for both). */
  readonly bosTokenId: number | null;
  /** EOS token id. */
  readonly eosTokenId: number | null;
  /** Padding token id (falls back to EOS, as TransformerLens does). */
  readonly padTokenId: number | null;
  /** Vocabulary size including added tokens. */
  readonly vocabSize: number;

  readonly #path: string;

  private constructor(tok: Tokenizer, config: Record<string, unknown>, path: string) {
    this.#tok = tok;
    this.#path = path;
    const id = (v: unknown): number | null => {
      const s = typeof v === "string"
        ? v
        : v && typeof v === "object"
        ? (v as { content?: string }).content
        : undefined;
      if (typeof s !== "string") return null;
      const i = tok.token_to_id(s);
      return typeof i === "number" ? i : null;
    };
    this.eosTokenId = id(config.eos_token);
    this.bosTokenId = id(config.bos_token) ?? this.eosTokenId;
    this.padTokenId = id(config.pad_token) ?? this.eosTokenId;
    this.vocabSize = Object.keys(tok.get_vocab()).length;
  }

  /**
   * Loads `dir/tokenizer.json` (and `tokenizer_config.json` if present); null if there is none.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HfTokenizer } from "./tokenizer.ts";
   *
   * assert.ok(await HfTokenizer.load("tests/reference/tokenizer_gpt2"));
   * // A folder without tokenizer.json gives null (the model then takes token ids only).
   * assert.equal(await HfTokenizer.load("tests/reference/gpt2_tiny/hf"), null);
   * ```
   */
  static async load(dir: string): Promise<HfTokenizer | null> {
    const path = join(dir, "tokenizer.json");
    try {
      await Deno.stat(path);
    } catch {
      return null;
    }
    // JSON.parse, not the strict parser: vocabularies hold keys such as "constructor" and
    // "prototype", and JSON.parse defines every key as a plain own property (no prototype writes).
    let json: unknown;
    try {
      const st = await requireRegularFile(path);
      if (st.size > 512 * 1024 * 1024) {
        throw new FormatError(path, `file of ${st.size} bytes is too large`);
      }
      json = JSON.parse(await Deno.readTextFile(path));
    } catch (e) {
      if (e instanceof FormatError) throw e;
      throw new FormatError(path, `not valid JSON: ${(e as Error).message}`);
    }
    if (!json || typeof json !== "object" || Array.isArray(json)) {
      throw new FormatError(path, "not a JSON object");
    }
    let config: Record<string, unknown> = {};
    try {
      config = (await readJsonFile(join(dir, "tokenizer_config.json"))) as Record<string, unknown>;
    } catch (e) {
      if (!(e instanceof FormatError) || !/cannot read/.test(e.message)) throw e;
    }
    try {
      const tok = new Tokenizer(json as unknown as object, config as unknown as object);
      const t = new HfTokenizer(tok, config, path);
      t.encode("a"); // a tokenizer that cannot encode fails here, at load, not mid-analysis
      return t;
    } catch (e) {
      if (e instanceof FormatError) throw e;
      throw new FormatError(path, `not a tokenizer this library can read: ${(e as Error).message}`);
    }
  }

  /**
   * Token ids of `text` (no special tokens added).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HfTokenizer } from "./tokenizer.ts";
   *
   * const tok = (await HfTokenizer.load("tests/reference/tokenizer_gpt2"))!;
   * assert.deepEqual(tok.encode(" world"), [995]);
   * ```
   */
  encode(text: string): number[] {
    if (!text.length) return [];
    try {
      return this.#tok.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      throw new FormatError(this.#path, `cannot encode text: ${(e as Error).message}`);
    }
  }

  /**
   * Text of token ids.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HfTokenizer } from "./tokenizer.ts";
   *
   * const tok = (await HfTokenizer.load("tests/reference/tokenizer_gpt2"))!;
   * assert.equal(tok.decode([15496, 995]), "Hello world");
   * ```
   */
  decode(ids: ArrayLike<number>): string {
    if (!ids.length) return "";
    try {
      return this.#tok.decode(Array.from(ids));
    } catch (e) {
      throw new FormatError(this.#path, `cannot decode ids: ${(e as Error).message}`);
    }
  }

  /** The string of one token id, decoded alone (TransformerLens's `to_str_tokens`). */
  piece(id: number): string {
    return this.decode([id]);
  }
}
