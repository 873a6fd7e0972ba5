// Seeded fuzzing of every file hooklens parses. Shared by tests/fuzz_test.ts (bounded) and
// tools/fuzz.ts (`deno task fuzz`, longer). A run passes when every mutated input either loads or
// fails with a typed error (a HooklensError) that names the file.
import { join } from "node:path";
import { HooklensError } from "../src/errors.ts";
import { readJsonFile } from "../src/io/json.ts";
import { HfTokenizer } from "../src/io/tokenizer.ts";
import { configFromHf } from "../src/model/config.ts";
import { processWeights } from "../src/model/processing.ts";
import { loadStateDict, openCheckpoint } from "../src/model/weights.ts";
import { SAE } from "../src/sae/sae.ts";
import { NpzFile } from "../src/io/npz.ts";
import { readGemmaScope } from "../src/sae/gemma_scope.ts";
import { readLlamaScope } from "../src/sae/llama_scope.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import { f32, npzBytes } from "./_npz.ts";
import { rng } from "./_util.ts";

const REF = new URL("./reference/", import.meta.url).pathname;

/** Mutates JSON text: byte flips, deletions, insertions of JSON-ish tokens, number changes. */
export function mutate(text: string, r: () => number): string {
  const edits = [
    "",
    "0",
    "-1",
    "1e308",
    "null",
    "true",
    '""',
    "[]",
    "{}",
    ",",
    ":",
    '"',
    "9999999999",
    "0.5",
    "NaN",
  ];
  let t = text;
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const i = Math.floor(r() * t.length);
    const kind = r();
    if (kind < 0.3) {
      t = t.slice(0, i) + String.fromCharCode(t.charCodeAt(i) ^ (1 << Math.floor(r() * 7))) +
        t.slice(i + 1);
    } else if (kind < 0.5) t = t.slice(0, i) + t.slice(i + 1 + Math.floor(r() * 8));
    else if (kind < 0.8) {
      // Replace a JSON value after a colon.
      const c = t.indexOf(":", i);
      if (c < 0) continue;
      const end = t.slice(c + 1).search(/[,}\]]/);
      t = t.slice(0, c + 1) + edits[Math.floor(r() * edits.length)] +
        (end < 0 ? "" : t.slice(c + 1 + end));
    } else t = t.slice(0, i) + edits[Math.floor(r() * edits.length)] + t.slice(i);
  }
  return t;
} // deno-fmt-ignore

/** Result of a fuzz target: how many inputs loaded and how many failed with typed errors. */
export interface FuzzResult {
  ok: number;
  typed: number;
}

async function expectTyped(
  fn: () => Promise<unknown>,
  file: string,
  res: FuzzResult,
  what: string,
): Promise<void> {
  try {
    await fn();
    res.ok++;
  } catch (e) {
    if (!(e instanceof HooklensError)) {
      throw new Error(`${what}: untyped ${(e as Error)?.name}: ${(e as Error)?.message}`);
    }
    if (!e.message.includes(file)) {
      throw new Error(`${what}: error does not name ${file}: ${e.message}`);
    }
    res.typed++;
  }
}

/** config.json of each reference model, mutated, then loaded with its real weights (CPU stages). */
export async function fuzzConfig(iterations: number, seed: number): Promise<FuzzResult> {
  const r = rng(seed);
  const res = { ok: 0, typed: 0 };
  for (const name of ["gpt2_tiny", "rmsgqa_tiny", "neox_tiny", "llama3_tiny", "gemma2_tiny"]) {
    const dir = await Deno.makeTempDir({ prefix: "hooklens-fuzz-cfg-" });
    await Deno.copyFile(`${REF}${name}/hf/model.safetensors`, join(dir, "model.safetensors"));
    const text = await Deno.readTextFile(`${REF}${name}/hf/config.json`);
    for (let i = 0; i < iterations; i++) {
      const path = join(dir, "config.json");
      await Deno.writeTextFile(path, mutate(text, r));
      await expectTyped(
        async () => {
          const cfg = configFromHf(await readJsonFile(path), path);
          const sd = await loadStateDict(dir, cfg);
          processWeights(sd, cfg, {
            foldLn: true,
            centerWritingWeights: true,
            centerUnembed: true,
            foldValueBiases: true,
          });
        },
        dir,
        res,
        `config ${name} #${i}`,
      );
    }
    await Deno.remove(dir, { recursive: true });
  }
  return res;
} // deno-fmt-ignore

/** SAE cfg.json, mutated, then loaded with its real weights. */
export async function fuzzSaeConfig(iterations: number, seed: number): Promise<FuzzResult> {
  const r = rng(seed);
  const res = { ok: 0, typed: 0 };
  for (const name of ["std_resid_pre1", "topk_mlp_out0", "jumprelu_z1", "gated_resid_post0"]) {
    const dir = await Deno.makeTempDir({ prefix: "hooklens-fuzz-sae-" });
    await Deno.copyFile(`${REF}gpt2_tiny/saes/${name}/sae_weights.safetensors`, join(dir, "sae_weights.safetensors"));
    const text = await Deno.readTextFile(`${REF}gpt2_tiny/saes/${name}/cfg.json`);
    for (let i = 0; i < iterations; i++) {
      await Deno.writeTextFile(join(dir, "cfg.json"), mutate(text, r));
      await expectTyped(async () => (await SAE.load(dir)).dispose(), dir, res, `sae ${name} #${i}`);
    }
    await Deno.remove(dir, { recursive: true });
  }
  return res;
} // deno-fmt-ignore

/** tokenizer.json, mutated, then loaded and used. */
export async function fuzzTokenizer(iterations: number, seed: number): Promise<FuzzResult> {
  const r = rng(seed);
  const res = { ok: 0, typed: 0 };
  const dir = await Deno.makeTempDir({ prefix: "hooklens-fuzz-tok-" });
  const text = await Deno.readTextFile(`${REF}tokenizer_gpt2/tokenizer.json`);
  // Mutations concentrate on the structure before the vocabulary (normalizer, pre-tokenizer,
  // model type, added tokens), where a bad value changes behaviour, plus anywhere at random.
  const head = text.indexOf('"vocab"');
  for (let i = 0; i < iterations; i++) {
    const mutated = r() < 0.7 ? mutate(text.slice(0, head), r) + text.slice(head) : mutate(text, r);
    await Deno.writeTextFile(join(dir, "tokenizer.json"), mutated);
    await expectTyped(async () => {
      const tok = await HfTokenizer.load(dir);
      const ids = tok!.encode("def f(x):\n    return x + 1");
      tok!.decode(ids);
    }, dir, res, `tokenizer #${i}`);
  }
  await Deno.remove(dir, { recursive: true });
  return res;
} // deno-fmt-ignore

/** model.safetensors.index.json with two shards, mutated, then opened. */
export async function fuzzShardIndex(iterations: number, seed: number): Promise<FuzzResult> {
  const r = rng(seed);
  const res = { ok: 0, typed: 0 };
  const dir = await Deno.makeTempDir({ prefix: "hooklens-fuzz-idx-" });
  await Deno.copyFile(`${REF}gpt2_tiny/hf/model.safetensors`, join(dir, "model-00001-of-00001.safetensors"));
  const names = (await openCheckpoint(`${REF}gpt2_tiny/hf`)).names();
  const text = JSON.stringify({ metadata: { total_size: 1 }, weight_map: Object.fromEntries(names.map((n) => [n, "model-00001-of-00001.safetensors"])) });
  for (let i = 0; i < iterations; i++) {
    await Deno.writeTextFile(join(dir, "model.safetensors.index.json"), mutate(text, r));
    await expectTyped(async () => {
      using ck = await openCheckpoint(dir);
      for (const n of ck.names().slice(0, 3)) await ck.float32(n);
    }, dir, res, `index #${i}`);
  }
  await Deno.remove(dir, { recursive: true });
  return res;
}

/** Mutates binary data: bit flips, 2/4-byte fields set to boundary values, cuts, splices. */
export function mutateBytes(b: Uint8Array, r: () => number): Uint8Array {
  let t = b.slice();
  const n = 1 + Math.floor(r() * 3);
  const values = [0, 1, 0x7f, 0xff, 0xffff, 0x7fffffff, 0xffffffff, t.length, t.length - 22, 46];
  for (let k = 0; k < n; k++) {
    const i = Math.floor(r() * t.length);
    const kind = r();
    if (kind < 0.35) t[i] ^= 1 << Math.floor(r() * 8);
    else if (kind < 0.7 && i + 4 <= t.length) {
      const v = values[Math.floor(r() * values.length)] >>> 0;
      const dv = new DataView(t.buffer);
      if (r() < 0.5) dv.setUint16(i, v & 0xffff, true);
      else dv.setUint32(i, v, true);
    } else if (kind < 0.8) t = t.slice(0, i);
    else if (kind < 0.9) {
      const len = Math.floor(r() * 64);
      t = new Uint8Array([...t.subarray(0, i), ...t.subarray(i + len)]);
    } else {
      const from = Math.floor(r() * t.length), len = Math.floor(r() * 64);
      t = new Uint8Array([...t.subarray(0, i), ...t.subarray(from, from + len), ...t.subarray(i)]);
    }
  }
  return t;
}

/**
 * Gemma-Scope-shaped params.npz archives (stored, deflated, zip64), mutated, then read through
 * the npz reader and, one in five, loaded as an SAE (CPU stages).
 */
export async function fuzzNpz(iterations: number, seed: number): Promise<FuzzResult> {
  const r = rng(seed);
  const res = { ok: 0, typed: 0 };
  const vals = (n: number) => f32(Array.from({ length: n }, (_, i) => Math.sin(i) + 0.5));
  const arrays = [
    { name: "W_enc", descr: "<f4", shape: [4, 6], data: vals(24) },
    { name: "W_dec", descr: "<f4", shape: [6, 4], data: vals(24) },
    { name: "b_enc", descr: "<f4", shape: [6], data: vals(6) },
    { name: "b_dec", descr: "<f4", shape: [4], data: vals(4) },
    { name: "threshold", descr: "<f4", shape: [6], data: vals(6) },
  ];
  const bases = [
    await npzBytes(arrays),
    await npzBytes(arrays, { deflate: true }),
    await npzBytes(arrays, { zip64: true }),
  ];
  const dir = await Deno.makeTempDir({ prefix: "hooklens-fuzz-npz-" });
  const path = join(dir, "params.npz");
  for (let i = 0; i < iterations; i++) {
    const b = mutateBytes(bases[i % bases.length], r);
    if (i % 5 === 0) {
      await Deno.writeFile(path, b);
      await expectTyped(
        () => readGemmaScope(dir, { hookName: "blocks.0.hook_resid_post" }),
        path,
        res,
        `npz sae #${i}`,
      );
    } else {
      await expectTyped(
        async () => {
          const npz = NpzFile.fromBytes(path, b);
          for (const n of npz.names()) await npz.float32(n);
        },
        path,
        res,
        `npz #${i}`,
      );
    }
  }
  await Deno.remove(dir, { recursive: true });
  return res;
}

/** Llama Scope hyperparams.json, mutated, then read with its weights (CPU stages). */
export async function fuzzLlamaScope(iterations: number, seed: number): Promise<FuzzResult> {
  const r = rng(seed);
  const res = { ok: 0, typed: 0 };
  const dir = await Deno.makeTempDir({ prefix: "hooklens-fuzz-ls-" });
  await Deno.mkdir(join(dir, "checkpoints"));
  const [d, n] = [4, 6];
  const f = (k: number) => new Float32Array(k).map((_, i) => Math.sin(i));
  await writeSafetensors(join(dir, "checkpoints", "final.safetensors"), {
    "encoder.weight": { dtype: "F32", shape: [n, d], data: f(n * d) },
    "encoder.bias": { dtype: "F32", shape: [n], data: f(n) },
    "decoder.weight": { dtype: "F32", shape: [d, n], data: f(d * n) },
    "decoder.bias": { dtype: "F32", shape: [d], data: f(d) },
  });
  const text = JSON.stringify({
    d_model: d,
    d_sae: n,
    jump_relu_threshold: 0.5,
    hook_point_in: "blocks.0.hook_resid_post",
    dataset_average_activation_norm: { in: 2.5, out: 3 },
  });
  for (let i = 0; i < iterations; i++) {
    await Deno.writeTextFile(join(dir, "hyperparams.json"), mutate(text, r));
    await expectTyped(
      () => readLlamaScope(dir, { normScalingFactor: 0.8 }),
      dir,
      res,
      `llama scope #${i}`,
    );
  }
  await Deno.remove(dir, { recursive: true });
  return res;
}

/**
 * The hub's download verifier ({@link verifyHubFile}) on mutated config.json text and mutated
 * safetensors bytes (flips, cuts, appended bytes), with the true or a wrong announced size and
 * sha256: it accepts a file or refuses it with a HubError naming the file, never anything else.
 * A file whose bytes changed while size and sha256 are announced as the original's is refused.
 */
export async function fuzzHubVerifier(iterations: number, seed: number): Promise<FuzzResult> {
  const { verifyHubFile } = await import("../src/io/hub.ts");
  const { createHash } = await import("node:crypto");
  const r = rng(seed);
  const res = { ok: 0, typed: 0 };
  const dir = await Deno.makeTempDir({ prefix: "hooklens-fuzz-hub-" });
  const cfg = new TextEncoder().encode(await Deno.readTextFile(`${REF}gpt2_tiny/hf/config.json`));
  const st = await Deno.readFile(`${REF}gpt2_tiny/saes/std_resid_pre1/sae_weights.safetensors`);
  const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
  for (let i = 0; i < iterations; i++) {
    const json = r() < 0.5;
    const orig = json ? cfg : st;
    let bytes: Uint8Array;
    if (json) bytes = new TextEncoder().encode(mutate(new TextDecoder().decode(orig), r));
    else {
      bytes = orig.slice();
      const kind = r();
      // Flips concentrate on the header, where they change its meaning.
      const at = Math.floor(r() * (r() < 0.7 ? Math.min(orig.length, 2048) : orig.length));
      if (kind < 0.5) bytes[at] ^= 1 << Math.floor(r() * 8);
      else if (kind < 0.8) bytes = bytes.slice(0, at);
      else bytes = Uint8Array.from([...bytes, ...new Uint8Array(1 + Math.floor(r() * 16))]);
    }
    const name = json ? "config.json" : "sae_weights.safetensors";
    const path = join(dir, name);
    await Deno.writeFile(path, bytes);
    const label = `org/fuzz/${name}`;
    const announce = r();
    const announced = announce < 0.3
      ? {}
      : announce < 0.7
      ? { size: orig.length, sha256: sha(orig) }
      : { size: bytes.length, sha256: r() < 0.5 ? sha(bytes) : null };
    const changed = bytes.length !== orig.length || sha(bytes) !== sha(orig);
    try {
      await verifyHubFile(path, label, announced);
      if (changed && announced.sha256 === sha(orig)) {
        throw new Error(`hub verifier #${i}: accepted changed bytes announced as the original`);
      }
      res.ok++;
    } catch (e) {
      if ((e as Error).name !== "HubError") {
        throw new Error(
          `hub verifier #${i}: untyped ${(e as Error)?.name}: ${(e as Error)?.message}`,
        );
      }
      if (!(e as Error).message.includes(label)) {
        throw new Error(
          `hub verifier #${i}: error does not name ${label}: ${(e as Error).message}`,
        );
      }
      res.typed++;
    }
  }
  await Deno.remove(dir, { recursive: true });
  return res;
} // deno-fmt-ignore
