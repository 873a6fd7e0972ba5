/**
 * A strict JSON parser for untrusted files: like `JSON.parse`, but duplicate keys are an error,
 * `__proto__`/`constructor`/`prototype` keys are refused, nesting is bounded, and objects come
 * back with a null prototype.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseStrictJson } from "./json.ts";
 *
 * const v = parseStrictJson('{"a": [1, 2]}', "x.json") as { a: number[] };
 * assert.deepEqual(v.a, [1, 2]);
 * assert.equal(Object.getPrototypeOf(v), null); // objects come without a prototype
 * ```
 * @module
 */
import { FormatError } from "../errors.ts";
import { requireRegularFile } from "./files.ts";

const FORBIDDEN = new Set(["__proto__", "constructor", "prototype"]);

/** JSON value as parsed. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/**
 * Parses `text` strictly; errors are {@link FormatError}s naming `file` and the offset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FormatError } from "../errors.ts";
 * import { parseStrictJson } from "./json.ts";
 *
 * assert.equal(JSON.stringify(parseStrictJson('{ "n_layer": 2 }', "config.json")), '{"n_layer":2}');
 * // Keys that could reach a prototype are refused, naming the file.
 * assert.throws(() => parseStrictJson('{"__proto__": {}}', "config.json"), FormatError);
 * ```
 */
export function parseStrictJson(text: string, file: string, maxDepth = 64): Json {
  let i = 0;
  const fail = (msg: string): never => {
    throw new FormatError(file, `invalid JSON at offset ${i}: ${msg}`);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };
  const str = (): string => {
    const start = ++i;
    let out = "";
    let chunk = start;
    while (true) {
      if (i >= text.length) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 34) break;
      if (c < 32) fail("control character in string");
      if (c === 92) {
        out += text.slice(chunk, i);
        const e = text[i + 1];
        const map: Record<string, string> = {
          '"': '"',
          "\\": "\\",
          "/": "/",
          b: "\b",
          f: "\f",
          n: "\n",
          r: "\r",
          t: "\t",
        }; // deno-fmt-ignore
        if (e === "u") {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else if (e !== undefined && e in map) {
          out += map[e];
          i += 2;
        } else fail("bad escape");
        chunk = i;
        continue;
      }
      i++;
    }
    out += text.slice(chunk, i);
    i++;
    return out;
  };
  const num = (): number => {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail("bad number");
    i += m[0].length;
    return Number(m[0]);
  };
  const value = (depth: number): Json => {
    if (depth > maxDepth) fail(`nesting deeper than ${maxDepth}`);
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj: { [k: string]: Json } = Object.create(null);
      const seen = new Set<string>();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      while (true) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const k = str();
        if (seen.has(k)) fail(`duplicate key "${k}"`);
        if (FORBIDDEN.has(k)) fail(`forbidden key "${k}"`);
        seen.add(k);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        obj[k] = value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: Json[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      while (true) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (text.startsWith("true", i)) return (i += 4, true);
    if (text.startsWith("false", i)) return (i += 5, false);
    if (text.startsWith("null", i)) return (i += 4, null);
    if (c === "-" || (c >= "0" && c <= "9")) return num();
    return fail(c === undefined ? "unexpected end" : `unexpected character '${c}'`);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail("trailing characters");
  return v;
}

/**
 * Reads and strictly parses a JSON file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "./json.ts";
 *
 * const cfg = await readJsonFile("tests/reference/gpt2_tiny/hf/config.json");
 * assert.equal((cfg as { n_layer: number }).n_layer, 2);
 * ```
 */
export async function readJsonFile(path: string, maxBytes = 64 * 1024 * 1024): Promise<Json> {
  let bytes: Uint8Array;
  try {
    const st = await requireRegularFile(path);
    if (st.size > maxBytes) throw new FormatError(path, `file of ${st.size} bytes is too large`);
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(path, `cannot read: ${(e as Error).message}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(path, "not valid UTF-8");
  }
  return parseStrictJson(text, path);
}
