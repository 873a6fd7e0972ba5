/**
 * Opening files the loaders read: only regular files. A named pipe, socket or device in place of
 * a config, tokenizer or weights file would block `open` or `read` until some other process
 * writes to it (a hang with no message); a directory gives an obscure OS error. Each is refused
 * here with a {@link FormatError} naming the file, before it is opened.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FormatError } from "../errors.ts";
 * import { requireRegularFile } from "./files.ts";
 *
 * const size = (await requireRegularFile("tests/reference/gpt2_tiny/hf/config.json")).size;
 * assert.ok(size > 0);
 * await assert.rejects(requireRegularFile("tests/reference/gpt2_tiny/hf"), FormatError); // a directory
 * ```
 * @module
 */
import { FormatError } from "../errors.ts";

/** What a non-regular file is, for the message. */
function kindOf(st: Deno.FileInfo): string {
  if (st.isDirectory) return "a directory";
  if (st.isFifo) return "a named pipe";
  if (st.isSocket) return "a socket";
  if (st.isCharDevice || st.isBlockDevice) return "a device";
  return "not a regular file";
}

/**
 * Stats `path` (following links) and throws a {@link FormatError} unless it is a regular file.
 * Errors from the OS (missing file, no permission) become `FormatError`s "cannot read: ...".
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FormatError } from "../errors.ts";
 * import { requireRegularFile } from "./files.ts";
 *
 * const st = await requireRegularFile("tests/reference/gpt2_tiny/hf/config.json");
 * assert.ok(st.isFile);
 * await assert.rejects(requireRegularFile("no/such/config.json"), FormatError); // "cannot read: ..."
 * ```
 */
export async function requireRegularFile(path: string): Promise<Deno.FileInfo> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    throw new FormatError(path, `cannot read: ${(e as Error).message}`);
  }
  if (!st.isFile) {
    throw new FormatError(
      path,
      `is ${
        kindOf(st)
      }, not a regular file: hooklens reads only regular files (replace it with the file itself)`,
    );
  }
  return st;
}
