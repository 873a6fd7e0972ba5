// Writes .npy arrays and .npz archives (stored or deflated, optionally with zip64 records) for the
// npz reader's tests and fuzz target: the layout NumPy's np.savez / np.savez_compressed writes.

/** One array to write: NumPy dtype string, shape and raw little-endian bytes. */
export interface NpyToWrite {
  name: string;
  descr: string;
  shape: number[];
  data: Uint8Array;
  /** Replaces the header dict (for malformed headers). */
  header?: string;
}

/** A .npy file (version 1.0), its header padded to 64 bytes as NumPy pads it. */
export function npyBytes(a: NpyToWrite): Uint8Array {
  const shape = a.shape.length === 1 ? `(${a.shape[0]},)` : `(${a.shape.join(", ")})`;
  let h = a.header ?? `{'descr': '${a.descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  while ((10 + h.length + 1) % 64) h += " ";
  h += "\n";
  const out = new Uint8Array(10 + h.length + a.data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, h.length, true);
  for (let i = 0; i < h.length; i++) out[10 + i] = h.charCodeAt(i);
  out.set(a.data, 10 + h.length);
  return out;
}

/** CRC-32 as zip computes it. */
export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

async function deflateRaw(b: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([b as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/**
 * An .npz archive of `arrays`. `deflate`: compress (np.savez_compressed); `zip64`: sizes and
 * offsets in zip64 extra fields and a zip64 end record, as zipfile writes for large archives.
 */
export async function npzBytes(
  arrays: NpyToWrite[],
  opts: { deflate?: boolean; zip64?: boolean } = {},
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [], central: Uint8Array[] = [];
  let off = 0;
  for (const a of arrays) {
    const raw = npyBytes(a);
    const body = opts.deflate ? await deflateRaw(raw) : raw;
    const name = new TextEncoder().encode(`${a.name}.npy`);
    const crc = crc32(raw);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, opts.deflate ? 8 : 0, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, raw.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const x64 = opts.zip64 ? 28 : 0;
    const cd = new Uint8Array(46 + name.length + x64);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 45, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, opts.deflate ? 8 : 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, opts.zip64 ? 0xffffffff : body.length, true);
    cv.setUint32(24, opts.zip64 ? 0xffffffff : raw.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, x64, true);
    cv.setUint32(42, opts.zip64 ? 0xffffffff : off, true);
    cd.set(name, 46);
    if (opts.zip64) {
      const x = 46 + name.length;
      cv.setUint16(x, 1, true);
      cv.setUint16(x + 2, 24, true);
      cv.setBigUint64(x + 4, BigInt(raw.length), true);
      cv.setBigUint64(x + 12, BigInt(body.length), true);
      cv.setBigUint64(x + 20, BigInt(off), true);
    }
    parts.push(local, body);
    central.push(cd);
    off += local.length + body.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const tail = new Uint8Array((opts.zip64 ? 56 + 20 : 0) + 22);
  const tv = new DataView(tail.buffer);
  let t = 0;
  if (opts.zip64) {
    tv.setUint32(0, 0x06064b50, true);
    tv.setBigUint64(4, 44n, true);
    tv.setUint16(12, 45, true);
    tv.setUint16(14, 45, true);
    tv.setBigUint64(24, BigInt(arrays.length), true);
    tv.setBigUint64(32, BigInt(arrays.length), true);
    tv.setBigUint64(40, BigInt(cdSize), true);
    tv.setBigUint64(48, BigInt(off), true);
    tv.setUint32(56, 0x07064b50, true);
    tv.setBigUint64(64, BigInt(off + cdSize), true);
    tv.setUint32(72, 1, true);
    t = 76;
  }
  tv.setUint32(t, 0x06054b50, true);
  tv.setUint16(t + 8, opts.zip64 ? 0xffff : arrays.length, true);
  tv.setUint16(t + 10, opts.zip64 ? 0xffff : arrays.length, true);
  tv.setUint32(t + 12, opts.zip64 ? 0xffffffff : cdSize, true);
  tv.setUint32(t + 16, opts.zip64 ? 0xffffffff : off, true);
  const all = [...parts, ...central, tail];
  const out = new Uint8Array(all.reduce((s, c) => s + c.length, 0));
  let o = 0;
  for (const c of all) out.set(c, (o += c.length) - c.length);
  return out;
}

/** float32 values as little-endian bytes. */
export function f32(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}
