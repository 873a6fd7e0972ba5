/**
 * Strict reader of NumPy's `.npz` (a zip archive of `.npy` arrays, stored or deflated, zip64
 * included), no dependency. The zip's central directory and every entry's local header are
 * validated before any array is read (bounds, overlaps, names, methods, sizes), and each array's
 * `.npy` header (dtype, shape, C order) must account for its bytes exactly; the CRC-32 of every
 * array read is checked. Every malformed file gets an {@link NpzError} naming the file and, where
 * it applies, the array. Nothing is allocated beyond the file's size, except the output of
 * deflated arrays, which is limited to the size their entry declares (itself limited to what
 * deflate can expand to, 1032 bytes per compressed byte).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NpzFile } from "./npz.ts";
 *
 * const npz = await NpzFile.open("tests/reference/gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post/params.npz");
 * assert.deepEqual(npz.names(), ["W_enc", "W_dec", "b_enc", "b_dec", "threshold"]);
 * const wEnc = await npz.float32("W_enc");
 * assert.deepEqual((await npz.info("W_enc")).shape, [64, 128]);
 * assert.equal(wEnc.length, 64 * 128);
 * ```
 * @module
 */
import { NpzError } from "../errors.ts";
import { DTYPE_BYTES, type StDtype, toFloat32 } from "./safetensors.ts";

/** One array's `.npy` header. */
export interface NpyInfo {
  /** Name in the archive, without ".npy". */
  readonly name: string;
  /** NumPy's dtype string, e.g. "<f4". */
  readonly descr: string;
  /** The same as a safetensors dtype. */
  readonly dtype: StDtype;
  /** Dimensions (C order). */
  readonly shape: readonly number[];
}

/** NumPy dtype strings hooklens reads (little-endian or single-byte), as safetensors dtypes. */
const DESCRS: Readonly<Record<string, StDtype>> = {
  "<f8": "F64",
  "<f4": "F32",
  "<f2": "F16",
  "<i8": "I64",
  "<i4": "I32",
  "<i2": "I16",
  "|i1": "I8",
  "|u1": "U8",
  "|b1": "BOOL",
};

/** Most bytes deflate can expand one compressed byte to. */
const MAX_DEFLATE_RATIO = 1032;
/** Largest `.npy` header accepted (NumPy itself refuses headers over 10 000 bytes by default). */
const MAX_NPY_HEADER = 65536;

interface Entry {
  name: string;
  method: 0 | 8;
  crc: number;
  compressedSize: number;
  size: number;
  dataStart: number;
}

/** A validated `.npz` archive held in memory; arrays are decoded on demand. */
export class NpzFile {
  /** The file's path (or a label for in-memory data). */
  readonly path: string;
  readonly #bytes: Uint8Array;
  readonly #entries: Map<string, Entry>;

  private constructor(path: string, bytes: Uint8Array, entries: Map<string, Entry>) {
    this.path = path;
    this.#bytes = bytes;
    this.#entries = entries;
  }

  /**
   * Reads and validates a file.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { NpzError } from "../errors.ts";
   * import { NpzFile } from "./npz.ts";
   *
   * const npz = await NpzFile.open("tests/reference/gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post/params.npz");
   * assert.ok(npz.has("threshold"));
   * await assert.rejects(NpzFile.open("tests/reference/gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post/cfg.json"), NpzError); // not a zip archive
   * ```
   */
  static async open(path: string): Promise<NpzFile> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      throw new NpzError(path, `cannot read: ${(e as Error).message}`);
    }
    return NpzFile.fromBytes(path, bytes);
  }

  /**
   * Validates an archive in memory.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { NpzFile } from "./npz.ts";
   *
   * const bytes = await Deno.readFile("tests/reference/gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post/params.npz");
   * const npz = NpzFile.fromBytes("mem.npz", bytes);
   * assert.equal((await npz.float32("b_dec")).length, 64);
   * ```
   */
  static fromBytes(label: string, bytes: Uint8Array): NpzFile {
    return new NpzFile(label, bytes, parseZip(label, bytes));
  }

  /** Array names, without ".npy", in archive order. */
  names(): string[] {
    return [...this.#entries.keys()];
  }

  /** Whether the archive holds `name`. */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** The `.npy` header of `name` (decompresses a deflated entry). */
  async info(name: string): Promise<NpyInfo> {
    return (await this.#read(name)).info;
  }

  /** Raw little-endian bytes of one array, with its header. */
  async array(name: string): Promise<{ info: NpyInfo; bytes: Uint8Array }> {
    return await this.#read(name);
  }

  /** One array converted to float32. */
  async float32(name: string): Promise<Float32Array> {
    const { info, bytes } = await this.#read(name);
    return toFloat32(bytes, info.dtype, this.path, name);
  }

  async #read(name: string): Promise<{ info: NpyInfo; bytes: Uint8Array }> {
    const e = this.#entries.get(name);
    if (!e) {
      throw new NpzError(
        this.path,
        `no such array in the archive (it has ${this.names().join(", ")})`,
        name,
      );
    }
    const raw = this.#bytes.subarray(e.dataStart, e.dataStart + e.compressedSize);
    const data = e.method === 0 ? raw : await inflate(this.path, name, raw, e.size);
    if (crc32(data) !== e.crc) {
      throw new NpzError(this.path, "CRC-32 mismatch: the archive is corrupt", name);
    }
    return parseNpy(this.path, name, data);
  }
}

/** Parses one `.npy` file's bytes: header validated, data exactly the header's shape and dtype. */
export function parseNpy(
  file: string,
  name: string,
  b: Uint8Array,
): { info: NpyInfo; bytes: Uint8Array } {
  const err = (msg: string) => new NpzError(file, msg, name);
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (b.length < 10 || magic.some((m, i) => b[i] !== m)) throw err("not a .npy array (bad magic)");
  const major = b[6];
  if (major < 1 || major > 3 || b[7] !== 0) throw err(`unsupported .npy version ${major}.${b[7]}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const pre = major === 1 ? 10 : 12;
  if (b.length < pre) throw err("truncated .npy header");
  const hlen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  if (hlen > MAX_NPY_HEADER) throw err(`.npy header of ${hlen} bytes exceeds ${MAX_NPY_HEADER}`);
  if (pre + hlen > b.length) throw err(`.npy header of ${hlen} bytes runs past the array's end`);
  let text: string;
  try {
    text = new TextDecoder(major === 3 ? "utf-8" : "latin1", { fatal: true }).decode(
      b.subarray(pre, pre + hlen),
    );
  } catch {
    throw err(".npy header is not valid text");
  }
  const h = parsePyDict(text);
  if (!h) throw err(`.npy header is not a dict literal: ${JSON.stringify(text.slice(0, 80))}`);
  const keys = Object.keys(h).sort().join(",");
  if (keys !== "descr,fortran_order,shape") {
    throw err(`.npy header has keys ${keys}, expected descr, fortran_order, shape`);
  }
  const { descr, fortran_order: fortran, shape } = h;
  if (typeof descr !== "string" || !(descr in DESCRS)) {
    throw err(
      `unsupported dtype ${JSON.stringify(descr)} (supported: ${Object.keys(DESCRS).join(", ")})`,
    );
  }
  if (typeof fortran !== "boolean") throw err("fortran_order is not True or False");
  if (fortran) throw err("Fortran-order arrays are not supported: save it in C order");
  if (!Array.isArray(shape)) throw err("shape is not a tuple of integers");
  const dtype = DESCRS[descr];
  const dataLen = b.length - pre - hlen;
  let count = shape.includes(0) ? 0 : 1;
  for (const d of count ? shape : []) {
    count *= d;
    if (count * DTYPE_BYTES[dtype] > dataLen) break;
  }
  if (count * DTYPE_BYTES[dtype] !== dataLen) {
    throw err(
      `shape (${shape.join(", ")}) of ${descr} needs ${
        shape.reduce((a, d) => a * d, DTYPE_BYTES[dtype])
      } bytes, the array holds ${dataLen}`,
    );
  }
  return { info: { name, descr, dtype, shape }, bytes: b.subarray(pre + hlen) };
}

/**
 * The subset of Python literal syntax `.npy` headers use: a dict with string keys and values that
 * are strings, True/False or tuples of non-negative integers. Returns null for anything else.
 */
function parsePyDict(s: string): Record<string, string | boolean | number[]> | null {
  let i = 0;
  const ws = () => {
    while (i < s.length && " \t\n\r".includes(s[i])) i++;
  };
  const str = (): string | null => {
    const q = s[i];
    if (q !== "'" && q !== '"') return null;
    const end = s.indexOf(q, i + 1);
    if (end < 0) return null;
    const v = s.slice(i + 1, end);
    if (v.includes("\\")) return null;
    i = end + 1;
    return v;
  };
  const value = (): string | boolean | number[] | null => {
    if (s.startsWith("True", i)) return (i += 4, true);
    if (s.startsWith("False", i)) return (i += 5, false);
    if (s[i] !== "(") return str();
    i++;
    const out: number[] = [];
    for (;;) {
      ws();
      if (s[i] === ")") return (i++, out);
      const m = /^\d{1,15}/.exec(s.slice(i, i + 16));
      if (!m) return null;
      out.push(Number(m[0]));
      i += m[0].length;
      ws();
      if (s[i] === ",") i++;
      else if (s[i] !== ")") return null;
    }
  };
  const out: Record<string, string | boolean | number[]> = {};
  ws();
  if (s[i++] !== "{") return null;
  for (;;) {
    ws();
    if (s[i] === "}") break;
    const k = str();
    if (k === null || k in out) return null;
    ws();
    if (s[i++] !== ":") return null;
    ws();
    const v = value();
    if (v === null) return null;
    out[k] = v;
    ws();
    if (s[i] === ",") i++;
    else if (s[i] !== "}") return null;
  }
  i++;
  ws();
  return i === s.length ? out : null;
}

/** Validates the zip structure: EOCD (and zip64), central directory, local headers. */
function parseZip(file: string, b: Uint8Array): Map<string, Entry> {
  const err = (msg: string, name?: string) => new NpzError(file, msg, name);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number, what: string): number => {
    const v = dv.getBigUint64(o, true);
    if (v > BigInt(b.length)) throw err(`zip64 ${what} ${v} is beyond the ${b.length}-byte file`);
    return Number(v);
  };
  // End of central directory: the last record whose comment reaches exactly the end of the file.
  let eocd = -1;
  for (let p = b.length - 22; p >= Math.max(0, b.length - 22 - 65535); p--) {
    if (u32(p) === 0x06054b50 && p + 22 + u16(p + 20) === b.length) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) {
    throw err(`not a zip archive: no end-of-central-directory record in ${b.length} bytes`);
  }
  if (u16(eocd + 4) !== 0 || u16(eocd + 6) !== 0 || u16(eocd + 8) !== u16(eocd + 10)) {
    throw err("multi-disk zip archives are not supported");
  }
  let count = u16(eocd + 10), cdSize = u32(eocd + 12), cdOffset = u32(eocd + 16);
  let cdLimit = eocd;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || u32(loc) !== 0x07064b50) throw err("zip64 end-of-directory locator missing");
    const z = u64(loc + 8, "end-of-directory offset");
    if (z + 56 > loc || u32(z) !== 0x06064b50) {
      throw err("zip64 end-of-central-directory record missing");
    }
    if (u32(z + 16) !== 0 || u32(z + 20) !== 0) {
      throw err("multi-disk zip archives are not supported");
    }
    count = u64(z + 32, "entry count");
    cdSize = u64(z + 40, "central directory size");
    cdOffset = u64(z + 48, "central directory offset");
    cdLimit = z;
  }
  if (cdOffset + cdSize > cdLimit) {
    throw err(`central directory (${cdSize} bytes at ${cdOffset}) runs past its end record`);
  }
  if (count * 46 > cdSize) throw err(`${count} entries cannot fit a ${cdSize}-byte directory`);
  const entries = new Map<string, Entry>();
  const ranges: [number, number, string][] = [];
  let p = cdOffset;
  const end = cdOffset + cdSize;
  for (let k = 0; k < count; k++) {
    if (p + 46 > end || u32(p) !== 0x02014b50) {
      throw err(`central directory entry ${k} is malformed`);
    }
    const flags = u16(p + 8), method = u16(p + 10), crc = u32(p + 16);
    let csize = u32(p + 20), size = u32(p + 24), local = u32(p + 42);
    const nlen = u16(p + 28), xlen = u16(p + 30), clen = u16(p + 32);
    if (p + 46 + nlen + xlen + clen > end) {
      throw err(`central directory entry ${k} runs past its end`);
    }
    let full: string;
    try {
      full = new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(p + 46, p + 46 + nlen));
    } catch {
      throw err(`entry ${k}'s name is not valid UTF-8`);
    }
    if (!full.endsWith(".npy") || full.length < 5) {
      throw err(`entry "${full}" is not a .npy array (an .npz holds only .npy files)`);
    }
    const name = full.slice(0, -4);
    if (entries.has(name)) throw err("the archive holds this array twice", name);
    if (flags & 0x41) throw err("encrypted entries are not supported", name);
    if (method !== 0 && method !== 8) {
      throw err(`compression method ${method} is not supported (stored or deflate only)`, name);
    }
    // Zip64 extra field: the 64-bit values of the fields saturated at 0xffffffff, in this order.
    if (csize === 0xffffffff || size === 0xffffffff || local === 0xffffffff) {
      let x = p + 46 + nlen, found = false;
      const xend = x + xlen;
      while (x + 4 <= xend) {
        const id = u16(x), len = u16(x + 2);
        if (x + 4 + len > xend) break;
        if (id === 1) {
          let q = x + 4;
          const take = (what: string): number => {
            if (q + 8 > x + 4 + len) throw err(`zip64 extra field lacks the ${what}`, name);
            const v = u64(q, what);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = take("size");
          if (csize === 0xffffffff) csize = take("compressed size");
          if (local === 0xffffffff) local = take("header offset");
          found = true;
          break;
        }
        x += 4 + len;
      }
      if (!found) throw err("sizes of 0xffffffff without a zip64 extra field", name);
    }
    if (local + 30 > cdOffset || u32(local) !== 0x04034b50) {
      throw err(`local header at ${local} is missing or past the central directory`, name);
    }
    const lnlen = u16(local + 26), lxlen = u16(local + 28);
    const dataStart = local + 30 + lnlen + lxlen;
    if (
      lnlen !== nlen || u16(local + 8) !== method ||
      b.subarray(local + 30, local + 30 + nlen).some((c, i) => c !== b[p + 46 + i])
    ) {
      throw err("local header disagrees with the central directory (name or method)", name);
    }
    if (dataStart + csize > cdOffset) {
      throw err(`data (${csize} bytes at ${dataStart}) runs into the central directory`, name);
    }
    if (method === 0 && csize !== size) {
      throw err(`stored entry has compressed size ${csize} != size ${size}`, name);
    }
    if (method === 8 && size > csize * MAX_DEFLATE_RATIO + 64) {
      throw err(`declared size ${size} is more than deflate can expand ${csize} bytes to`, name);
    }
    entries.set(name, { name, method, crc, compressedSize: csize, size, dataStart });
    ranges.push([local, dataStart + csize, name]);
    p += 46 + nlen + xlen + clen;
  }
  if (p !== end) throw err(`central directory holds ${end - p} bytes after its ${count} entries`);
  ranges.sort((a, c) => a[0] - c[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) {
      throw err(`entries ${ranges[i - 1][2]} and ${ranges[i][2]} overlap`, ranges[i][2]);
    }
  }
  return entries;
}

/** Inflates raw deflate data, refusing output beyond `size` bytes or short of it. */
async function inflate(
  file: string,
  name: string,
  raw: Uint8Array,
  size: number,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const ds = new DecompressionStream("deflate-raw");
  const writer = ds.writable.getWriter();
  const reader = ds.readable.getReader();
  const write = writer.write(raw as Uint8Array<ArrayBuffer>).then(() => writer.close()).catch(
    () => {},
  );
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > size) {
        throw new NpzError(file, `deflated data expands beyond its declared ${size} bytes`, name);
      }
      chunks.push(value);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    await write;
    if (e instanceof NpzError) throw e;
    throw new NpzError(file, `corrupt deflate data (${(e as Error).message})`, name);
  }
  await write;
  if (total !== size) {
    throw new NpzError(
      file,
      `deflated data expands to ${total} bytes, not the declared ${size}`,
      name,
    );
  }
  const out = new Uint8Array(size);
  let o = 0;
  for (const c of chunks) out.set(c, (o += c.length) - c.length);
  return out;
}

let CRC_TABLE: Uint32Array | null = null;

/** CRC-32 (the zip polynomial) of `b`. */
function crc32(b: Uint8Array): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  const t = CRC_TABLE;
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = t[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
