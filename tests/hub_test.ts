// Hub downloads against a local HTTP server on 127.0.0.1 that serves the reference files the way
// the hub does (resolve URLs, x-repo-commit, sha256 ETags, ranges): a model and an SAE load, the
// cache is reused offline, downloads resume, and a 404, a truncated body, a wrong hash and an
// escaping file name all fail clearly.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { HookedTransformer, SAE } from "../mod.ts";
import {
  HubError,
  hubFile,
  isHubId,
  MAX_UNANNOUNCED_BYTES,
  resolveModelAlias,
} from "../src/io/hub.ts";
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
/** Per-file misbehaviour: a body other than the file's, no announced length, another commit. */
const serve: Record<
  string,
  { body?: Uint8Array | "endless"; noLength?: boolean; commit?: string; etag?: string }
> = {};
const seenAuth: string[] = [];
const requested: string[] = [];

const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
  const m = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(new URL(req.url).pathname);
  seenAuth.push(req.headers.get("authorization") ?? "");
  const file = m && repos[m[1]]?.[decodeURIComponent(m[3])];
  if (!m || !file) return new Response("not found", { status: 404 });
  const path = decodeURIComponent(m[3]);
  requested.push(`${req.method} ${m[1]}/${path}`);
  const lfs = path.endsWith(".safetensors");
  const over = serve[`${m[1]}/${path}`] ?? {};
  const headers: Record<string, string> = {
    "x-repo-commit": over.commit ?? COMMIT,
    etag: `"${
      over.etag ?? (lfs ? (faults.wrongHash === path ? "f".repeat(64) : sha(file)) : "abc123")
    }"`,
    ...(over.noLength ? {} : { "content-length": String(file.length) }),
  };
  // (A HEAD answered with a null body gets "content-length: 0"; a stream body gets none.)
  const noBody = () => over.noLength ? new ReadableStream({ start: (c) => c.close() }) : null;
  if (over.body) {
    if (req.method === "HEAD") return new Response(noBody(), { headers });
    // A body other than the file (an HTML page, a cut-off or endless stream) with no length.
    let sent = 0;
    const body = over.body;
    return new Response(
      new ReadableStream({
        pull(c) {
          if (body === "endless") {
            // "Endless" up to 128 MiB: past any cap, short of filling a disk where there is none.
            c.enqueue(new Uint8Array(1 << 16).fill(32));
            if ((sent += 1 << 16) >= 128 * 2 ** 20) c.close();
          } else {
            c.enqueue(body.slice(sent, sent + (1 << 16)));
            sent += 1 << 16;
            if (sent >= body.length) c.close();
          }
        },
      }),
      { headers: { "x-repo-commit": headers["x-repo-commit"], etag: headers.etag } },
    );
  }
  if (req.method === "HEAD") return new Response(noBody(), { headers });
  const range = /bytes=(\d+)-/.exec(req.headers.get("range") ?? "");
  if (range) {
    const start = Number(range[1]);
    if (start >= file.length) return new Response(null, { status: 416, headers }); // as the hub does
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
  await assert.rejects(() => HookedTransformer.fromPretrained("test-org/missing"), (e) => e instanceof HubError && /neither a local model directory nor a model on the hub .*has no config\.json/.test(e.message));
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

const cfgBytes = repos["test-org/tiny-gpt2"]["config.json"];
const html = new TextEncoder().encode("<!doctype html><html><body>Rate limited</body></html>");

Deno.test("hub: wrong content without a sha256 (HTML page, cut-off JSON, bad safetensors) is refused, never cached, and fetched again once right", async () => {
  repos["test-org/unhashed"] = {
    "config.json": cfgBytes,
    "model.safetensors": repos["test-org/tiny-gpt2"]["model.safetensors"],
  };
  const snap = `${cache}/models--test-org--unhashed/snapshots/${COMMIT}`;
  for (const body of [html, cfgBytes.slice(0, cfgBytes.length >> 1)]) {
    serve["test-org/unhashed/config.json"] = { body, noLength: true };
    await assert.rejects(
      () => hubFile("test-org/unhashed", "config.json"),
      (e) =>
        e instanceof HubError &&
        /config\.json: is not valid JSON.*nothing was cached/.test(e.message),
    );
    assert.equal(
      await Deno.stat(`${snap}/config.json`).then(() => true, () => false),
      false,
      "nothing cached",
    );
  }
  // A safetensors file served with a non-sha256 ETag: checked by parsing it.
  const st = repos["test-org/tiny-gpt2"]["model.safetensors"];
  serve["test-org/unhashed/model.safetensors"] = {
    body: st.slice(0, st.length - 100),
    noLength: true,
    etag: "abc456",
  };
  await assert.rejects(
    () => hubFile("test-org/unhashed", "model.safetensors"),
    (e) => e instanceof HubError && /not a valid safetensors file/.test(e.message),
  );
  delete serve["test-org/unhashed/config.json"];
  delete serve["test-org/unhashed/model.safetensors"];
  const p = await hubFile("test-org/unhashed", "config.json");
  assert.deepEqual(await Deno.readFile(p!), cfgBytes);
});

Deno.test("hub: a cached file that fails verification is fetched again (and reported offline)", async () => {
  repos["test-org/damaged"] = { "config.json": cfgBytes };
  const p = (await hubFile("test-org/damaged", "config.json"))!;
  await Deno.writeTextFile(p, "<html>not json</html>");
  Deno.env.set("HF_HUB_OFFLINE", "1");
  try {
    await assert.rejects(
      () => hubFile("test-org/damaged", "config.json"),
      (e) =>
        e instanceof HubError && /cached copy .*not valid JSON.*removed.*Offline/.test(e.message),
    );
  } finally {
    Deno.env.delete("HF_HUB_OFFLINE");
  }
  // Only the snapshot damaged: rebuilt from the blob, which still checks out.
  await Deno.writeTextFile(p, "<html>not json</html>");
  assert.deepEqual(
    await Deno.readFile((await hubFile("test-org/damaged", "config.json"))!),
    cfgBytes,
  );
  // Snapshot and blob damaged: downloaded again.
  await Deno.writeTextFile(p, "<html>not json</html>");
  await Deno.writeTextFile(
    `${cache}/models--test-org--damaged/blobs/abc123`,
    "<html>not json</html>",
  );
  const before = requested.length;
  const again = (await hubFile("test-org/damaged", "config.json"))!;
  assert.equal(again, p);
  assert.deepEqual(await Deno.readFile(again), cfgBytes);
  assert.ok(requested.slice(before).includes("GET test-org/damaged/config.json"), "fetched again");
});

Deno.test("hub: a download complete on disk but not yet checked is checked, not requested again", async () => {
  repos["test-org/done"] = { "config.json": cfgBytes };
  await Deno.mkdir(`${cache}/models--test-org--done/blobs`, { recursive: true });
  await Deno.writeFile(`${cache}/models--test-org--done/blobs/abc123.incomplete`, cfgBytes);
  const p = await hubFile("test-org/done", "config.json");
  assert.deepEqual(await Deno.readFile(p!), cfgBytes);
});

Deno.test("hub: with no announced size the download is capped", async () => {
  repos["test-org/endless"] = { "tokenizer.json": cfgBytes };
  serve["test-org/endless/tokenizer.json"] = { body: "endless", noLength: true };
  await assert.rejects(
    () => hubFile("test-org/endless", "tokenizer.json", { maxUnannouncedBytes: 1 << 20 }),
    (e) =>
      e instanceof HubError && /more than 1048576 bytes without announcing a size/.test(e.message),
  );
  const blobs = await Array.fromAsync(Deno.readDir(`${cache}/models--test-org--endless/blobs`));
  assert.deepEqual(blobs, [], "the partial download is removed");
  assert.ok(MAX_UNANNOUNCED_BYTES <= 64 * 2 ** 20, "a default cap applies too");
});

Deno.test("hub: revisions, commits and file names must be plain path components", async () => {
  for (const rev of ["..", ".", "a/b", "../../x", ""]) {
    await assert.rejects(
      () => hubFile("test-org/tiny-gpt2", "config.json", { revision: rev }),
      (e) => e instanceof HubError && /Revision/.test(e.message),
      rev,
    );
  }
  assert.equal(
    await Deno.stat(`${cache}/models--test-org--tiny-gpt2/config.json`).then(
      () => true,
      () => false,
    ),
    false,
  );
  repos["test-org/evil-commit"] = { "config.json": cfgBytes };
  serve["test-org/evil-commit/config.json"] = { commit: ".." };
  await assert.rejects(
    () => hubFile("test-org/evil-commit", "config.json"),
    (e) => e instanceof HubError && /invalid commit id/.test(e.message),
  );
  for (const bad of ["a/./b", "a//b", "x\u0000y", "..", "a/.."]) {
    await assert.rejects(
      () => hubFile("test-org/tiny-gpt2", bad),
      (e) => e instanceof HubError && /Refusing file name/.test(e.message),
      bad,
    );
  }
  for (const repo of ["../x", "a/b/c", "./x", "a/..", ""]) {
    await assert.rejects(
      () => hubFile(repo, "config.json"),
      (e) => e instanceof HubError && /not a hub repository id/.test(e.message),
      repo,
    );
  }
});

Deno.test("hub: ids without an organisation and TransformerLens aliases load", async () => {
  repos["gpt2"] = { ...repos["test-org/tiny-gpt2"] };
  assert.ok(isHubId("gpt2"));
  using a = await HookedTransformer.fromPretrained("gpt2");
  assert.ok((await Deno.stat(`${cache}/models--gpt2/snapshots/${COMMIT}/config.json`)).isFile);
  using b = await HookedTransformer.fromPretrained("gpt2-small");
  assert.equal(b.cfg.modelName, "gpt2-small");
  using la = await a.forward([[1, 2, 3]]);
  using lb = await b.forward([[1, 2, 3]]);
  assert.deepEqual(await la.toArray(), await lb.toArray());
  assert.equal(resolveModelAlias("gpt2-small"), "gpt2");
  assert.equal(resolveModelAlias("pythia-70m"), "EleutherAI/pythia-70m");
  assert.equal(resolveModelAlias("Pythia-160M-deduped"), "EleutherAI/pythia-160m-deduped");
  assert.equal(resolveModelAlias("pythia-125m"), "EleutherAI/pythia-160m");
  assert.equal(resolveModelAlias("qwen2.5-0.5b-instruct"), "Qwen/Qwen2.5-0.5B-Instruct");
  assert.equal(resolveModelAlias("mistral-7b"), "mistralai/Mistral-7B-v0.1");
  assert.equal(resolveModelAlias("some-org/some-model"), "some-org/some-model");
});

Deno.test("stop the local hub server", async () => {
  Deno.env.delete("HF_ENDPOINT");
  Deno.env.delete("HF_HUB_CACHE");
  Deno.env.delete("HF_TOKEN");
  await server.shutdown();
  await Deno.remove(cache, { recursive: true });
});
