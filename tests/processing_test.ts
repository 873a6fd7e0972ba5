// Weight conversion and processing (CPU) against TransformerLens's processed state dict.
import assert from "node:assert/strict";
import { configFromHf } from "../src/model/config.ts";
import { processWeights, rotaryTables } from "../src/model/processing.ts";
import { loadStateDict } from "../src/model/weights.ts";
import { readJsonFile } from "../src/io/json.ts";
import { SafetensorsFile } from "../src/io/safetensors.ts";
import { maxRelErr } from "./_util.ts";

const REF = new URL("./reference/", import.meta.url).pathname;

for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "llama3_tiny", "gemma2_tiny"]) {
  Deno.test(`${name}: processed weights match tl_processed_state_dict`, async () => {
    const dir = `${REF}${name}/hf`;
    const cfg0 = configFromHf(await readJsonFile(`${dir}/config.json`), "config.json");
    const sd = await loadStateDict(dir, cfg0);
    const cfg = processWeights(sd, cfg0, {
      foldLn: true,
      centerWritingWeights: true,
      centerUnembed: true,
      foldValueBiases: true,
    });
    using ref = await SafetensorsFile.open(`${REF}${name}/tl_processed_state_dict.safetensors`);
    const refNames = ref.names().filter((n) => !/\.(mask|IGNORE|rotary_cos|rotary_sin)$/.test(n));
    assert.deepEqual(
      [...sd.keys()].sort(),
      refNames.sort(),
      "same weights as TransformerLens holds",
    );
    for (const n of refNames) {
      const t = sd.get(n)!;
      assert.deepEqual(t.shape, ref.info(n).shape, n);
      const r = await ref.float32(n);
      const isZero = r.every((v) => v === 0);
      if (isZero) assert.ok(t.data.every((v) => Math.abs(v) < 1e-6), `${n} should be zero`);
      else assert.ok(maxRelErr(t.data, r) < 1e-5, `${n}: ${maxRelErr(t.data, r)}`);
    }
    assert.equal(cfg.normalizationType, cfg0.normalizationType === "LN" ? "LNPre" : "RMSPre");
    if (cfg.rotaryDim) {
      // Our rotary tables equal TransformerLens's buffers.
      const { cos, sin } = rotaryTables(cfg.nCtx, cfg.rotaryDim, cfg.rotaryBase, cfg.ropeScaling);
      assert.ok(maxRelErr(cos, await ref.float32("blocks.0.attn.rotary_cos")) < 1e-6, "rotary cos");
      assert.ok(maxRelErr(sin, await ref.float32("blocks.0.attn.rotary_sin")) < 1e-6, "rotary sin");
    }
  });
}
