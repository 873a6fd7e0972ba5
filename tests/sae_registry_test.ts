// SAE.fromPretrained(release, saeId) through the registry (src/sae/pretrained_saes.json), against a
// local hub server on 127.0.0.1 that serves the reference SAEs under the real releases' repository
// paths: a SAELens-format SAE (gpt2-small-res-jb), a Gemma Scope params.npz (canonical id ->
// average_l0 folder, hook from the registry) and a synthetic Llama Scope folder load through the
// hub cache, offline use reads the cache without a request, and unknown names fail clearly.
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
import { encodeSafetensors } from "../src/io/safetensors.ts";
import { maxRelErr, randArray } from "./_util.ts";

const GPT2 = new URL("./reference/gpt2_tiny/saes/std_resid_pre1/", import.meta.url).pathname;
const GEMMA =
  new URL("./reference/gemma2_tiny/saes/gemmascope_blocks_1_hook_resid_post/", import.meta.url)
    .pathname;
const COMMIT = "89abcdef0123456789abcdef0123456789abcdef";

// A synthetic Llama Scope folder (d_model 8, d_sae 16): the format has no reference fixture, so its
// loader is checked against a float64 computation of SAELens's llama_scope loader + its folding of
// the release's norm_scaling_factor (W_enc * s, W_dec / s, b_dec / s, threshold * sqrt(d) / norm).
const LS = { d: 8, n: 16, s: 58.935251798561154, jrt: 0.004 }; // s: llama_scope_lxr_8x / l0r_8x
const ls = {
  enc: randArray(LS.n * LS.d, 21).map((v) => v * 0.3), // [d_sae, d_model]
  encB: randArray(LS.n, 22).map((v) => v * 0.5),
  dec: randArray(LS.d * LS.n, 23), // [d_model, d_sae]
  decB: randArray(LS.d, 24),
};
const lsHyper = new TextEncoder().encode(JSON.stringify({
  d_model: LS.d,
  d_sae: LS.n,
  jump_relu_threshold: LS.jrt,
  hook_point_in: "blocks.0.hook_resid_post",
  dataset_average_activation_norm: { in: Math.sqrt(LS.d) / LS.s, out: 1 },
})); // deno-fmt-ignore
const lsWeights = encodeSafetensors({
  "encoder.weight": { dtype: "F32", shape: [LS.n, LS.d], data: ls.enc },
  "encoder.bias": { dtype: "F32", shape: [LS.n], data: ls.encB },
  "decoder.weight": { dtype: "F32", shape: [LS.d, LS.n], data: ls.dec },
  "decoder.bias": { dtype: "F32", shape: [LS.d], data: ls.decB },
});

/** SAELens's Llama Scope SAE in float64: acts and reconstruction of x [rows, d], folded by s. */
function llamaScopeF64(x: ArrayLike<number>, s: number): { acts: number[]; recons: number[] } {
  const { d, n } = LS, thr = LS.jrt * Math.sqrt(d) / (Math.sqrt(d) / LS.s);
  const acts: number[] = [], recons: number[] = [];
  for (let r = 0; r < x.length / d; r++) {
    const a: number[] = [];
    for (let j = 0; j < n; j++) {
      let p = ls.encB[j];
      for (let i = 0; i < d; i++) p += x[r * d + i] * ls.enc[j * d + i] * s;
      a.push(p > thr ? p : 0);
    }
    acts.push(...a);
    for (let i = 0; i < d; i++) {
      let y = ls.decB[i] / s;
      for (let j = 0; j < n; j++) y += a[j] * ls.dec[i * n + j] / s;
      recons.push(y);
    }
  }
  return { acts, recons };
}

const files: Record<string, Uint8Array> = {
  "fnlp/Llama3_1-8B-Base-LXR-8x/Llama3_1-8B-Base-L0R-8x/hyperparams.json": lsHyper,
  "fnlp/Llama3_1-8B-Base-LXR-8x/Llama3_1-8B-Base-L0R-8x/checkpoints/final.safetensors": lsWeights,
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
      (e) => e instanceof HubError && /neither cfg\.json/.test(e.message),
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

Deno.test("fromPretrained: a local directory keeps working; unknown names are typed errors", async () => {
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
    assert.equal(requests.length, n, "nothing is downloaded for an unknown name");
  });
}); // deno-fmt-ignore

Deno.test("Llama Scope: by release name (norm scaling folded) and from a folder (not folded) as SAELens computes", async () => {
  const x = randArray(5 * LS.d, 25).map((v) => v * 0.05);
  const check = async (sae: SAE, s: number) => {
    using t = Tensor.from(x, [5, LS.d]);
    using acts = await sae.encode(t);
    using recons = await sae.decode(acts);
    const want = llamaScopeF64(x, s);
    assert.ok(want.acts.some((v) => v > 0) && want.acts.some((v) => v === 0), "some latents fire, some do not");
    assert.ok(maxRelErr(await acts.toArray(), want.acts) < 1e-5, `acts ${maxRelErr(await acts.toArray(), want.acts)}`);
    assert.ok(maxRelErr(await recons.toArray(), want.recons) < 1e-5, "reconstruction");
  };
  await withHub(async () => {
    using sae = await SAE.fromPretrained("llama_scope_lxr_8x", "l0r_8x");
    assert.equal(sae.cfg.hookName, "blocks.0.hook_resid_post", "from hyperparams.json");
    assert.equal(sae.cfg.modelName, "meta-llama/Llama-3.1-8B");
    assert.equal(sae.cfg.normalizeActivations, "none", "folded");
    await check(sae, LS.s);
    // The same folder by hub path: SAELens has no factor there and leaves the input scaling unfolded.
    using byPath = await SAE.load("fnlp/Llama3_1-8B-Base-LXR-8x/Llama3_1-8B-Base-L0R-8x");
    assert.equal(byPath.cfg.normalizeActivations, "expected_average_only_in");
    await check(byPath, 1);
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
