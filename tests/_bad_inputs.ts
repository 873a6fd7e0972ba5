// The cases of the README's "What bad input gets" table: each produces the error the table shows.
import { join } from "node:path";
import { HookedSAETransformer, SAE, Tensor } from "../mod.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import { hubFile } from "../src/io/hub.ts";

const REF = new URL("./reference/", import.meta.url).pathname;

/** Runs `fn` and returns what it threw. */
async function thrown(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error, none was thrown");
}

/** Writes a copy of gpt2_tiny's checkpoint with `edit` applied to its tensors. */
async function editedModel(
  edit: (t: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }>) => void,
): Promise<string> {
  const { SafetensorsFile } = await import("../src/io/safetensors.ts");
  const dir = await Deno.makeTempDir({ prefix: "hooklens-bad-" });
  await Deno.copyFile(`${REF}gpt2_tiny/hf/config.json`, join(dir, "config.json"));
  using f = await SafetensorsFile.open(`${REF}gpt2_tiny/hf/model.safetensors`);
  const t: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const n of f.names()) {
    t[n] = { dtype: "F32", shape: [...f.info(n).shape], data: await f.float32(n) };
  }
  edit(t);
  await writeSafetensors(join(dir, "model.safetensors"), t);
  return dir;
}

/** Case name (the table's first column) -> the error it produces. */
export async function badInputCases(): Promise<Record<string, () => Promise<Error>>> {
  const model = await HookedSAETransformer.fromPretrained(`${REF}gpt2_tiny/hf`, {
    modelName: "tiny",
  });
  return {
    "unknown hook name": () => thrown(() => model.addHook("blocks.0.hook_resid_prex", () => {})),
    "SAE d_in mismatch": () =>
      thrown(async () => {
        const sae = await SAE.load(`${REF}rmsgqa_tiny/saes/std_resid_post1`);
        const dir = await Deno.makeTempDir();
        const cfg = JSON.parse(
          await Deno.readTextFile(`${REF}gpt2_tiny/saes/std_resid_pre1/cfg.json`),
        );
        cfg.d_in = 32;
        await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
        await writeSafetensors(join(dir, "sae_weights.safetensors"), {
          W_enc: { dtype: "F32", shape: [32, 256], data: new Float32Array(32 * 256) },
          b_enc: { dtype: "F32", shape: [256], data: new Float32Array(256) },
          W_dec: { dtype: "F32", shape: [256, 32], data: new Float32Array(256 * 32) },
          b_dec: { dtype: "F32", shape: [32], data: new Float32Array(32) },
        });
        sae.dispose();
        model.addSae(await SAE.load(dir));
      }),
    "SAE for another model": () =>
      thrown(async () => {
        const dir = await Deno.makeTempDir();
        const cfg = JSON.parse(
          await Deno.readTextFile(`${REF}gpt2_tiny/saes/std_resid_pre1/cfg.json`),
        );
        cfg.metadata.model_name = "gpt2-medium";
        await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
        await Deno.copyFile(
          `${REF}gpt2_tiny/saes/std_resid_pre1/sae_weights.safetensors`,
          join(dir, "sae_weights.safetensors"),
        );
        model.addSae(await SAE.load(dir));
      }),
    "token id >= vocabulary": () => thrown(() => model.forward([[1, 2, 1000]])),
    "sequence longer than n_ctx": () => thrown(() => model.forward([Array(65).fill(1)])),
    "empty input": () => thrown(() => model.forward([[]])),
    "attention mask with a gap": () =>
      thrown(() => model.forward([[1, 2, 3, 4]], { attentionMask: [[1, 0, 1, 1]] })),
    "NaN/Inf in weights": () =>
      thrown(async () =>
        HookedSAETransformer.fromPretrained(
          await editedModel((t) => (t["transformer.h.0.mlp.c_fc.weight"].data[3] = Infinity)),
        )
      ),
    "unsupported architecture": () =>
      thrown(async () => {
        const dir = await Deno.makeTempDir();
        await Deno.writeTextFile(
          join(dir, "config.json"),
          JSON.stringify({ architectures: ["T5ForConditionalGeneration"] }),
        );
        await HookedSAETransformer.fromPretrained(dir);
      }),
    "missing tensor": () =>
      thrown(async () =>
        HookedSAETransformer.fromPretrained(
          await editedModel((t) => delete t["transformer.ln_f.bias"]),
        )
      ),
    "extra tensor": () =>
      thrown(async () =>
        HookedSAETransformer.fromPretrained(
          await editedModel((
            t,
          ) => (t["transformer.h.2.attn.c_attn.weight"] = {
            dtype: "F32",
            shape: [1],
            data: new Float32Array(1),
          })),
        )
      ),
    "GPU out of memory": () => thrown(() => Tensor.empty([2 ** 30, 4])),
    "disposed tensor used again": () =>
      thrown(() => {
        const t = Tensor.from([1, 2], [2]);
        t.dispose();
        return t.add(1);
      }),
    "malformed safetensors": () =>
      thrown(async () => {
        const dir = await Deno.makeTempDir();
        await Deno.copyFile(`${REF}gpt2_tiny/hf/config.json`, join(dir, "config.json"));
        await Deno.writeFile(
          join(dir, "model.safetensors"),
          new Uint8Array([16, 0, 0, 0, 0, 0, 0, 0, 123, 34]),
        );
        await HookedSAETransformer.fromPretrained(dir);
      }),
    "unsupported rope type": () =>
      thrown(async () => {
        const dir = await Deno.makeTempDir();
        const cfg = JSON.parse(await Deno.readTextFile(`${REF}llama3_tiny/hf/config.json`));
        cfg.rope_scaling.rope_type = "yarn";
        await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(cfg));
        await Deno.copyFile(
          `${REF}llama3_tiny/hf/model.safetensors`,
          join(dir, "model.safetensors"),
        );
        await HookedSAETransformer.fromPretrained(dir);
      }),
    "malformed npz": () =>
      thrown(async () => {
        const dir = await Deno.makeTempDir();
        await Deno.writeFile(
          join(dir, "params.npz"),
          new Uint8Array([80, 75, 3, 4, 0, 0, 0, 0, 0, 0]),
        );
        await SAE.load(dir, { hookName: "blocks.0.hook_resid_post" });
      }),
    "unknown SAE release": () =>
      thrown(() => SAE.fromPretrained("gpt2-small-res-jbb", "blocks.8.hook_resid_pre")),
    "token id in an int32 Tensor": () =>
      thrown(() => model.forward(Tensor.from([1, 2, 1_000_000], [1, 3], "int32"))),
    "integer weights": () =>
      thrown(async () => {
        const dir = await editedModel(() => {});
        const { SafetensorsFile } = await import("../src/io/safetensors.ts");
        using f = await SafetensorsFile.open(`${REF}gpt2_tiny/hf/model.safetensors`);
        const t: Parameters<typeof writeSafetensors>[1] = {};
        for (const n of f.names()) {
          const data = await f.float32(n);
          t[n] = n === "transformer.h.0.mlp.c_fc.weight"
            ? { dtype: "I32", shape: [...f.info(n).shape], data: Int32Array.from(data) }
            : { dtype: "F32", shape: [...f.info(n).shape], data };
        }
        await writeSafetensors(join(dir, "model.safetensors"), t);
        await HookedSAETransformer.fromPretrained(dir);
      }),
    "named pipe instead of a file": () =>
      thrown(async () => {
        const dir = await Deno.makeTempDir();
        await new Deno.Command("mkfifo", { args: [join(dir, "config.json")] }).output();
        await HookedSAETransformer.fromPretrained(dir);
      }),
    "hub file name leaving the cache": () => thrown(() => hubFile("org/model", "../../x.json")),
    "hub revision not a name": () =>
      thrown(() => hubFile("org/model", "config.json", { revision: ".." })),
    "hub download failing verification": () =>
      thrown(async () => {
        // A local "hub" that answers an HTML page for config.json, as a proxy or rate limiter may.
        const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () =>
          new Response("<!doctype html><p>Too many requests</p>", {
            headers: { "x-repo-commit": "c0ffee" },
          }));
        const saved = [Deno.env.get("HF_ENDPOINT"), Deno.env.get("HF_HUB_CACHE")];
        Deno.env.set("HF_ENDPOINT", `http://127.0.0.1:${server.addr.port}`);
        Deno.env.set("HF_HUB_CACHE", await Deno.makeTempDir());
        try {
          await hubFile("org/model", "config.json");
        } finally {
          for (const [k, v] of [["HF_ENDPOINT", saved[0]], ["HF_HUB_CACHE", saved[1]]] as const) {
            if (v === undefined) {
              Deno.env.delete(k);
            } else Deno.env.set(k, v);
          }
          await server.shutdown();
        }
      }),
    "explorer port in use": () =>
      thrown(async () => {
        using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const { serveExplorer } = await import("../src/explore/server.ts");
        const sae = await SAE.load(`${REF}gpt2_tiny/saes/std_resid_pre1`);
        try {
          await serveExplorer({
            model,
            sae,
            corpus: [],
            port: (listener.addr as Deno.NetAddr).port,
          });
        } finally {
          sae.dispose();
        }
      }),
  };
} // deno-fmt-ignore
