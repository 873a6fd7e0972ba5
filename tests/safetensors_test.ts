// Strict safetensors: round trip, every malformed case, a seeded fuzz, and the reference files.
import assert from "node:assert/strict";
import {
  encodeSafetensors,
  SafetensorsFile,
  type StDtype,
  writeSafetensors,
} from "../src/io/safetensors.ts"; // deno-fmt-ignore
import { SafetensorsError } from "../src/errors.ts";
import { rng } from "./_util.ts";

const REF = new URL("./reference/", import.meta.url).pathname;

function sample(): Uint8Array {
  return encodeSafetensors({
    "a.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array([1, -2, 3.5, 4, 5, 6]) },
    b: { dtype: "I64", shape: [3], data: new BigInt64Array([1n, -7n, 2147483647n]) },
    c: { dtype: "F16", shape: [2], data: new Uint16Array([0x3c00, 0xc000]) }, // 1, -2
    d: { dtype: "BF16", shape: [1], data: new Uint16Array([0x3fc0]) }, // 1.5
    e: { dtype: "U8", shape: [0], data: new Uint8Array(0) },
  }, { format: "pt" });
}

/** Builds a file from a raw header object and data bytes. */
function raw(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("round trip writer -> reader is exact for every dtype", async () => {
  const dtypes: [StDtype, ArrayBufferView][] = [
    ["F64", new Float64Array([1.25, -1e300])],
    ["F32", new Float32Array([Math.PI, -0])],
    ["F16", new Uint16Array([0x3555, 0x7bff])],
    ["BF16", new Uint16Array([0x4049, 0xc2f7])],
    ["I64", new BigInt64Array([-(2n ** 40n), 5n])],
    ["I32", new Int32Array([-5, 2 ** 31 - 1])],
    ["I16", new Int16Array([-32768, 7])],
    ["I8", new Int8Array([-128, 127])],
    ["U8", new Uint8Array([0, 255])],
    ["BOOL", new Uint8Array([1, 0])],
  ];
  const tensors = Object.fromEntries(
    dtypes.map(([d, data]) => [`t_${d}`, { dtype: d, shape: [2], data }]),
  );
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  await writeSafetensors(path, tensors, { note: "x" });
  using f = await SafetensorsFile.open(path);
  assert.deepEqual(f.header.metadata, { note: "x" });
  for (const [d, data] of dtypes) {
    const bytes = await f.bytes(`t_${d}`);
    assert.deepEqual(bytes, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  assert.deepEqual([...await f.float32("t_F64")], [1.25, -Infinity]);
  assert.deepEqual([...await f.int32("t_I16")], [-32768, 7]);
  await assert.rejects(() => f.int32("t_I64"), /does not fit int32/);
  await Deno.remove(path);
});

Deno.test("dtype conversion to float32 and int32", async () => {
  const f = SafetensorsFile.fromBytes("mem", sample());
  assert.deepEqual([...await f.float32("a.weight")], [1, -2, 3.5, 4, 5, 6]);
  assert.deepEqual([...await f.int32("b")], [1, -7, 2147483647]);
  assert.deepEqual([...await f.float32("c")], [1, -2]);
  assert.deepEqual([...await f.float32("d")], [1.5]);
  assert.deepEqual([...await f.float32("e")], []);
  assert.throws(
    () => f.info("nope"),
    (e) => e instanceof SafetensorsError && /mem \[nope\]/.test(e.message),
  );
});

Deno.test("every malformed header gets a typed error naming the file and tensor", () => {
  const d8 = new Uint8Array(8);
  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const cases: [string, Uint8Array, RegExp][] = [
    ["too short", new Uint8Array(5), /too short/],
    [
      "length past end",
      (() => {
        const b = raw({ x: ok }, d8);
        new DataView(b.buffer).setBigUint64(0, 1000n, true);
        return b;
      })(),
      /past the end/,
    ],
    [
      "length over limit",
      (() => {
        const b = raw({ x: ok }, d8);
        new DataView(b.buffer).setBigUint64(0, 2n ** 40n, true);
        return b;
      })(),
      /limit/,
    ],
    ["not JSON", raw(null, d8, "{nope"), /not valid JSON/],
    ["not object", raw([1, 2], d8), /not a JSON object/],
    ["unknown dtype", raw({ x: { ...ok, dtype: "F8" } }, d8), /\[x\].*unknown dtype/],
    ["negative shape", raw({ x: { ...ok, shape: [-2] } }, d8), /\[x\].*non-negative/],
    ["float shape", raw({ x: { ...ok, shape: [1.5] } }, d8), /\[x\].*non-negative/],
    [
      "offsets out of range",
      raw({ x: { ...ok, data_offsets: [0, 16] } }, d8),
      /\[x\].*out of range/,
    ],
    ["offsets reversed", raw({ x: { ...ok, data_offsets: [8, 0] } }, d8), /\[x\].*out of range/],
    ["byte length mismatch", raw({ x: { ...ok, shape: [3] } }, d8), /\[x\].*byte length/],
    [
      "overlap",
      raw({
        x: { ...ok, shape: [1], data_offsets: [0, 4] },
        y: { ...ok, shape: [1], data_offsets: [2, 6] },
      }, d8),
      /overlaps|gap/,
    ],
    ["gap", raw({ x: { ...ok, shape: [1], data_offsets: [4, 8] } }, d8), /\[x\].*gap/],
    ["trailing bytes", raw({ x: { ...ok, shape: [1], data_offsets: [0, 4] } }, d8), /trailing/],
    [
      "duplicate names",
      raw(null, d8, `{"x":${JSON.stringify(ok)},"x":${JSON.stringify(ok)}}`),
      /duplicate key/,
    ],
    ["__proto__ key", raw(null, d8, `{"__proto__":${JSON.stringify(ok)}}`), /forbidden key/],
    ["bad metadata", raw({ __metadata__: { a: 1 }, x: ok }, d8), /__metadata__/],
    [
      "not UTF-8",
      (() => {
        const b = raw({ x: ok }, d8);
        b[9] = 0xff;
        return b;
      })(),
      /UTF-8/,
    ],
  ]; // deno-fmt-ignore
  for (const [what, bytes, re] of cases) {
    assert.throws(
      () => SafetensorsFile.fromBytes("bad.safetensors", bytes),
      (e) => e instanceof SafetensorsError && /^bad\.safetensors/.test(e.message) && re.test(e.message),
      what,
    );
  }
  // Keys in any order are fine: the data just has to tile exactly when sorted by offset.
  const swapped = raw({
    y: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
    x: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
  }, d8);
  assert.deepEqual(SafetensorsFile.fromBytes("ok", swapped).names(), ["y", "x"]);
});

Deno.test("seeded fuzz: 3000 mutated files give only typed errors, quickly", async () => {
  const base = sample();
  const r = rng(42);
  const start = performance.now();
  let ok = 0, typed = 0;
  for (let iter = 0; iter < 3000; iter++) {
    let b: Uint8Array = base.slice();
    const kind = iter % 4;
    if (kind === 0) {
      for (let k = 0; k < 1 + Math.floor(r() * 4); k++) {
        b[Math.floor(r() * b.length)] ^= 1 << Math.floor(r() * 8);
      }
    } else if (kind === 1) {
      b = b.slice(0, Math.floor(r() * b.length));
    } else if (kind === 2) {
      const hl = Number(new DataView(b.buffer).getBigUint64(0, true));
      const text = new TextDecoder().decode(b.subarray(8, 8 + hl));
      const i = Math.floor(r() * text.length);
      const edits = ["", "9", "-", '"', "{", "]", ",", "1e999", "null", '"F64"', "[4294967296]"];
      const t2 = text.slice(0, i) + edits[Math.floor(r() * edits.length)] +
        text.slice(i + 1 + Math.floor(r() * 3));
      b = raw(null, b.subarray(8 + hl), t2);
    } else {
      new DataView(b.buffer).setBigUint64(0, BigInt(Math.floor(r() * 2 ** 31)), true);
    }
    try {
      const f = SafetensorsFile.fromBytes("fuzz", b);
      for (const n of f.names()) {
        const info = f.info(n);
        if (info.dtype.startsWith("I") || info.dtype === "U8" || info.dtype === "BOOL") {
          await f.int32(n).catch((e) => {
            if (!(e instanceof SafetensorsError)) throw e;
          });
        } else await f.float32(n);
      }
      ok++;
    } catch (e) {
      assert.ok(e instanceof SafetensorsError, `iteration ${iter}: ${e}`);
      typed++;
    }
  }
  assert.ok(typed > 1000, `only ${typed} mutations were rejected`);
  assert.ok(performance.now() - start < 20000);
  console.log(`fuzz: ${typed} typed errors, ${ok} still-valid files`);
}); // deno-fmt-ignore

Deno.test("reads the reference files (HF layout with metadata, int64 tokens)", async () => {
  using m = await SafetensorsFile.open(`${REF}gpt2_tiny/hf/model.safetensors`);
  assert.equal(m.header.metadata.format, "pt");
  assert.deepEqual(m.info("transformer.wte.weight").shape, [1000, 64]);
  using t = await SafetensorsFile.open(`${REF}gpt2_tiny/tl_raw.safetensors`);
  const toks = await t.int32("tokens");
  assert.equal(toks.length, 24);
  assert.ok(toks.every((v) => v >= 0 && v < 1000));
});
