// Transcoders (SAELens's Transcoder, SkipTranscoder, JumpReLUTranscoder) against SAELens's own
// outputs (io.safetensors: pre-activations, encode, decode of encode, forward) and a float64 CPU
// computation from the same weights, with the GPU pool poisoned (NaN) first.
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError, DisposedError, SAE, ShapeError, Tensor, WeightsError } from "../mod.ts";
import { Transcoder } from "../src/sae/transcoder.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr, poisonPool, randArray } from "./_util.ts";

const REF = new URL("./reference/sae_training/transcoders/", import.meta.url).pathname;
const TOL = 1e-4;

/** float64 forward from the stored weights: pre, acts, decode(acts), forward (with skip). */
async function f64(dir: string, x: ArrayLike<number>, rows: number) {
  using f = await SafetensorsFile.open(join(dir, "sae_weights.safetensors"));
  // One read at a time: a SafetensorsFile seeks its one file handle per read.
  const ws: (Float32Array | null)[] = [];
  for (const n of ["W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"]) {
    ws.push(f.has(n) ? await f.float32(n) : null);
  }
  const [We, be, Wd, bd, th, Ws] = ws;
  const [dIn, dSae] = f.info("W_enc").shape, dOut = f.info("W_dec").shape[1];
  const pre = new Float64Array(rows * dSae), acts = new Float64Array(rows * dSae);
  const dec = new Float64Array(rows * dOut), fwd = new Float64Array(rows * dOut);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dSae; j++) {
      let s = be![j];
      for (let i = 0; i < dIn; i++) s += x[r * dIn + i] * We![i * dSae + j];
      pre[r * dSae + j] = s;
      acts[r * dSae + j] = s > 0 && (!th || s > th[j]) ? s : 0;
    }
    for (let o = 0; o < dOut; o++) {
      let s = bd![o];
      for (let j = 0; j < dSae; j++) s += acts[r * dSae + j] * Wd![j * dOut + o];
      dec[r * dOut + o] = s;
      let k = 0;
      if (Ws) { for (let i = 0; i < dIn; i++) k += x[r * dIn + i] * Ws[o * dIn + i]; }
      fwd[r * dOut + o] = s + k;
    }
  }
  return { pre, acts, dec, fwd, threshold: th };
}

for (const name of ["transcoder", "skip_transcoder", "jumprelu_transcoder"]) {
  Deno.test(`${name}: encode, decode and forward match SAELens and a float64 computation`, async () => {
    const dir = `${REF}${name}`;
    using tc = await Transcoder.load(dir, {
      hookName: "blocks.0.ln2.hook_normalized",
      hookNameOut: "blocks.0.hook_mlp_out",
    });
    assert.equal(tc.cfg.architecture, name);
    assert.deepEqual([tc.cfg.dIn, tc.cfg.dSae, tc.cfg.dOut], [16, 32, 16]);
    assert.equal(tc.cfg.hookNameOut, "blocks.0.hook_mlp_out");
    using io = await SafetensorsFile.open(`${dir}/io.safetensors`);
    const x = await io.float32("x");
    const rows = io.info("x").shape[0];
    const ref = await f64(dir, x, rows);

    poisonPool(rows * 32 * 4, 6);
    using tx = Tensor.from(x, [rows, 16]);
    using pre = await tc.preActivations(tx);
    using acts = await tc.encode(tx);
    using dec = await tc.decode(acts);
    using fwd = await tc.forward(tx);
    assert.deepEqual(fwd.shape, [rows, 16]);
    const got = {
      pre: await pre.toArray(),
      acts: await acts.toArray(),
      dec: await dec.toArray(),
      fwd: await fwd.toArray(),
    };
    // JumpReLU: entries within 1e-5 of the threshold may flip; excluded and counted.
    const keep = Array.from(ref.pre.keys()).filter((i) =>
      !ref.threshold || Math.abs(ref.pre[i] - ref.threshold[i % 32]) >= 1e-5
    );
    const pick = (a: ArrayLike<number>) => keep.map((i) => a[i]);
    if (ref.threshold) {
      console.log(
        `${name}: ${ref.pre.length - keep.length} of ${ref.pre.length} at the threshold excluded`,
      );
    }
    assert.ok(
      ref.pre.length - keep.length < 3,
      `${ref.pre.length - keep.length} entries at the threshold`,
    );
    for (
      const [label, mine, f, sl] of [
        ["hidden_pre", got.pre, ref.pre, "hidden_pre"],
        ["encode", pick(got.acts), pick(ref.acts), "encode"],
        ["decode", got.dec, ref.dec, "decode_of_encode"],
        ["forward", got.fwd, ref.fwd, "forward"],
      ] as const
    ) {
      const saelens = await io.float32(sl);
      const s = label === "encode" ? pick(saelens) : saelens;
      assert.ok(maxRelErr(mine, f) < TOL, `${label} vs float64: ${maxRelErr(mine, f)}`);
      assert.ok(maxRelErr(mine, s) < TOL, `${label} vs SAELens: ${maxRelErr(mine, s)}`);
    }
    // The references exercise what they should: some latents off, some on; the skip term matters.
    assert.ok(ref.acts.some((v) => v > 0) && ref.acts.some((v) => v === 0));
    if (name === "skip_transcoder") {
      assert.ok(maxRelErr(ref.dec, ref.fwd) > 1e-3, "skip term is non-zero");
    }
    if (name === "jumprelu_transcoder") {
      assert.ok(
        Array.from(ref.pre).some((v, i) => v > 0 && ref.acts[i] === 0),
        "a threshold zeroes a positive pre-activation",
      );
    }
    // Leading dims pass through: [2, rows/2, d_in] -> [2, rows/2, d_out].
    using t3 = Tensor.from(x, [2, rows / 2, 16]);
    using y3 = await tc.forward(t3);
    assert.deepEqual(y3.shape, [2, rows / 2, 16]);
    assert.ok(maxRelErr(await y3.toArray(), ref.fwd) < TOL);
  });
} // deno-fmt-ignore

Deno.test("transcoders: bad inputs and files are typed errors naming what is wrong", async () => {
  using tc = await Transcoder.load(`${REF}transcoder`);
  assert.equal(tc.cfg.hookName, null, "this cfg.json names no hook");
  using bad = Tensor.from(randArray(12, 1), [1, 12]);
  await assert.rejects(() => tc.forward(bad), (e) => e instanceof ShapeError && /does not end in 16/.test(e.message));
  // Used after dispose: a typed error, not a crash in a kernel launch.
  const gone = await Transcoder.load(`${REF}transcoder`);
  gone.dispose();
  using ok = Tensor.from(randArray(16, 2), [1, 16]);
  await assert.rejects(() => gone.encode(ok), (e) => e instanceof DisposedError && /Transcoder\.load/.test(e.message));
  // SAE.load points at Transcoder for a transcoder directory.
  await assert.rejects(() => SAE.load(`${REF}transcoder`), (e) => e instanceof ConfigError && /Transcoder\.load/.test(e.message));
  // A skip transcoder without W_skip, and an SAE directory loaded as a transcoder.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(`${REF}skip_transcoder/cfg.json`, join(dir, "cfg.json"));
    await Deno.copyFile(`${REF}transcoder/sae_weights.safetensors`, join(dir, "sae_weights.safetensors"));
    await assert.rejects(() => Transcoder.load(dir), (e) => e instanceof WeightsError && e.field === "W_skip");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const sae = new URL("./reference/gpt2_tiny/saes/std_resid_pre1", import.meta.url).pathname;
  await assert.rejects(() => Transcoder.load(sae), (e) => e instanceof ConfigError && e.field === "architecture");
});
