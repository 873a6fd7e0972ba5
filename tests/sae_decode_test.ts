// The sparse SAE decode kernels (ops.saeDecode: compaction of each row's active latents, then the
// sum over the list, or over the whole row where the list overflows) against float64, on rows of
// every occupancy, with the output poisoned first. sae_test.ts checks the decode through SAE.load
// on small SAEs; here d_sae spans three 256-wide chunks of the GPU compaction's prefix sum.
import assert from "node:assert/strict";
import { Tensor } from "../mod.ts";
import * as ops from "../src/gpu/ops.ts";
import { initRuntime } from "../src/gpu/runtime.ts";
import { maxRelErr, poisonPool, randArray, rng } from "./_util.ts";

Deno.test("saeDecode equals float64 for rows empty, within, at and over the list's capacity, both compactions", async () => {
  await initRuntime();
  const dIn = 24, dSae = 600, cap = 40;
  // Active latents per row: none, one, within, at and one over the capacity, most, all.
  const counts = [0, 1, cap - 1, cap, cap + 1, 300, dSae];
  const rows = counts.length;
  const r = rng(77);
  const acts = new Float32Array(rows * dSae);
  counts.forEach((n, row) => {
    // n distinct latents, spread over the whole row (every chunk of the compaction).
    const js = Array.from({ length: dSae }, (_, j) => j);
    for (let i = 0; i < n; i++) {
      const k = i + Math.floor(r() * (dSae - i));
      [js[i], js[k]] = [js[k], js[i]];
      acts[row * dSae + js[i]] = 0.1 + r();
    }
  });
  const wDec = randArray(dSae * dIn, 78);
  const extra = randArray(dIn + dSae, 79).map((v, i) => (i < dIn ? v : 0.5 + Math.abs(v)));
  using tActs = Tensor.from(acts, [rows, dSae]);
  using tW = Tensor.from(wDec, [dSae, dIn]);
  using tExtra = Tensor.from(extra, [dIn + dSae]);
  const saved = ops.tuning.cpuVariants.mode;
  try {
    for (const scaled of [false, true]) {
      const want = new Float64Array(rows * dIn);
      for (let row = 0; row < rows; row++) {
        for (let d = 0; d < dIn; d++) {
          let s = extra[d];
          for (let j = 0; j < dSae; j++) {
            const a = acts[row * dSae + j] * (scaled ? extra[dIn + j] : 1);
            s += a * wDec[j * dIn + d];
          }
          want[row * dIn + d] = s;
        }
      }
      // The GPU compaction (a workgroup prefix sum per 256 latents) and the software adapter's
      // (a serial scan per row).
      for (const mode of ["never", "always"] as const) {
        ops.tuning.cpuVariants.mode = mode;
        poisonPool(rows * dIn * 4);
        using out = ops.saeDecode(tActs, tW, tExtra, cap, scaled);
        assert.deepEqual(out.shape, [rows, dIn]);
        const got = await out.toArray();
        for (let row = 0; row < rows; row++) {
          const e = maxRelErr(
            got.subarray(row * dIn, (row + 1) * dIn),
            want.subarray(row * dIn, (row + 1) * dIn),
          );
          assert.ok(
            e < 1e-5,
            `${mode}, scaled ${scaled}: row of ${counts[row]} active latents, error ${e}`,
          );
        }
      }
    }
  } finally {
    ops.tuning.cpuVariants.mode = saved;
  }
}); // deno-fmt-ignore
