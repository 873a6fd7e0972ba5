// Checkpoints as the hub ships them: sharded with an index, BF16/F16 weights; unsupported
// architectures and broken checkpoints fail with typed errors.
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError, HookedTransformer, initGpu, type Tensor, WeightsError } from "../mod.ts";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

const REF = new URL("./reference/", import.meta.url).pathname;

/** float32 -> bfloat16 bits, round to nearest even. */
function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(u, (v) => (v + 0x7fff + ((v >>> 16) & 1)) >>> 16);
}

Deno.test("a sharded BF16 copy of each reference model loads and gives the logits of its bf16-rounded weights", async () => {
  for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "gemma2_tiny"]) {
    const src = `${REF}${name}/hf`;
    const dir = await Deno.makeTempDir({ prefix: `hooklens-${name}-bf16-` });
    const rounded = await Deno.makeTempDir({ prefix: `hooklens-${name}-rounded-` });
    await Deno.copyFile(`${src}/config.json`, join(dir, "config.json"));
    await Deno.copyFile(`${src}/config.json`, join(rounded, "config.json"));
    using f = await SafetensorsFile.open(`${src}/model.safetensors`);
    const names = f.names();
    const shards: Record<string, TensorToWrite>[] = [{}, {}];
    const f32: Record<string, TensorToWrite> = {};
    const weightMap: Record<string, string> = {};
    for (const [i, n] of names.entries()) {
      const bf = toBf16(await f.float32(n));
      const shape = f.info(n).shape;
      shards[i % 2][n] = { dtype: "BF16", shape, data: bf };
      f32[n] = {
        dtype: "F32",
        shape,
        data: new Float32Array(Uint32Array.from(bf, (v) => v << 16).buffer),
      };
      weightMap[n] = `model-0000${(i % 2) + 1}-of-00002.safetensors`;
    }
    await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), shards[0]);
    await writeSafetensors(join(dir, "model-00002-of-00002.safetensors"), shards[1]);
    await Deno.writeTextFile(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    await writeSafetensors(join(rounded, "model.safetensors"), f32);

    const tokens = [[1, 2, 3, 4, 5, 6, 7]];
    using m16 = await HookedTransformer.fromPretrained(dir);
    using mr = await HookedTransformer.fromPretrained(rounded);
    using m32 = await HookedTransformer.fromPretrained(src);
    const [a, b, c] = await Promise.all([m16, mr, m32].map(async (m) => {
      using t = await m.forward(tokens);
      return await t.toArray();
    }));
    assert.ok(
      maxRelErr(a, b) < 1e-5,
      `${name}: sharded bf16 vs bf16-rounded f32: ${maxRelErr(a, b)}`,
    );
    // bf16 keeps 8 bits of mantissa: logits move by about 2^-8 relative, not more.
    const e = maxRelErr(a, c);
    assert.ok(e < 0.05 && e > 0, `${name}: bf16 vs f32 logits ${e}`);
  }
}); // deno-fmt-ignore

Deno.test("an unsupported architecture fails with the supported list; broken checkpoints name the tensor", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ architectures: ["MambaForCausalLM"] }));
  await assert.rejects(() => HookedTransformer.fromPretrained(dir), (e) =>
    e instanceof ConfigError && /MambaForCausalLM/.test(e.message) && /GPT2LMHeadModel, LlamaForCausalLM/.test(e.message));
  // Missing tensor.
  await Deno.copyFile(`${REF}gpt2_tiny/hf/config.json`, join(dir, "config.json"));
  using f = await SafetensorsFile.open(`${REF}gpt2_tiny/hf/model.safetensors`);
  const t: Record<string, TensorToWrite> = {};
  for (const n of f.names()) t[n] = { dtype: "F32", shape: f.info(n).shape, data: await f.float32(n) };
  const { ["transformer.h.1.mlp.c_fc.bias"]: _gone, ...missing } = t;
  await writeSafetensors(join(dir, "model.safetensors"), missing);
  await assert.rejects(() => HookedTransformer.fromPretrained(dir), (e) =>
    e instanceof WeightsError && /\[transformer\.h\.1\.mlp\.c_fc\.bias\].*missing/.test(e.message));
  // Extra tensor.
  await writeSafetensors(join(dir, "model.safetensors"), { ...t, "transformer.h.9.extra": { dtype: "F32", shape: [1], data: new Float32Array(1) } });
  await assert.rejects(() => HookedTransformer.fromPretrained(dir), (e) =>
    e instanceof WeightsError && /unexpected tensors.*transformer\.h\.9\.extra/.test(e.message));
  // NaN in a weight is reported at load with the tensor name.
  const bad = t["transformer.wpe.weight"].data as Float32Array;
  const nan = bad.slice();
  nan[7] = NaN;
  await writeSafetensors(join(dir, "model.safetensors"), { ...t, "transformer.wpe.weight": { dtype: "F32", shape: [64, 64], data: nan } });
  await assert.rejects(() => HookedTransformer.fromPretrained(dir), (e) =>
    e instanceof WeightsError && /\[transformer\.wpe\.weight\].*non-finite value NaN at element 7/.test(e.message));
  // A shard index naming a file outside the directory is refused.
  const d2 = await Deno.makeTempDir();
  await Deno.copyFile(`${REF}gpt2_tiny/hf/config.json`, join(d2, "config.json"));
  await Deno.writeTextFile(join(d2, "model.safetensors.index.json"), JSON.stringify({ weight_map: { "transformer.wte.weight": "../../etc/passwd" } }));
  await assert.rejects(() => HookedTransformer.fromPretrained(d2), (e) => e instanceof WeightsError && /not a file name in the directory/.test(e.message));
});

Deno.test({
  name:
    "dtype float16 stores dense weights as f16: logits within f16 rounding of float32; no backward",
  ignore: !(await initGpu()).f16,
}, async () => {
  for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "gemma2_tiny"]) {
    const dir = `${REF}${name}/hf`;
    using m32 = await HookedTransformer.fromPretrained(dir);
    using m16 = await HookedTransformer.fromPretrained(dir, { dtype: "float16" });
    assert.equal(m16.dtype, "float16");
    const tokens = [[1, 2, 3, 4, 5, 6, 7, 8]];
    using a = await m32.forward(tokens);
    using b = await m16.forward(tokens);
    const e = maxRelErr(await b.toArray(), await a.toArray());
    assert.ok(e > 0 && e < 1e-2, `${name}: f16 vs f32 logits ${e}`);
    // W_E is stored as f16 too: hook_embed holds exactly the f16-rounded rows of the f32 table.
    const [o16, c16] = await m16.runWithCache(tokens, { namesFilter: ["hook_embed"] });
    (o16 as Tensor).dispose();
    using _c16 = c16;
    const wE = await m32.weightData("embed.W_E");
    const d = m32.cfg.dModel;
    const rows = Float32Array.from(
      Float16Array.from(tokens[0].flatMap((t) => [...wE.data.subarray(t * d, (t + 1) * d)])),
    );
    assert.deepEqual(
      await c16.get("hook_embed").toArray(),
      rows,
      `${name}: hook_embed from f16 W_E`,
    );
    const wu = await m16.weightData("unembed.W_U");
    assert.ok(wu.data.every((v) => Number.isFinite(v)));
    await assert.rejects(
      () => m16.runWithCache(tokens, { inclBwd: true }),
      /needs float32 weights/,
    );
  }
}); // deno-fmt-ignore
