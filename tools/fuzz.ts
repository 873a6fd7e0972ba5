// `deno task fuzz`: the seeded fuzzers of tests/, run much longer. Usage:
//   deno task fuzz [iterations-scale] [seed]
import { initGpu } from "../mod.ts";
import {
  fuzzConfig,
  fuzzHubVerifier,
  fuzzLlamaScope,
  fuzzNpz,
  fuzzSaeConfig,
  fuzzShardIndex,
  fuzzTokenizer,
} from "../tests/_fuzz.ts";

const scale = Number(Deno.args[0] ?? 20);
const seed = Number(Deno.args[1] ?? Date.now() % 100000);
await initGpu();
console.log(`fuzzing with seed ${seed}, ${scale}x the test suite's iterations`);
for (
  const [name, fn, n] of [
    ["config.json", fuzzConfig, 150],
    ["SAE cfg.json", fuzzSaeConfig, 60],
    ["tokenizer.json", fuzzTokenizer, 40],
    ["shard index", fuzzShardIndex, 200],
    ["params.npz", fuzzNpz, 1500],
    ["Llama Scope hyperparams.json", fuzzLlamaScope, 150],
    ["hub download verifier", fuzzHubVerifier, 300],
  ] as const
) {
  const t0 = performance.now();
  const r = await fn(n * scale, seed);
  console.log(
    `${name}: ${r.ok} loaded, ${r.typed} typed errors, ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );
}
