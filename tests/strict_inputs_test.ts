// Inputs that used to get through: token ids in an int32 Tensor outside the vocabulary, integer
// weights read as floats, a named pipe in place of a file (a hang), a batch under the adapter's
// buffer limit refused with that limit quoted, and a GPU buffer leaked by each failed backward pass.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  FormatError,
  GpuLimitError,
  HookedTransformer,
  InputError,
  SAE,
  Tensor,
  WeightsError,
} from "../mod.ts";
import { runtime } from "../src/gpu/runtime.ts";
import { SafetensorsFile, writeSafetensors } from "../src/io/safetensors.ts";

const REF = new URL("./reference/", import.meta.url).pathname;
const model = await HookedTransformer.fromPretrained(`${REF}gpt2_tiny/hf`);

Deno.test("token ids in an int32 Tensor are checked like arrays (vocabulary range)", async () => {
  for (
    const [ids, msg] of [
      [[1, 2, 1_000_000], "Token id 1000000 at [0, 2] is outside the vocabulary (0..999)."],
      [[-7, 2, 3], "Token id -7 at [0, 0] is outside the vocabulary (0..999)."],
    ] as const
  ) {
    using t = Tensor.from(ids, [1, 3], "int32");
    await assert.rejects(
      () => model.forward(t),
      (e) => e instanceof InputError && e.message === msg,
    );
    await assert.rejects(() => model.runWithCache(t), InputError);
    await assert.rejects(() => model.generate(t, { maxNewTokens: 2 }), InputError);
  }
  // Ids mutated in the caller's array after upload do not fool the check (a copy is kept).
  const data = new Int32Array([1, 2, 3]);
  using t = Tensor.from(data, [1, 3], "int32");
  data[1] = 5000;
  using ok = await model.forward(t);
  assert.deepEqual(ok.shape, [1, 3, 1000]);
  using fromText = Tensor.from([[999, 0]].flat(), [1, 2], "int32");
  using out = await model.forward(fromText);
  assert.deepEqual(out.shape, [1, 2, 1000]);
}); // deno-fmt-ignore

/** A copy of gpt2_tiny with one tensor stored as an integer dtype. */
async function withIntegerWeight(name: string, dtype: "I32" | "I16"): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "hooklens-int-" });
  await Deno.copyFile(`${REF}gpt2_tiny/hf/config.json`, join(dir, "config.json"));
  using f = await SafetensorsFile.open(`${REF}gpt2_tiny/hf/model.safetensors`);
  const t: Parameters<typeof writeSafetensors>[1] = {};
  for (const n of f.names()) {
    const data = await f.float32(n);
    t[n] = n === name
      ? { dtype, shape: [...f.info(n).shape], data: dtype === "I32" ? Int32Array.from(data, (v) => v * 1000) : Int16Array.from(data, (v) => v * 1000) }
      : { dtype: "F32", shape: [...f.info(n).shape], data };
  }
  await writeSafetensors(join(dir, "model.safetensors"), t);
  return dir;
} // deno-fmt-ignore

Deno.test("weights of integer dtypes are refused where floats are expected", async () => {
  for (const dtype of ["I32", "I16"] as const) {
    const dir = await withIntegerWeight("transformer.h.0.mlp.c_fc.weight", dtype);
    await assert.rejects(
      () => HookedTransformer.fromPretrained(dir),
      (e) =>
        e instanceof WeightsError && e.message.includes("[transformer.h.0.mlp.c_fc.weight]") &&
        e.message.includes(`dtype ${dtype} is an integer type`),
    );
  }
  // An SAE too.
  const dir = await Deno.makeTempDir();
  const src = `${REF}gpt2_tiny/saes/std_resid_pre1`;
  await Deno.copyFile(`${src}/cfg.json`, join(dir, "cfg.json"));
  using f = await SafetensorsFile.open(`${src}/sae_weights.safetensors`);
  const t: Parameters<typeof writeSafetensors>[1] = {};
  for (const n of f.names()) {
    const data = await f.float32(n);
    const shape = [...f.info(n).shape];
    t[n] = n === "W_dec"
      ? { dtype: "I32", shape, data: Int32Array.from(data) }
      : { dtype: "F32", shape, data };
  }
  await writeSafetensors(join(dir, "sae_weights.safetensors"), t);
  await assert.rejects(
    () => SAE.load(dir),
    (e) => e instanceof WeightsError && /\[W_dec\]: dtype I32 is an integer type/.test(e.message),
  );
});

/** Runs `fn` with a named pipe at `path`; a reader left waiting is released after 5 s. */
async function withFifo(path: string, fn: () => Promise<unknown>): Promise<unknown> {
  await Deno.remove(path).catch(() => {});
  const mk = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(mk.success, "mkfifo");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise((_, reject) => {
    timer = setTimeout(async () => {
      // Unblock the reader (a writer that closes at once gives it EOF), then fail.
      const w = await Deno.open(path, { write: true }).catch(() => null);
      w?.close();
      reject(new Error(`reading ${path} hung`));
    }, 5000);
  });
  try {
    return await Promise.race([fn().then(() => null, (e) => e), hang]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("a named pipe in place of config, tokenizer, weights or SAE files is refused, not waited on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hooklens-fifo-" });
  const hf = `${REF}gpt2_tiny/hf`;
  for (const f of ["config.json", "model.safetensors"]) {
    await Deno.copyFile(join(hf, f), join(dir, f));
  }
  await Deno.copyFile(`${REF}tokenizer_gpt2/tokenizer.json`, join(dir, "tokenizer.json"));
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
    const keep = await Deno.readFile(join(dir, f)).catch(() => null);
    const e = await withFifo(join(dir, f), () => HookedTransformer.fromPretrained(dir));
    assert.ok(e instanceof FormatError, `${f}: ${e}`);
    assert.match((e as Error).message, new RegExp(`${f}: is a named pipe, not a regular file`));
    await Deno.remove(join(dir, f));
    if (keep) await Deno.writeFile(join(dir, f), keep);
  }
  const sae = await Deno.makeTempDir();
  await Deno.copyFile(`${REF}gpt2_tiny/saes/std_resid_pre1/cfg.json`, join(sae, "cfg.json"));
  const e = await withFifo(join(sae, "sae_weights.safetensors"), () => SAE.load(sae));
  assert.ok(e instanceof FormatError && /named pipe/.test(e.message), String(e));
}); // deno-fmt-ignore

Deno.test("a buffer under the adapter's limit is not refused; one over it quotes the real figures", () => {
  const max = runtime().gpu.limits.maxBufferSize;
  // 1.65 GB: rounded up to the next power of two (2 GiB) it would exceed a 2 GiB - 1 limit.
  const elems = Math.floor(Math.min(1.65e9, max - 256) / 4);
  {
    using t = Tensor.empty([elems]);
    assert.equal(t.shape[0], elems);
  }
  const over = Math.floor(max / 4) + 1;
  assert.throws(
    () => Tensor.empty([over]),
    (e) =>
      e instanceof GpuLimitError &&
      e.message.includes(`requested ${over * 4} bytes, the adapter allows at most ${max}`),
  );
});

Deno.test("a failed backward pass leaks no GPU buffer", async () => {
  const s = runtime().stats;
  const inUse = () => ({ pool: s.poolBuffers - s.poolFree, data: s.dataBytes });
  const fail = () =>
    model.runWithCache([[1, 2, 3, 4]], { inclBwd: true }).then(
      () => assert.fail("expected an error"),
      (e) => assert.match(String(e), /bwd hook failed/),
    );
  model.addHook("blocks.0.hook_resid_pre", () => {
    throw new Error("bwd hook failed");
  }, { dir: "bwd" });
  try {
    await fail(); // warm the pool
    const before = inUse();
    for (let i = 0; i < 3; i++) await fail();
    assert.deepEqual(inUse(), before);
  } finally {
    model.resetHooks();
  }
  // A metric that fails after the loss exists, too.
  const before = inUse();
  for (let i = 0; i < 3; i++) {
    await assert.rejects(() =>
      model.runWithCache([[1, 2, 3, 4]], {
        inclBwd: true,
        returnType: { gradient: () => Promise.reject(new Error("metric failed")) },
      } as never)
    );
  }
  assert.deepEqual(inUse(), before);
});

Deno.test("strict inputs: dispose the model", () => model.dispose());
