// Strict .npz reader: round trips (stored, deflated, zip64), the Gemma Scope reference file,
// every malformed case a hostile file can present (the seeded fuzz is in fuzz_test.ts).
import assert from "node:assert/strict";
import { NpzError } from "../mod.ts";
import { NpzFile } from "../src/io/npz.ts";
import { f32, type NpyToWrite, npzBytes } from "./_npz.ts";

const REF = new URL("./reference/", import.meta.url).pathname;

const ARRAYS: NpyToWrite[] = [
  { name: "W", descr: "<f4", shape: [2, 3], data: f32([1, -2, 3.5, 4, 5, -6]) },
  {
    name: "d",
    descr: "<f8",
    shape: [2],
    data: new Uint8Array(new Float64Array([0.25, -1e10]).buffer),
  },
  {
    name: "i",
    descr: "<i8",
    shape: [3],
    data: new Uint8Array(new BigInt64Array([1n, -2n, 3n]).buffer),
  },
  { name: "m", descr: "|b1", shape: [], data: new Uint8Array([1]) },
  { name: "e", descr: "<f4", shape: [4, 0], data: new Uint8Array(0) },
]; // deno-fmt-ignore

for (const opts of [{}, { deflate: true }, { zip64: true }, { deflate: true, zip64: true }]) {
  Deno.test(`npz round trip ${JSON.stringify(opts)}: names, shapes, dtypes and values`, async () => {
    const npz = NpzFile.fromBytes("t.npz", await npzBytes(ARRAYS, opts));
    assert.deepEqual(npz.names(), ["W", "d", "i", "m", "e"]);
    assert.deepEqual((await npz.info("W")).shape, [2, 3]);
    assert.deepEqual(await npz.float32("W"), new Float32Array([1, -2, 3.5, 4, 5, -6]));
    assert.deepEqual(await npz.float32("d"), new Float32Array([0.25, -1e10]));
    assert.deepEqual(await npz.float32("i"), new Float32Array([1, -2, 3]));
    assert.deepEqual(await npz.float32("m"), new Float32Array([1]));
    assert.deepEqual((await npz.info("m")).shape, []);
    assert.deepEqual((await npz.info("e")).shape, [4, 0]);
    assert.equal((await npz.float32("e")).length, 0);
  });
}

Deno.test("npz: Gemma Scope's params.npz as NumPy wrote it (zip64 local headers)", async () => {
  const npz = await NpzFile.open(
    `${REF}gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post/params.npz`,
  );
  assert.deepEqual(npz.names(), ["W_enc", "W_dec", "b_enc", "b_dec", "threshold"]);
  assert.deepEqual((await npz.info("W_enc")).shape, [64, 128]);
  assert.deepEqual((await npz.info("W_dec")).shape, [128, 64]);
  assert.equal((await npz.info("threshold")).descr, "<f4");
  assert.ok((await npz.float32("threshold")).every((v) => v > 0));
});

/** Offsets of the first array's fields in an archive built by npzBytes without zip64. */
function firstLocal(b: Uint8Array): { cd: number; eocd: number; data: number } {
  const dv = new DataView(b.buffer);
  const eocd = b.length - 22;
  return { cd: dv.getUint32(eocd + 16, true), eocd, data: 30 + dv.getUint16(26, true) };
}

type Case = [string, (b: Uint8Array, dv: DataView) => Uint8Array | void, RegExp, string?];

const CASES: Case[] = [
  ["empty file", () => new Uint8Array(0), /no end-of-central-directory/],
  ["truncated", (b) => b.slice(0, b.length >> 1), /no end-of-central-directory/],
  ["central directory offset past the end", (b, dv) => {
    dv.setUint32(b.length - 22 + 16, 0x7fffffff, true);
  }, /runs past its end record/],
  ["entry count beyond the directory", (b, dv) => {
    dv.setUint16(b.length - 22 + 8, 60000, true), dv.setUint16(b.length - 22 + 10, 60000, true);
  }, /cannot fit/],
  [
    "data offset inside the directory",
    (b, dv) => {
      dv.setUint32(firstLocal(b).cd + 42, firstLocal(b).cd - 10, true);
    },
    /local header at .* missing/,
    "W",
  ],
  [
    "size runs into the directory",
    (b, dv) => {
      const { cd } = firstLocal(b);
      dv.setUint32(cd + 20, 1 << 20, true), dv.setUint32(cd + 24, 1 << 20, true);
    },
    /runs into the central directory/,
    "W",
  ],
  ["entries overlap", (b, dv) => {
    const { cd, data } = firstLocal(b);
    const size = dv.getUint32(cd + 20, true) + 40;
    dv.setUint32(cd + 20, size, true), dv.setUint32(cd + 24, size, true);
    void data;
  }, /overlap/],
  [
    "CRC mismatch",
    (b) => {
      b[firstLocal(b).data + 80] ^= 1; // a value byte of W
    },
    /CRC-32 mismatch/,
    "W",
  ],
  [
    "unsupported method",
    (b, dv) => {
      dv.setUint16(firstLocal(b).cd + 10, 12, true), dv.setUint16(8, 12, true);
    },
    /compression method 12/,
    "W",
  ],
  [
    "encrypted",
    (b, dv) => {
      dv.setUint16(firstLocal(b).cd + 8, 1, true);
    },
    /encrypted/,
    "W",
  ],
  [
    "local name differs",
    (b) => {
      b[30] = 0x58;
    },
    /local header disagrees/,
    "W",
  ],
  ["not a .npy member", (b) => {
    const { cd } = firstLocal(b);
    b[cd + 46 + 2] = 0x78, b[30 + 2] = 0x78; // "W.npy" -> "W.xpy"
  }, /not a \.npy array/],
  [
    "duplicate array",
    (b) => {
      const { cd } = firstLocal(b);
      const dv = new DataView(b.buffer);
      const second = cd + 46 + dv.getUint16(cd + 28, true);
      b[second + 46] = 0x57; // "d.npy" -> "W.npy" in the directory
    },
    /twice/,
    "W",
  ],
  [
    "bad .npy magic",
    (b) => {
      b[firstLocal(b).data + 1] = 0;
    },
    /bad magic|CRC/,
    "W",
  ],
];

for (const [what, edit, re, arr] of CASES) {
  Deno.test(`npz hostile: ${what} gives an NpzError naming the file`, async () => {
    const b = await npzBytes(ARRAYS.slice(0, 3));
    const out = edit(b, new DataView(b.buffer)) ?? b;
    await assert.rejects(
      async () => {
        const npz = NpzFile.fromBytes("/x/params.npz", out);
        for (const n of npz.names()) await npz.float32(n);
      },
      (e: unknown) => {
        assert.ok(e instanceof NpzError, `${(e as Error).name}: ${(e as Error).message}`);
        assert.match(e.message, re);
        assert.ok(e.message.startsWith("/x/params.npz"), e.message);
        if (arr) assert.equal(e.field, arr, e.message);
        return true;
      },
    );
  });
}

const HEADERS: [string, Partial<NpyToWrite>, RegExp][] = [
  [
    "Fortran order",
    { header: "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }" },
    /Fortran/,
  ],
  [
    "big-endian",
    { header: "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }" },
    /unsupported dtype ">f4"/,
  ],
  [
    "object dtype",
    { header: "{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }" },
    /unsupported dtype/,
  ],
  ["shape too large", { shape: [2, 4] }, /needs 32 bytes, the array holds 24/],
  ["shape too small", { shape: [5] }, /needs 20 bytes/],
  ["huge shape", { shape: [2 ** 40, 2 ** 40] }, /the array holds 24/],
  [
    "negative dim",
    { header: "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }" },
    /not a dict literal/,
  ],
  [
    "extra key",
    { header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}" },
    /not a dict literal/,
  ],
  ["missing key", { header: "{'descr': '<f4', 'shape': (2, 3), }" }, /keys descr,shape/],
  ["not a dict", { header: "__import__('os')" }, /not a dict literal/],
]; // deno-fmt-ignore

for (const [what, patch, re] of HEADERS) {
  Deno.test(`npz hostile .npy header: ${what}`, async () => {
    for (const deflate of [false, true]) {
      const b = await npzBytes([{ ...ARRAYS[0], ...patch }], { deflate });
      const npz = NpzFile.fromBytes("/x/p.npz", b);
      await assert.rejects(
        () => npz.float32("W"),
        (e: unknown) => e instanceof NpzError && e.field === "W" && re.test(e.message),
      );
    }
  });
}

Deno.test("npz hostile deflate: bombs, short and corrupt streams are refused", async () => {
  const big = { name: "z", descr: "<f4", shape: [1 << 16], data: new Uint8Array(1 << 18) };
  const b = await npzBytes([big], { deflate: true });
  const { cd } = firstLocal(b);
  const dv = new DataView(b.buffer);
  const csize = dv.getUint32(cd + 20, true), size = dv.getUint32(cd + 24, true);
  assert.ok(size > 100 * csize, "zeros compress well");
  const variants: [string, (c: Uint8Array, v: DataView) => void, RegExp][] = [
    [
      "declared beyond deflate's ratio",
      (_c, v) => v.setUint32(cd + 24, csize * 2000, true),
      /more than deflate can expand/,
    ],
    [
      "expands beyond its declared size",
      (_c, v) => v.setUint32(cd + 24, size - 100, true),
      /beyond its declared/,
    ],
    [
      "expands short of its declared size",
      (_c, v) => v.setUint32(cd + 24, size + 100, true),
      /not the declared/,
    ],
    ["corrupt stream", (c) => c.fill(0xff, 40, 60), /corrupt deflate data|not the declared|CRC/],
  ]; // deno-fmt-ignore
  for (const [what, edit, re] of variants) {
    const c = b.slice();
    edit(c, new DataView(c.buffer));
    await assert.rejects(
      async () => await NpzFile.fromBytes("/x/p.npz", c).float32("z"),
      (e: unknown) => e instanceof NpzError && re.test(e.message),
      what,
    );
  }
});
