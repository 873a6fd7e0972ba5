// Gemma Scope's params.npz as a JumpReLU SAE: the gemma2_tiny reference SAE's pre-activations,
// activations, reconstruction and error (float64, computed by the fixture's generator) on the raw
// model's blocks.1.hook_resid_post from tl_raw. The spliced-logit variants of the same file need
// the Gemma-2 model itself and are checked where that model is tested.
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError, SAE, Tensor } from "../mod.ts";
import { NpzFile } from "../src/io/npz.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

const REF = new URL("./reference/gemma2_tiny/", import.meta.url).pathname;
const SAE_DIR = `${REF}saes/gemmascope_blocks_1_hook_resid_post`;
const TOL = 1e-4;

async function rawResid(): Promise<{ x: Float32Array; shape: number[] }> {
  using f = await SafetensorsFile.open(`${REF}tl_raw.safetensors`);
  const name = "cache.blocks.1.hook_resid_post";
  return { x: await f.float32(name), shape: [...f.info(name).shape] };
}

Deno.test("Gemma Scope params.npz: pre-activations, activations, reconstruction, error match", async () => {
  using sae = await SAE.load(SAE_DIR);
  assert.equal(sae.cfg.architecture, "jumprelu");
  assert.equal(sae.cfg.hookName, "blocks.1.hook_resid_post", "from the sidecar cfg.json");
  assert.equal(sae.cfg.applyBDecToInput, false);
  assert.deepEqual([sae.cfg.dIn, sae.cfg.dSae], [64, 128]);
  using ref = await SafetensorsFile.open(
    `${REF}sae_gemmascope_blocks_1_hook_resid_post.safetensors`,
  );
  const { x, shape } = await rawResid();
  assert.equal(maxRelErr(x, await ref.float32("input")), 0, "the fixture's input is tl_raw's");

  using input = Tensor.from(x, shape);
  const seen = new Map<string, Float32Array>();
  using out = await sae.run(
    input,
    async (name, t) => {
      seen.set(name, await t.toArray() as Float32Array);
      return t;
    },
    true,
    false,
  );
  const pre = seen.get("hook_sae_acts_pre")!, refPre = await ref.float32("pre_acts_f64");
  assert.ok(maxRelErr(pre, refPre) < TOL, `pre-activations ${maxRelErr(pre, refPre)}`);

  // JumpReLU is discontinuous at the threshold: entries whose pre-activation lies within 1e-5 of
  // it may flip by float rounding; they are excluded and counted (reference README).
  const threshold = await (await NpzFile.open(`${SAE_DIR}/params.npz`)).float32("threshold");
  const acts = seen.get("hook_sae_acts_post")!, refActs = await ref.float32("acts_f64");
  const keep: number[] = [];
  for (let i = 0; i < acts.length; i++) {
    if (Math.abs(refPre[i] - threshold[i % 128]) >= 1e-5) keep.push(i);
  }
  const excluded = acts.length - keep.length;
  console.log(`jumprelu: ${excluded} of ${acts.length} entries at the threshold excluded`);
  assert.ok(excluded < 5, `${excluded} entries near the threshold`);
  const pick = (a: ArrayLike<number>) => keep.map((i) => a[i]);
  assert.ok(maxRelErr(pick(acts), pick(refActs)) < TOL, "activations");
  assert.ok(refActs.some((v) => v > 0) && refActs.some((v, i) => v === 0 && refPre[i] > 0));

  const recons = seen.get("hook_sae_recons")!, refRecons = await ref.float32("recon_f64");
  assert.ok(maxRelErr(recons, refRecons) < TOL, `reconstruction ${maxRelErr(recons, refRecons)}`);
  const error = seen.get("hook_sae_error")!, refError = await ref.float32("error_f64");
  assert.ok(maxRelErr(error, refError) < TOL, `error ${maxRelErr(error, refError)}`);
  assert.ok(maxRelErr(await out.toArray(), x) < 1e-6, "with the error term the output is x");

  // The standalone methods agree with the hooked run.
  using a2 = await sae.encode(input);
  assert.ok(maxRelErr(pick(await a2.toArray()), pick(refActs)) < TOL, "encode");
  using r2 = await sae.decode(a2);
  assert.ok(maxRelErr(await r2.toArray(), refRecons) < TOL, "decode");
});

Deno.test("Gemma Scope params.npz: hook name from the caller; refused when none is known", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(`${SAE_DIR}/params.npz`, join(dir, "params.npz"));
    await assert.rejects(
      () => SAE.load(dir),
      (e: unknown) =>
        e instanceof ConfigError && e.file === join(dir, "params.npz") &&
        e.field === "hook_name" && /hookName/.test(e.message),
    );
    using sae = await SAE.load(dir, { hookName: "blocks.1.hook_resid_post", modelName: "g" });
    assert.equal(sae.cfg.hookName, "blocks.1.hook_resid_post");
    assert.equal(sae.cfg.modelName, "g");
    // A sidecar that disagrees with the arrays is refused, naming the field.
    await Deno.writeTextFile(
      join(dir, "cfg.json"),
      JSON.stringify({ hook_name: "blocks.1.hook_resid_post", d_in: 32 }),
    );
    await assert.rejects(
      () => SAE.load(dir),
      (e: unknown) =>
        e instanceof ConfigError && e.field === "d_in" && /W_enc has 64/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
