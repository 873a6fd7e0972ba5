// Bounded, seeded fuzzing of config.json, SAE cfg.json, tokenizer.json, shard indexes, .npz
// archives (Gemma Scope's params.npz), Llama Scope's hyperparams.json and the hub's download
// verifier; the safetensors fuzz is in safetensors_test.ts, and `deno task fuzz` runs all of
// them longer.
import assert from "node:assert/strict";
import { initGpu } from "../mod.ts";
import {
  fuzzConfig,
  fuzzHubVerifier,
  fuzzLlamaScope,
  fuzzNpz,
  fuzzSaeConfig,
  fuzzShardIndex,
  fuzzTokenizer,
} from "./_fuzz.ts";

await initGpu();

Deno.test("fuzz config.json: only typed errors naming the file", async () => {
  const r = await fuzzConfig(150, 1);
  assert.ok(r.typed > 50, JSON.stringify(r));
});

Deno.test("fuzz SAE cfg.json: only typed errors naming the file", async () => {
  const r = await fuzzSaeConfig(60, 2);
  assert.ok(r.typed > 20, JSON.stringify(r));
});

Deno.test("fuzz tokenizer.json: only typed errors naming the file", async () => {
  const r = await fuzzTokenizer(40, 3);
  assert.ok(r.typed > 5, JSON.stringify(r));
});

Deno.test("fuzz model.safetensors.index.json: only typed errors naming the file", async () => {
  const r = await fuzzShardIndex(200, 4);
  assert.ok(r.typed > 50, JSON.stringify(r));
});

Deno.test("fuzz params.npz: only typed errors naming the file, no hang", async () => {
  const t0 = performance.now();
  const r = await fuzzNpz(1500, 5);
  assert.ok(r.typed > 500, JSON.stringify(r));
  assert.ok(performance.now() - t0 < 60_000, `took ${performance.now() - t0} ms`);
});

Deno.test("fuzz Llama Scope hyperparams.json: only typed errors naming the file", async () => {
  const r = await fuzzLlamaScope(150, 6);
  assert.ok(r.typed > 50, JSON.stringify(r));
});

Deno.test("fuzz the hub's download verifier: accepts or refuses with a HubError naming the file", async () => {
  const r = await fuzzHubVerifier(300, 5);
  assert.ok(r.typed > 100 && r.ok > 10, JSON.stringify(r));
});
