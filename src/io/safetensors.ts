/**
 * Strict safetensors reader and writer, no dependency. The header is validated completely before
 * any tensor is read: every malformed file gets a {@link SafetensorsError} naming the file and,
 * where it applies, the tensor. Tensors are read one at a time from the file, so a file of several
 * GB never sits in memory twice.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SafetensorsFile, writeSafetensors } from "./safetensors.ts";
 *
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * const data = new Float32Array([1, 2]);
 * await writeSafetensors(path, { w: { dtype: "F32", shape: [2], data } });
 * using f = await SafetensorsFile.open(path);
 * assert.deepEqual(await f.float32("w"), data);
 * await Deno.remove(path);
 * ```
 * @module
 */
import { FormatError, SafetensorsError, WeightsError } from "../errors.ts";
import { requireRegularFile } from "./files.ts";
import { type Json, parseStrictJson } from "./json.ts";

/** Dtypes of the safetensors format that hooklens reads and writes. */
export type StDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<StDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
}; // deno-fmt-ignore

/** The floating-point dtypes, which weights may have. */
export const FLOAT_DTYPES: readonly StDtype[] = ["F32", "F16", "BF16", "F64"];

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor's entry in the header. */
export interface TensorInfo {
  /** Name in the file. */
  readonly name: string;
  /** Stored element type. */
  readonly dtype: StDtype;
  /** Dimensions. */
  readonly shape: readonly number[];
  /** Byte offset of the data from the start of the data section. */
  readonly begin: number;
  /** End offset (exclusive) from the start of the data section. */
  readonly end: number;
}

/** A parsed, validated header. */
export interface Header {
  /** Tensors by name. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** `__metadata__` (string to string), if present. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Byte offset of the data section in the file. */
  readonly dataStart: number;
}

/**
 * Validates the header of a safetensors file given its first bytes and total size.
 * `prefix` must hold at least the 8-byte length and the header (or the whole file).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeSafetensors, parseHeader } from "./safetensors.ts";
 *
 * const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [2, 3], data: new Float32Array(6) } });
 * const h = parseHeader("x.safetensors", bytes, bytes.length);
 * assert.deepEqual(h.tensors.get("w")?.shape, [2, 3]);
 * ```
 */
export function parseHeader(file: string, prefix: Uint8Array, fileSize: number): Header {
  const err = (msg: string, tensor?: string) => new SafetensorsError(file, msg, tensor);
  if (fileSize < 8 || prefix.length < 8) {
    throw err(`file of ${fileSize} bytes is too short for a safetensors header`);
  }
  const n = Number(new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true));
  if (n > MAX_HEADER_BYTES) {
    throw err(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  if (8 + n > fileSize) {
    throw err(`header length ${n} runs past the end of the ${fileSize}-byte file`);
  }
  if (prefix.length < 8 + n) throw err("header not fully read");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(prefix.subarray(8, 8 + n));
  } catch {
    throw err("header is not valid UTF-8");
  }
  let json: Json;
  try {
    json = parseStrictJson(text, file, 8);
  } catch (e) {
    throw err(`header is not valid JSON (${(e as Error).message.replace(`${file}: `, "")})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw err("header is not a JSON object");
  }
  const dataLen = fileSize - 8 - n;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (v === null || typeof v !== "object" || Array.isArray(v)) {
        throw err("__metadata__ is not an object", name);
      }
      for (const [k, mv] of Object.entries(v)) {
        if (typeof mv !== "string") throw err(`__metadata__.${k} is not a string`, name);
      }
      metadata = { ...(v as Record<string, string>) };
      continue;
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw err("entry is not an object", name);
    }
    const { dtype, shape, data_offsets } = v as Record<string, Json>;
    if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) {
      throw err(
        `unknown dtype ${JSON.stringify(dtype)} (supported: ${
          Object.keys(DTYPE_BYTES).join(", ")
        })`,
        name,
      );
    }
    if (
      !Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && (s as number) >= 0)
    ) {
      throw err(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    }
    if (
      !Array.isArray(data_offsets) || data_offsets.length !== 2 ||
      !data_offsets.every((s) => Number.isSafeInteger(s) && (s as number) >= 0)
    ) {
      throw err(`data_offsets ${JSON.stringify(data_offsets)} is not [begin, end]`, name);
    }
    const [begin, end] = data_offsets as number[];
    if (begin > end || end > dataLen) {
      throw err(
        `data_offsets [${begin}, ${end}] out of range of the ${dataLen}-byte data section`,
        name,
      );
    }
    let elems = 1;
    for (const s of shape as number[]) {
      elems *= s;
      if (!Number.isSafeInteger(elems)) throw err("shape has too many elements", name);
    }
    const want = elems * DTYPE_BYTES[dtype as StDtype];
    if (want !== end - begin) {
      throw err(
        `byte length ${end - begin} does not equal shape [${
          shape.join(", ")
        }] x ${dtype} (${want})`,
        name,
      );
    }
    tensors.set(name, { name, dtype: dtype as StDtype, shape: shape as number[], begin, end });
  }
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const t of sorted) {
    if (t.begin < pos) {
      throw err(`data overlaps the previous tensor (offset ${t.begin} < ${pos})`, t.name);
    }
    if (t.begin > pos) {
      throw err(`gap in the data section before offset ${t.begin} (expected ${pos})`, t.name);
    }
    pos = t.end;
  }
  if (pos !== dataLen) {
    throw err(`tensors cover ${pos} of the ${dataLen}-byte data section (trailing bytes)`);
  }
  return { tensors, metadata, dataStart: 8 + n };
}

/** Converts raw little-endian bytes of `dtype` to float32. */
export function toFloat32(bytes: Uint8Array, dtype: StDtype, file = "", name = ""): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const buf = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const ab = buf.buffer as ArrayBuffer, off = buf.byteOffset;
  switch (dtype) {
    case "F32":
      return new Float32Array(ab.slice(off, off + n * 4));
    case "F64":
      return Float32Array.from(new Float64Array(ab, off, n));
    case "F16":
      return Float32Array.from(new Float16Array(ab, off, n));
    case "BF16": {
      const src = new Uint16Array(ab, off, n);
      const u = new Uint32Array(n);
      for (let i = 0; i < n; i++) u[i] = src[i] << 16;
      return new Float32Array(u.buffer);
    }
    case "I64":
      return Float32Array.from(new BigInt64Array(ab, off, n), (v) => Number(v));
    case "I32":
      return Float32Array.from(new Int32Array(ab, off, n));
    case "I16":
      return Float32Array.from(new Int16Array(ab, off, n));
    case "I8":
      return Float32Array.from(new Int8Array(ab, off, n));
    case "U8":
    case "BOOL":
      return Float32Array.from(new Uint8Array(ab, off, n));
  }
  throw new SafetensorsError(file, `cannot convert ${dtype} to float32`, name);
}

/** Converts raw bytes of an integer (or bool) dtype to int32, refusing values out of range. */
export function toInt32(bytes: Uint8Array, dtype: StDtype, file = "", name = ""): Int32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const buf = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const ab = buf.buffer as ArrayBuffer, off = buf.byteOffset;
  switch (dtype) {
    case "I64": {
      const src = new BigInt64Array(ab, off, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = src[i];
        if (v > 2147483647n || v < -2147483648n) {
          throw new SafetensorsError(file, `value ${v} does not fit int32`, name);
        }
        out[i] = Number(v);
      }
      return out;
    }
    case "I32":
      return new Int32Array(ab.slice(off, off + n * 4));
    case "I16":
      return Int32Array.from(new Int16Array(ab, off, n));
    case "I8":
      return Int32Array.from(new Int8Array(ab, off, n));
    case "U8":
    case "BOOL":
      return Int32Array.from(new Uint8Array(ab, off, n));
  }
  throw new SafetensorsError(file, `${dtype} is not an integer dtype`, name);
}

/** A validated safetensors file whose tensors are read on demand. */
export class SafetensorsFile implements Disposable {
  /** The file's path (or a label for in-memory data). */
  readonly path: string;
  /** The validated header. */
  readonly header: Header;
  #file: Deno.FsFile | null;
  #bytes: Uint8Array | null;

  private constructor(
    path: string,
    header: Header,
    file: Deno.FsFile | null,
    bytes: Uint8Array | null,
  ) {
    this.path = path;
    this.header = header;
    this.#file = file;
    this.#bytes = bytes;
  }

  /**
   * Opens and validates a file; tensor data stays on disk until read.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SafetensorsFile } from "./safetensors.ts";
   *
   * using f = await SafetensorsFile.open("tests/reference/gpt2_tiny/hf/model.safetensors");
   * assert.deepEqual(f.info("transformer.wte.weight").shape, [1000, 64]);
   * ```
   */
  static async open(path: string): Promise<SafetensorsFile> {
    let file: Deno.FsFile;
    try {
      // A named pipe would block open() until a writer appears: only regular files are opened.
      await requireRegularFile(path);
      file = await Deno.open(path, { read: true });
    } catch (e) {
      if (e instanceof FormatError) {
        throw new SafetensorsError(path, e.message.slice(path.length + 2));
      }
      throw new SafetensorsError(path, `cannot open: ${(e as Error).message}`);
    }
    try {
      const size = (await file.stat()).size;
      const head = new Uint8Array(Math.min(size, 8));
      await readExactly(file, head, 0);
      let prefix = head;
      if (size >= 8) {
        const n = Number(new DataView(head.buffer).getBigUint64(0, true));
        if (n <= MAX_HEADER_BYTES && 8 + n <= size) {
          prefix = new Uint8Array(8 + n);
          await readExactly(file, prefix, 0);
        }
      }
      return new SafetensorsFile(path, parseHeader(path, prefix, size), file, null);
    } catch (e) {
      file.close();
      if (e instanceof SafetensorsError) throw e;
      throw new SafetensorsError(path, `cannot read: ${(e as Error).message}`);
    }
  }

  /**
   * Validates an in-memory file.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { encodeSafetensors, SafetensorsFile } from "./safetensors.ts";
   *
   * const bytes = encodeSafetensors({ ids: { dtype: "I32", shape: [2], data: new Int32Array([7, 9]) } });
   * using f = SafetensorsFile.fromBytes("mem", bytes);
   * assert.deepEqual(await f.int32("ids"), new Int32Array([7, 9]));
   * ```
   */
  static fromBytes(label: string, bytes: Uint8Array): SafetensorsFile {
    return new SafetensorsFile(label, parseHeader(label, bytes, bytes.length), null, bytes);
  }

  /** Tensor names. */
  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  /** Whether the file holds `name`. */
  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  /** The header entry of `name`; throws if absent. */
  info(name: string): TensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) {
      throw new SafetensorsError(this.path, "no such tensor in the file", name);
    }
    return t;
  }

  /** Raw bytes of one tensor. */
  async bytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const start = this.header.dataStart + t.begin;
    if (this.#bytes) return this.#bytes.slice(start, this.header.dataStart + t.end);
    if (!this.#file) throw new SafetensorsError(this.path, "file is closed", name);
    const out = new Uint8Array(t.end - t.begin);
    try {
      await readExactly(this.#file, out, start);
    } catch (e) {
      throw new SafetensorsError(
        this.path,
        `cannot read tensor data: ${(e as Error).message}`,
        name,
      );
    }
    return out;
  }

  /** One tensor converted to float32. */
  async float32(name: string): Promise<Float32Array> {
    return toFloat32(await this.bytes(name), this.info(name).dtype, this.path, name);
  }

  /**
   * One floating-point tensor (F64, F32, F16, BF16) converted to float32. Integer and bool
   * tensors are refused with a {@link WeightsError}: read as floats they would load as weights of
   * absurd size (use {@link SafetensorsFile.float32} to convert them on purpose).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { WeightsError } from "../errors.ts";
   * import { encodeSafetensors, SafetensorsFile } from "./safetensors.ts";
   *
   * using f = SafetensorsFile.fromBytes("mem", encodeSafetensors({
   *   w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
   *   ids: { dtype: "I32", shape: [2], data: new Int32Array([1, 2]) },
   * }));
   * assert.deepEqual(await f.floatWeights("w"), new Float32Array([1, 2]));
   * await assert.rejects(f.floatWeights("ids"), WeightsError); // integers are not weights
   * ```
   */
  async floatWeights(name: string): Promise<Float32Array> {
    const { dtype } = this.info(name);
    if (!FLOAT_DTYPES.includes(dtype)) {
      throw new WeightsError(
        this.path,
        `dtype ${dtype} is an integer type, where floating-point weights (${
          FLOAT_DTYPES.join(", ")
        }) are expected; convert the checkpoint's weights to a float dtype`,
        name,
      );
    }
    return await this.float32(name);
  }

  /** One integer tensor converted to int32. */
  async int32(name: string): Promise<Int32Array> {
    return toInt32(await this.bytes(name), this.info(name).dtype, this.path, name);
  }

  /** Closes the file. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  /** Same as {@link SafetensorsFile.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

async function readExactly(file: Deno.FsFile, out: Uint8Array, pos: number): Promise<void> {
  await file.seek(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < out.length) {
    const n = await file.read(out.subarray(off));
    if (n === null) throw new Error("unexpected end of file");
    off += n;
  }
}

/** A tensor to write. */
export interface TensorToWrite {
  /** Stored dtype. */
  dtype: StDtype;
  /** Dimensions. */
  shape: readonly number[];
  /** Data whose bytes are written as they are (must match dtype and shape). */
  data: ArrayBufferView;
}

/**
 * Serialises tensors to safetensors bytes (header padded to 8 bytes, data in insertion order).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeSafetensors } from "./safetensors.ts";
 *
 * const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [1], data: new Float32Array([1]) } });
 * // An 8-byte header length, the JSON header, then 4 bytes of data.
 * const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
 * assert.equal(bytes.length, 8 + headerLen + 4);
 * ```
 */
export function encodeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (n !== t.data.byteLength) {
      throw new SafetensorsError(
        "(writing)",
        `data has ${t.data.byteLength} bytes, shape needs ${n}`,
        name,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = new TextEncoder().encode(JSON.stringify(header) + " ".repeat(pad));
  const out = new Uint8Array(8 + json.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let p = 8 + json.length;
  for (const t of Object.values(tensors)) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
}

/**
 * Writes a safetensors file atomically (temp file, then rename).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SafetensorsFile, writeSafetensors } from "./safetensors.ts";
 *
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * await writeSafetensors(path, { w: { dtype: "F32", shape: [1], data: new Float32Array([1]) } }, {
 *   format: "pt",
 * });
 * using f = await SafetensorsFile.open(path);
 * assert.equal(f.header.metadata.format, "pt");
 * await Deno.remove(path);
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  const bytes = encodeSafetensors(tensors, metadata);
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
}
