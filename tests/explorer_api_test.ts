// The explorer's JSON API as an attacker or a careless client meets it (no browser): the Host must
// be this server's loopback name (DNS rebinding), an Origin must be the page's own (other web
// pages), bodies and texts are capped with a 413, bad input gets a 4xx JSON error, a scan takes
// turns with requests and can be cancelled, requests whose client went away are dropped, and a
// busy port is a typed error.
import assert from "node:assert/strict";
import { loadModelAndSae } from "../src/cli.ts";
import { ExplorerError, serveExplorer } from "../src/explore/server.ts";

const { model, sae } = await loadModelAndSae(undefined, undefined);
const snippet = "def add(a, b):\n    return a + b\n";
const corpus = Array.from({ length: 40 }, (_, i) => `${snippet}# ${i}\nprint(add(${i}, 2))`);
const ex = await serveExplorer({ model, sae, corpus, port: 0, maxBodyBytes: 4096 });
const own = `127.0.0.1:${ex.port}`;

/** One raw HTTP/1.1 request (fetch does not let a client choose Host): status and JSON body. */
async function raw(
  method: string,
  path: string,
  headers: Record<string, string>,
  body = "",
): Promise<{ status: number; json: Record<string, unknown> }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: ex.port });
  const bytes = new TextEncoder().encode(body);
  const head = [
    `${method} ${path} HTTP/1.1`,
    ...Object.entries({ connection: "close", ...headers }).map(([k, v]) => `${k}: ${v}`),
    ...(method === "POST" ? [`content-length: ${bytes.length}`] : []),
  ].join("\r\n") + "\r\n\r\n";
  await conn.write(new TextEncoder().encode(head));
  if (bytes.length) await conn.write(bytes);
  const chunks: Uint8Array[] = [];
  for await (const c of conn.readable) chunks.push(c);
  const text = new TextDecoder().decode(
    Uint8Array.from(chunks.flatMap((c) => [...c])),
  );
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]);
  const payload = text.slice(text.indexOf("\r\n\r\n") + 4);
  // Chunked bodies: the JSON object is between the first "{" and the last "}".
  const json = JSON.parse(payload.slice(payload.indexOf("{"), payload.lastIndexOf("}") + 1));
  return { status, json };
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  raw(
    "POST",
    path,
    { host: own, "content-type": "application/json", ...headers },
    typeof body === "string" ? body : JSON.stringify(body),
  ); // deno-fmt-ignore

Deno.test("explorer: Host must be this server's loopback name, Origin the page's own", async () => {
  for (const host of [`evil.example:${ex.port}`, "127.0.0.1:1", `localhost.evil.example:${ex.port}`]) {
    const r = await raw("GET", "/api/info", { host });
    assert.equal(r.status, 403, host);
    assert.match(String(r.json.error), /not this explorer/);
  }
  const ok = await raw("GET", "/api/info", { host: `localhost:${ex.port}` });
  assert.equal(ok.status, 200);
  for (const origin of ["http://evil.example", `http://localhost:${ex.port}`, "null"]) {
    const r = await post("/api/features", { text: "def f(x):" }, { origin });
    assert.equal(r.status, 403, origin);
    assert.match(String(r.json.error), /not allowed/);
  }
  const same = await post("/api/features", { text: "def f(x):" }, { origin: `http://${own}` });
  assert.equal(same.status, 200);
  assert.ok(Array.isArray(same.json.tokens));
}); // deno-fmt-ignore

Deno.test("explorer: bodies and texts are capped (413 with a message), bad input is a 4xx JSON error", async () => {
  const big = await post("/api/features", { text: "x".repeat(5000) });
  assert.equal(big.status, 413);
  assert.match(String(big.json.error), /larger than 4096 bytes/);
  using ex2 = { ...await serveExplorer({ model, sae, corpus, port: 0, maxTextChars: 100 }), [Symbol.dispose]() {} };
  const long = await fetch(`${ex2.url}api/features`, { method: "POST", body: JSON.stringify({ text: "y".repeat(101) }) });
  assert.equal(long.status, 413);
  assert.match((await long.json()).error, /101 characters, more than the 100/);
  await ex2.shutdown();
  const cases: [unknown, RegExp][] = [
    ["{not json", /not JSON/],
    ["[1, 2]", /JSON object/],
    [{ text: 42 }, /text must be a string/],
    [{ text: "" }, /text is empty/],
    [{ text: "def", top: "9" }, /top must be an integer/],
    [{ text: "def", top: -1 }, /top must be an integer/],
    // Longer than the model's context: the model's InputError, as a 400.
    [{ text: "x = 1\n".repeat(400) }, /longer than the model's context/],
  ];
  for (const [body, re] of cases) {
    const r = await post("/api/features", body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(String(r.json.error), re);
  }
  for (const body of [{ text: "def", latent: "3" }, { text: "def", latent: 1e9 }, { text: "def", latent: 1.5 }]) {
    const r = await post("/api/latent", body);
    assert.equal(r.status, 400, JSON.stringify(body));
  }
  const mode = await post("/api/intervene", { text: "def", latent: 3, mode: "explode" });
  assert.equal(mode.status, 400);
  const scale = await post("/api/intervene", { text: "def", latent: 3, mode: "steer", scale: "big" });
  assert.equal(scale.status, 400);
  const none = await raw("GET", "/api/nothing", { host: own });
  assert.equal(none.status, 404);
}); // deno-fmt-ignore

Deno.test("explorer: a scan takes turns with other requests and can be cancelled", async () => {
  const start = await post("/api/scan", {});
  assert.equal(start.json.status, "running");
  // A request made while the scan runs is answered before the scan ends.
  const r = await post("/api/features", { text: "def f(x):" });
  assert.equal(r.status, 200);
  const mid = await raw("GET", "/api/scan", { host: own });
  assert.equal(mid.json.status, "running", "the request did not wait for the whole scan");
  assert.ok((mid.json.done as number) < corpus.length);
  const del = await raw("DELETE", "/api/scan", { host: own });
  assert.equal(del.json.status, "cancelled");
  await new Promise((r) => setTimeout(r, 300));
  const after = await raw("GET", "/api/scan", { host: own });
  assert.equal(after.json.status, "cancelled");
  assert.ok((after.json.done as number) < corpus.length, "cancelled before the end");
});

Deno.test("explorer: requests whose client has gone are dropped before they run", async () => {
  // Keep the GPU queue busy with a scan, then send requests and abort them at once.
  await post("/api/scan", {});
  const before = { ...ex.stats };
  const aborts = Array.from({ length: 5 }, async () => {
    const ac = new AbortController();
    const p = fetch(`${ex.url}api/features`, {
      method: "POST",
      body: JSON.stringify({ text: "def f(x):" }),
      signal: ac.signal,
    }).catch(() => null);
    await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    await p;
  });
  await Promise.all(aborts);
  await raw("DELETE", "/api/scan", { host: own });
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(
    ex.stats.jobsDropped - before.jobsDropped >= 1,
    JSON.stringify({ before, after: ex.stats }),
  );
}); // deno-fmt-ignore

Deno.test("explorer: a busy port is a typed error that says what to do", async () => {
  await assert.rejects(
    () => serveExplorer({ model, sae, corpus, port: ex.port }),
    (e) => e instanceof ExplorerError && /in use.*--port 0/.test(e.message),
  );
});

Deno.test("explorer API: shut down", async () => {
  await ex.shutdown();
  model.dispose();
  sae.dispose();
});
