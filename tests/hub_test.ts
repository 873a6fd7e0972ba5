// Hub downloads against a local HTTP server on 127.0.0.1 that serves the reference files the way
// the hub does (resolve URLs, x-repo-commit, sha256 ETags, ranges): a model and an SAE load, the
// cache is reused offline, downloads resume, and a 404, a truncated body, a wrong hash and an
// escaping file name all fail clearly.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { HookedTransformer, SAE } from "../mod.ts";
import { HubError, hubFile } from "../src/io/hub.ts";
import { maxRelErr } from "./_util.ts";

const REF = new URL("./reference/gpt2_tiny/", import.meta.url).pathname;
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** Files of the fake repos: repo -> path -> bytes. */
const repos: Record<string, Record<string, Uint8Array>> = {
  "test-org/tiny-gpt2": {
    "config.json": await Deno.readFile(`${REF}hf/config.json`),
    "model.safetensors": await Deno.readFile(`${REF}hf/model.safetensors`),
  },
  "test-org/tiny-saes": {
    "std/cfg.json": await Deno.readFile(`${REF}saes/std_resid_pre1/cfg.json`),
    "std/sae_weights.safetensors": await Deno.readFile(
      `${REF}saes/std_resid_pre1/sae_weights.safetensors`,
    ),
  },
};
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const faults = { truncate: "", wrongHash: "", token: "" };
const seenAuth: string[] = [];

const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
  const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(new URL(req.url).pathname);
  seenAuth.push(req.headers.get("authorization") ?? "");
  const file = m && repos[m[1]]?.[decodeURIComponent(m[3])];
  if (!m || !file) return new Response("not found", { status: 404 });
  const path = decodeURIComponent(m[3]);
  const lfs = path.endsWith(".safetensors");
  const headers: Record<string, string> = {
    "x-repo-commit": COMMIT,
    etag: `"${lfs ? (faults.wrongHash === path ? "f".repeat(64) : sha(file)) : "abc123"}"`,
    "content-length": String(file.length),
  };
  if (req.method === "HEAD") return new Response(null, { headers });
  const range = /bytes=(\d+)-/.exec(req.headers.get("range") ?? "");
  if (range) {
    const start = Number(range[1]);
    return new Response(file.slice(start) as Uint8Array<ArrayBuffer>, {
      status: 206,
      headers: { ...headers, "content-length": String(file.length - start) },
    });
  }
  if (faults.truncate === path) {
    // Announce the full length, send half, then end the stream.
    const half = file.slice(0, file.length >> 1);
    return new Response(
      new ReadableStream({
        start(c) {
          c.enqueue(half);
          c.close();
        },
      }),
      { headers },
    );
  }
  return new Response(file as Uint8Array<ArrayBuffer>, { headers });
}); // deno-fmt-ignore

const cache = await Deno.makeTempDir({ prefix: "hooklens-hub-" });
Deno.env.set("HF_ENDPOINT", `http://127.0.0.1:${server.addr.port}`);
Deno.env.set("HF_HUB_CACHE", cache);
Deno.env.set("HF_TOKEN", "hf_test_token");

Deno.test("a model and an SAE load from the hub by id, into the hub cache layout; offline reuses the cache", async () => {
  using model = await HookedTransformer.fromPretrained("test-org/tiny-gpt2");
  using local = await HookedTransformer.fromPretrained(`${REF}hf`);
  using a = await model.forward([[1, 2, 3]]);
  using b = await local.forward([[1, 2, 3]]);
  assert.equal(maxRelErr(await a.toArray(), await b.toArray()), 0);
  assert.ok(seenAuth.includes("Bearer hf_test_token"), "HF_TOKEN is sent");
  const snap = `${cache}/models--test-org--tiny-gpt2/snapshots/${COMMIT}`;
  assert.ok((await Deno.stat(`${snap}/model.safetensors`)).isFile);
  assert.equal(
    (await Deno.readTextFile(`${cache}/models--test-org--tiny-gpt2/refs/main`)).trim(),
    COMMIT,
  );
  using sae = await SAE.load("test-org/tiny-saes/std");
  assert.equal(sae.cfg.hookName, "blocks.1.hook_resid_pre");
  // Offline: served from the cache, no request made.
  Deno.env.set("HF_HUB_OFFLINE", "1");
  try {
    const n = seenAuth.length;
    using _again = await HookedTransformer.fromPretrained("test-org/tiny-gpt2");
    assert.equal(seenAuth.length, n, "no request in offline mode");
    await assert.rejects(
      () => hubFile("test-org/other", "config.json"),
      (e) => e instanceof HubError && /offline/.test(e.message),
    );
  } finally {
    Deno.env.delete("HF_HUB_OFFLINE");
  }
}); // deno-fmt-ignore

Deno.test("404, truncated body, wrong hash and escaping names fail clearly; a broken download resumes", async () => {
  await assert.rejects(() => HookedTransformer.fromPretrained("test-org/missing"), (e) => e instanceof HubError && /no file "config\.json"/.test(e.message));
  const saesRepo = repos["test-org/tiny-saes"];
  saesRepo["big/cfg.json"] = saesRepo["std/cfg.json"];
  // Different bytes (one weight changed) so the blob is not already cached under the same hash.
  saesRepo["big/sae_weights.safetensors"] = saesRepo["std/sae_weights.safetensors"].slice();
  saesRepo["big/sae_weights.safetensors"][saesRepo["std/sae_weights.safetensors"].length - 3] ^= 1;
  faults.truncate = "big/sae_weights.safetensors";
  await assert.rejects(() => SAE.load("test-org/tiny-saes/big"), (e) => e instanceof HubError && /broke off|truncated/.test(e.message));
  const part = (await Array.fromAsync(Deno.readDir(`${cache}/models--test-org--tiny-saes/blobs`))).find((e) => e.name.endsWith(".incomplete"));
  assert.ok(part, "the partial download is kept for resuming");
  faults.truncate = "";
  using sae = await SAE.load("test-org/tiny-saes/big");
  assert.equal(sae.cfg.dSae, 256);
  // Wrong hash: rejected and nothing left in the cache.
  saesRepo["bad/cfg.json"] = saesRepo["std/cfg.json"];
  saesRepo["bad/sae_weights.safetensors"] = saesRepo["std/sae_weights.safetensors"].slice();
  saesRepo["bad/sae_weights.safetensors"][saesRepo["std/sae_weights.safetensors"].length - 7] ^= 1;
  faults.wrongHash = "bad/sae_weights.safetensors";
  await assert.rejects(() => SAE.load("test-org/tiny-saes/bad"), (e) => e instanceof HubError && /sha256/.test(e.message));
  for (const bad of ["../escape.json", "a/../../b", "/etc/passwd", "a\\b"]) {
    await assert.rejects(() => hubFile("test-org/tiny-gpt2", bad), (e) => e instanceof HubError && /leave the cache/.test(e.message), bad);
  }
}); // deno-fmt-ignore

Deno.test("stop the local hub server", async () => {
  Deno.env.delete("HF_ENDPOINT");
  Deno.env.delete("HF_HUB_CACHE");
  Deno.env.delete("HF_TOKEN");
  await server.shutdown();
});
