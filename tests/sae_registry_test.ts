// SAE.fromPretrained(release, saeId) through the registry (src/sae/pretrained_saes.json), against a
// local hub server on 127.0.0.1 that serves the reference SAEs under the real releases' repository
// paths: a SAELens-format SAE (gpt2-small-res-jb) and a Gemma Scope params.npz (canonical id ->
// average_l0 folder, hook from the registry) load through the hub cache, offline use reads the
// cache without a request, and unknown names and unsupported formats fail clearly.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  PretrainedSaeError,
  pretrainedSaeReleases,
  resolvePretrainedSae,
  SAE,
  Tensor,
} from "../mod.ts";
import { HubError } from "../src/io/hub.ts";
import { maxRelErr, randArray } from "./_util.ts";

const GPT2 = new URL("./reference/gpt2_tiny/saes/std_resid_pre1/", import.meta.url).pathname;
const GEMMA =
  new URL("./reference/gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post/", import.meta.url)
    .pathname;
const COMMIT = "89abcdef0123456789abcdef0123456789abcdef";

const files: Record<string, Uint8Array> = {
  "jbloom/GPT2-Small-SAEs-Reformatted/blocks.1.hook_resid_pre/cfg.json": await Deno.readFile(
    `${GPT2}cfg.json`,
  ),
  "jbloom/GPT2-Small-SAEs-Reformatted/blocks.1.hook_resid_pre/sae_weights.safetensors": await Deno
    .readFile(`${GPT2}sae_weights.safetensors`),
  "google/gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_102/params.npz": await Deno.readFile(
    `${GEMMA}params.npz`,
  ),
  "google/gemma-scope-2b-pt-res/embedding/width_4k/average_l0_6/params.npz": await Deno.readFile(
    `${GEMMA}params.npz`,
  ),
}; // deno-fmt-ignore
const requests: string[] = [];
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
  const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(new URL(req.url).pathname);
  requests.push(new URL(req.url).pathname);
  const key = m && `${m[1]}/${decodeURIComponent(m[3])}`;
  const file = key ? files[key] : undefined;
  if (!file) return new Response("not found", { status: 404 });
  const headers = {
    "x-repo-commit": COMMIT,
    etag: `"${sha(file)}"`,
    "content-length": String(file.length),
  };
  if (req.method === "HEAD") return new Response(null, { headers });
  return new Response(file as Uint8Array<ArrayBuffer>, { headers });
}); // deno-fmt-ignore

/** Runs fn with the hub pointed at the local server and a fresh cache; restores the env after. */
async function withHub(fn: (cache: string) => Promise<void>): Promise<void> {
  const keys = ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"];
  const saved = keys.map((k) => Deno.env.get(k));
  const cache = await Deno.makeTempDir({ prefix: "hooklens-registry-" });
  Deno.env.set("HF_ENDPOINT", `http://127.0.0.1:${server.addr.port}`);
  Deno.env.set("HF_HUB_CACHE", cache);
  Deno.env.delete("HF_HUB_OFFLINE");
  Deno.env.delete("HF_TOKEN");
  try {
    await fn(cache);
  } finally {
    keys.forEach((k, i) => saved[i] === undefined ? Deno.env.delete(k) : Deno.env.set(k, saved[i]!));
    await Deno.remove(cache, { recursive: true });
  }
}

async function sameActs(a: SAE, b: SAE, scaleIn = 1): Promise<number> {
  const x = randArray(3 * a.cfg.dIn, 11);
  using ta = Tensor.from(x.map((v) => v * scaleIn), [3, a.cfg.dIn]);
  using tb = Tensor.from(x, [3, b.cfg.dIn]);
  using ea = await a.encode(ta);
  using eb = await b.encode(tb);
  return maxRelErr(await ea.toArray(), await eb.toArray());
}

Deno.test("fromPretrained: a SAELens release and a Gemma Scope release load through the hub cache; offline reads it", async () => {
  await withHub(async (cache) => {
    using jb = await SAE.fromPretrained("gpt2-small-res-jb", "blocks.1.hook_resid_pre");
    using jbLocal = await SAE.load(GPT2);
    assert.equal(jb.cfg.hookName, "blocks.1.hook_resid_pre");
    assert.equal(await sameActs(jb, jbLocal), 0);
    const snap =
      `${cache}/models--jbloom--GPT2-Small-SAEs-Reformatted/snapshots/${COMMIT}/blocks.1.hook_resid_pre`;
    assert.ok(
      (await Deno.stat(`${snap}/sae_weights.safetensors`)).isFile,
      "in the hub cache layout",
    );

    // The canonical id resolves to its average_l0 folder; hook and model come from the registry.
    using gs = await SAE.fromPretrained(
      "gemma-scope-2b-pt-res-canonical",
      "layer_1/width_16k/canonical",
    );
    using gsLocal = await SAE.load(GEMMA);
    assert.equal(gs.cfg.hookName, "blocks.1.hook_resid_post");
    assert.equal(gs.cfg.modelName, "gemma-2-2b");
    assert.equal(gs.cfg.architecture, "jumprelu");
    assert.equal(await sameActs(gs, gsLocal), 0);
    assert.ok(requests.some((p) => p.endsWith("/layer_1/width_16k/average_l0_102/params.npz")));

    // Embedding SAEs are rescaled by sqrt(d_in) as SAELens does: input x*8 gives x's latents.
    using emb = await SAE.fromPretrained(
      "gemma-scope-2b-pt-res",
      "embedding/width_4k/average_l0_6",
    );
    assert.equal(emb.cfg.hookName, "hook_embed");
    assert.ok(await sameActs(emb, gsLocal, 8) < 1e-5);

    // A Gemma Scope folder by hub path (no cfg.json there): params.npz, hook from the caller.
    using byPath = await SAE.load("google/gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_102", {
      hookName: "blocks.1.hook_resid_post",
    });
    assert.equal(await sameActs(byPath, gsLocal), 0);
    await assert.rejects(
      () => SAE.load("google/gemma-scope-2b-pt-res/layer_2/width_16k/average_l0_1"),
      (e) => e instanceof PretrainedSaeError && /neither cfg\.json/.test(e.message),
    );

    // Offline: the cache answers, no request is made; an SAE never downloaded fails clearly.
    Deno.env.set("HF_HUB_OFFLINE", "1");
    const n = requests.length;
    using again = await SAE.fromPretrained(
      "gemma-scope-2b-pt-res-canonical",
      "layer_1/width_16k/canonical",
    );
    using _again2 = await SAE.fromPretrained("gpt2-small-res-jb", "blocks.1.hook_resid_pre");
    assert.equal(requests.length, n, "no request offline");
    assert.equal(await sameActs(again, gsLocal), 0);
    await assert.rejects(
      () => SAE.fromPretrained("gpt2-small-res-jb", "blocks.2.hook_resid_pre"),
      (e) => e instanceof HubError && /not in the local cache/.test(e.message),
    );
  });
}); // deno-fmt-ignore

Deno.test("fromPretrained: a local directory keeps working; unknown names and unread formats are typed errors", async () => {
  using local = await SAE.fromPretrained(GPT2);
  assert.equal(local.cfg.hookName, "blocks.1.hook_resid_pre");
  await withHub(async () => {
    const n = requests.length;
    await assert.rejects(
      () => SAE.fromPretrained("gpt2-small-res-jbb", "blocks.1.hook_resid_pre"),
      (e) => e instanceof PretrainedSaeError && /Unknown SAE release "gpt2-small-res-jbb"/.test(e.message) && e.message.includes("gpt2-small-res-jb,"),
    );
    await assert.rejects(
      () => SAE.fromPretrained("gemma-scope-2b-pt-res-canonical", "layer_99/width_16k/canonical"),
      (e) => e instanceof PretrainedSaeError && /has no SAE "layer_99/.test(e.message) && /layer_0\/width_16k\/canonical/.test(e.message),
    );
    await assert.rejects(
      () => SAE.fromPretrained("llama_scope_lxr_8x", "l15r_8x"),
      (e) => e instanceof PretrainedSaeError && /llama_scope's format/.test(e.message) && e.message.includes("fnlp/Llama3_1-8B-Base-LXR-8x"),
    );
    assert.equal(requests.length, n, "nothing is downloaded for a name that cannot load");
  });
}); // deno-fmt-ignore

Deno.test("registry: the releases SAELens names for GPT-2 small, Gemma Scope, Llama Scope and Pythia", () => {
  for (const r of ["gpt2-small-res-jb", "gemma-scope-2b-pt-res", "gemma-scope-2b-pt-res-canonical", "gemma-scope-2b-pt-mlp-canonical", "gemma-scope-2b-pt-att-canonical", "llama_scope_lxr_8x", "pythia-70m-deduped-res-sm"]) {
    assert.ok(pretrainedSaeReleases().includes(r), r);
  }
  assert.deepEqual(resolvePretrainedSae("gemma-scope-2b-pt-att-canonical", "layer_3/width_16k/canonical").hook, "blocks.3.attn.hook_z");
  assert.deepEqual(resolvePretrainedSae("gemma-scope-2b-pt-mlp", "layer_0/width_16k/average_l0_119").hook, "blocks.0.hook_mlp_out");
  const p = resolvePretrainedSae("pythia-70m-deduped-res-sm", "blocks.0.hook_resid_pre");
  assert.deepEqual([p.repo, p.path, p.format], ["ctigges/pythia-70m-deduped__res-sm_processed", "e-res-sm", "saelens"]);
}); // deno-fmt-ignore

Deno.test("stop the registry's hub server", async () => {
  await server.shutdown();
});
