/**
 * The feature explorer: a local web page (plain HTML/CSS/JS, no build) served by `Deno.serve` on
 * 127.0.0.1, talking to this process over a small JSON API; all computation stays here, on WebGPU.
 * Tokens are shaded by a chosen SAE latent; a token lists its top latents; a latent shows its
 * top-activating contexts over a corpus (a scan with progress that can be cancelled), its
 * activation histogram, the tokens its decoder direction promotes and suppresses through the
 * unembedding, and what ablating or steering it does to the next-token predictions.
 *
 * Only this machine's pages may use it: the Host header must be 127.0.0.1 or localhost with this
 * port (DNS rebinding), an Origin header must be the page's own (other web pages the user has
 * open), bodies and texts are capped (413), bad input gets a 4xx JSON error. GPU work runs as a
 * queue of jobs (a scan's documents take turns with requests), and a request whose client has
 * gone is dropped before it runs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
 * import { serveExplorer } from "./server.ts";
 *
 * using model = await HookedSAETransformer.fromPretrained("models/demo-pycode/hf");
 * using sae = await SAE.load("models/demo-pycode/sae");
 * const ex = await serveExplorer({ model, sae, corpus: ["def f(x):\n    return x"], port: 0 });
 * const page = await fetch(ex.url);
 * assert.equal(page.status, 200);
 * await page.body?.cancel();
 * await ex.shutdown();
 * ```
 * @module
 */
import type { Tensor } from "../gpu/tensor.ts";
import type { HookedSAETransformer } from "../sae/hooked_sae_transformer.ts";
import type { SAE } from "../sae/sae.ts";
import { layerAfter, nextTokens, topIndices, topLatentsPerToken } from "../sae/features.ts";
import page from "./page.html" with { type: "text" };
import { HooklensError } from "../errors.ts";

/** Options of {@link serveExplorer}. */
export interface ExplorerOptions {
  /** The model (with a tokenizer). */
  model: HookedSAETransformer;
  /** The SAE to explore. */
  sae: SAE;
  /** Texts scanned for each latent's top-activating contexts. */
  corpus: string[];
  /** Port on 127.0.0.1 (0: any free port). Default 8787. */
  port?: number;
  /** Largest request body accepted, in bytes (default 256 KiB); larger ones get a 413. */
  maxBodyBytes?: number;
  /** Longest text accepted, in characters (default 32768); longer ones get a 413. */
  maxTextChars?: number;
}

/** The explorer's server refused to start (port in use, no permission): says what to do. */
export class ExplorerError extends HooklensError {}

/** A running explorer. */
export interface Explorer {
  /** The page's address. */
  url: string;
  /** The port it listens on. */
  port: number;
  /** Stops the server. */
  shutdown(): Promise<void>;
  /** GPU jobs run, and jobs dropped because their client had gone before their turn. */
  readonly stats: { jobsRun: number; jobsDropped: number };
}

interface Context {
  doc: number;
  pos: number;
  act: number;
}

/** Per-latent results of a corpus scan. */
interface ScanState {
  id: number;
  done: number;
  total: number;
  status: "running" | "done" | "cancelled" | "failed";
  error?: string;
  /** doc -> token strings. */
  tokens: string[][];
  /** latent -> top contexts (largest first). */
  top: Map<number, Context[]>;
  /** latent -> histogram of non-zero activations (20 bins up to max). */
  values: Map<number, number[]>;
}

const TOP_CONTEXTS = 8;
/** Requests waiting for the GPU beyond which new ones get a 503. */
const MAX_QUEUED = 64;
/** A scan nobody has polled for this long is cancelled (its page was closed). */
const SCAN_IDLE_MS = 60_000;

/** An HTTP error answered as JSON `{ error }`. */
class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The body of `req` as text, refusing more than `max` bytes (413) before reading them all. */
async function readBody(req: Request, max: number): Promise<string> {
  const tooLarge = () =>
    new HttpError(413, `The request body is larger than ${max} bytes: send a shorter text.`);
  const len = Number(req.headers.get("content-length") ?? NaN);
  if (len > max) {
    await req.body?.cancel();
    throw tooLarge();
  }
  if (!req.body) return "";
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of req.body) {
    n += chunk.length;
    if (n > max) throw tooLarge();
    parts.push(chunk);
  }
  const all = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(all);
  } catch {
    throw new HttpError(400, "The request body is not UTF-8.");
  }
}

/**
 * Starts the explorer server.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
 * import { serveExplorer } from "./server.ts";
 *
 * using model = await HookedSAETransformer.fromPretrained("models/demo-pycode/hf");
 * using sae = await SAE.load("models/demo-pycode/sae");
 * const ex = await serveExplorer({ model, sae, corpus: ["x = 1"], port: 0 }); // a free port
 * assert.ok(ex.port > 0);
 * await ex.shutdown();
 * ```
 */
export async function serveExplorer(o: ExplorerOptions): Promise<Explorer> {
  const { model, sae, corpus } = o;
  const hook = `${sae.cfg.hookName}.hook_sae_acts_post`;
  let scan: ScanState | null = null;
  let scanId = 0;
  const maxBody = o.maxBodyBytes ?? 256 * 1024;
  const maxText = o.maxTextChars ?? 32768;
  const stats = { jobsRun: 0, jobsDropped: 0 };
  let port = 0;
  let lastPoll = 0;

  // GPU work runs one job at a time in arrival order: requests and the scan's documents take
  // turns, so a scan never holds the GPU for longer than one document. A request whose client
  // has gone (closed tab, aborted fetch) by its turn is dropped without running.
  let tail: Promise<unknown> = Promise.resolve();
  let queued = 0;
  function gpuJob<T>(signal: AbortSignal | null, fn: () => Promise<T>): Promise<T> {
    if (queued >= MAX_QUEUED) {
      return Promise.reject(new HttpError(503, "The explorer is busy: try again shortly."));
    }
    queued++;
    const run = tail.then(async () => {
      if (signal?.aborted) {
        stats.jobsDropped++;
        throw new HttpError(499, "The client went away.");
      }
      stats.jobsRun++;
      return await fn();
    }).finally(() => queued--);
    tail = run.catch(() => {});
    return run;
  }

  async function actsOf(
    text: string,
    truncate = false,
  ): Promise<{ ids: number[]; acts: Float32Array }> {
    let ids = model.toTokenIds(text)[0];
    // Corpus texts longer than the context are scanned up to it.
    if (truncate) ids = ids.slice(0, model.cfg.nCtx);
    const [out, cache] = await model.runWithCacheWithSaes([ids], {
      saes: [sae],
      namesFilter: hook,
      stopAtLayer: layerAfter(model, sae),
    });
    using _c = cache;
    (out as Tensor).dispose();
    return { ids, acts: await cache.get(hook).toArray() as Float32Array };
  }

  async function runScan(s: ScanState): Promise<void> {
    const dSae = sae.cfg.dSae;
    for (let d = 0; d < corpus.length; d++) {
      if (s.status === "running" && performance.now() - lastPoll > SCAN_IDLE_MS) {
        s.status = "cancelled";
      }
      if (s.status !== "running") return;
      const { ids, acts } = await gpuJob(null, () => actsOf(corpus[d], true));
      s.tokens[d] = ids.map((i) => model.tokenizer!.piece(i));
      for (let p = 1; p < ids.length; p++) { // skip BOS
        for (let j = 0; j < dSae; j++) {
          const a = acts[p * dSae + j];
          if (a <= 0) continue;
          let vs = s.values.get(j);
          if (!vs) s.values.set(j, vs = []);
          vs.push(a);
          let top = s.top.get(j);
          if (!top) s.top.set(j, top = []);
          if (top.length < TOP_CONTEXTS || a > top[top.length - 1].act) {
            top.push({ doc: d, pos: p, act: a });
            top.sort((x, y) => y.act - x.act);
            if (top.length > TOP_CONTEXTS) top.pop();
          }
        }
      }
      s.done = d + 1;
    }
    s.status = "done";
  }

  async function intervene(
    text: string,
    latent: number,
    mode: "ablate" | "steer",
    scale: number,
  ): Promise<Record<string, unknown>> {
    using base = await model.forward(text);
    const before = await nextTokens(model, base, 8);
    let after;
    if (mode === "ablate") {
      using out = await model.runWithHooksWithSaes(text, {
        saes: [sae],
        useErrorTerm: true,
        fwdHooks: [[hook, (a) => a.fillAt(-1, [latent], 0)]],
      }) as Tensor; // deno-fmt-ignore
      after = await nextTokens(model, out, 8);
    } else {
      using dir = sae.decoderDirection(latent);
      using scaled = dir.scale(scale);
      using out = await model.runWithHooks(text, {
        fwdHooks: [[sae.cfg.hookName, (r) => r.add(scaled)]],
      }) as Tensor;
      after = await nextTokens(model, out, 8);
    }
    return { latent, mode, scale, before, after };
  }

  const json = (v: unknown, status = 200) =>
    new Response(JSON.stringify(v), { status, headers: { "content-type": "application/json" } });
  const bad = (msg: string) => json({ error: msg }, 400);

  /**
   * The Host must name this server (127.0.0.1 or localhost, this port): another name is a DNS
   * rebinding attempt. An Origin, when sent, must be the page's own: another is a foreign web
   * page driving this server from the user's browser.
   */
  function refusal(req: Request): Response | null {
    const host = (req.headers.get("host") ?? "").toLowerCase();
    const allowed = [`127.0.0.1:${port}`, `localhost:${port}`];
    if (!allowed.includes(host)) {
      return json({ error: `Host "${host}" is not this explorer (${allowed.join(" or ")}).` }, 403);
    }
    const origin = req.headers.get("origin");
    if (origin !== null && origin !== `http://${host}`) {
      return json({ error: `Requests from ${origin} are not allowed: open http://${host}/.` }, 403);
    }
    return null;
  }

  async function guarded(req: Request): Promise<Response> {
    const refused = refusal(req);
    if (refused) {
      await req.body?.cancel();
      return refused;
    }
    try {
      return await handle(req);
    } catch (e) {
      if (e instanceof HttpError) return json({ error: e.message }, e.status);
      // Bad input the model refuses (a text longer than the context, ...): the client's fault.
      if (e instanceof HooklensError) return json({ error: e.message }, 400);
      return json({ error: `Internal error: ${(e as Error).message}` }, 500);
    }
  }

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    const job = <T>(fn: () => Promise<T>) => gpuJob(req.signal, fn);
    if (req.method === "GET" && (path === "/" || path === "/index.html")) {
      return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
    }
    if (req.method === "GET" && path === "/api/info") {
      return json({
        model: {
          layers: model.cfg.nLayers,
          dModel: model.cfg.dModel,
          vocab: model.cfg.dVocab,
          name: model.cfg.modelName,
        },
        sae: { hook: sae.cfg.hookName, dSae: sae.cfg.dSae, architecture: sae.cfg.architecture },
        corpus: corpus.length,
        example: corpus[0] ?? "",
      });
    }
    let body: Record<string, unknown> = {};
    if (req.method === "POST") {
      const raw = await readBody(req, maxBody);
      let parsed: unknown;
      try {
        parsed = raw ? JSON.parse(raw) : {};
      } catch {
        return bad("The request body is not JSON.");
      }
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
        return bad("The request body must be a JSON object.");
      }
      body = parsed as Record<string, unknown>;
      if (body.text !== undefined && typeof body.text !== "string") {
        return bad("text must be a string.");
      }
      if (typeof body.text === "string" && body.text.length > maxText) {
        return json({
          error:
            `The text has ${body.text.length} characters, more than the ${maxText} accepted: ` +
            "send a shorter text.",
        }, 413);
      }
    } else await req.body?.cancel();
    const text = typeof body.text === "string" ? body.text : "";
    const latent = typeof body.latent === "number" ? body.latent : NaN;
    const latentOk = Number.isInteger(latent) && latent >= 0 && latent < sae.cfg.dSae;
    if (req.method === "POST" && path === "/api/features") {
      if (!text) return bad("text is empty");
      const top = body.top === undefined ? 8 : body.top;
      if (!Number.isInteger(top) || (top as number) < 1 || (top as number) > sae.cfg.dSae) {
        return bad(`top must be an integer in 1..${sae.cfg.dSae}.`);
      }
      return json({
        hook: sae.cfg.hookName,
        tokens: await job(() => topLatentsPerToken(model, sae, text, top as number)),
      });
    }
    if (req.method === "POST" && path === "/api/latent") {
      if (!text || !latentOk) return bad(`needs text and a latent in 0..${sae.cfg.dSae - 1}`);
      const { ids, acts } = await job(() => actsOf(text));
      const dSae = sae.cfg.dSae;
      return json({ latent, acts: ids.map((_, p) => acts[p * dSae + latent]) });
    }
    if (req.method === "POST" && path === "/api/latent-info") {
      if (!latentOk) return bad(`latent must be in 0..${sae.cfg.dSae - 1}`);
      const row = await job(async () => {
        using dir = sae.decoderDirection(latent);
        using logits = model.unembedDirection(dir.reshape([1, model.cfg.dModel]));
        return await logits.toArray();
      });
      const neg = row.map((v) => -v);
      const piece = (i: number) => model.tokenizer ? model.tokenizer.piece(i) : String(i);
      const values = scan?.values.get(latent) ?? [];
      const max = values.reduce((m, v) => Math.max(m, v), 0);
      const bins = new Array(20).fill(0);
      for (const v of values) bins[Math.min(19, Math.floor((v / (max || 1)) * 20))]++;
      return json({
        latent,
        promoted: topIndices(row, 10).map((i) => ({ token: piece(i), logit: row[i] })),
        suppressed: topIndices(neg, 10).map((i) => ({ token: piece(i), logit: row[i] })),
        histogram: { max, bins, count: values.length, scanned: scan?.done ?? 0 },
        contexts: (scan?.top.get(latent) ?? []).map((c) => ({
          act: c.act,
          before: scan!.tokens[c.doc].slice(Math.max(1, c.pos - 8), c.pos).join(""),
          token: scan!.tokens[c.doc][c.pos],
          after: scan!.tokens[c.doc].slice(c.pos + 1, c.pos + 5).join(""),
        })),
      });
    }
    if (req.method === "POST" && path === "/api/intervene") {
      if (!text || !latentOk) return bad(`needs text and a latent in 0..${sae.cfg.dSae - 1}`);
      if (body.mode !== undefined && body.mode !== "steer" && body.mode !== "ablate") {
        return bad('mode must be "ablate" or "steer".');
      }
      if (body.scale !== undefined && !Number.isFinite(body.scale)) {
        return bad("scale must be a finite number.");
      }
      const mode = body.mode === "steer" ? "steer" : "ablate";
      const scale = Number.isFinite(body.scale) ? body.scale as number : 8;
      return json(await job(() => intervene(text, latent, mode, scale)));
    }
    if (path === "/api/scan") lastPoll = performance.now();
    if (req.method === "POST" && path === "/api/scan") {
      if (scan?.status === "running") return json(scanView(scan));
      scan = {
        id: ++scanId,
        done: 0,
        total: corpus.length,
        status: "running",
        tokens: [],
        top: new Map(),
        values: new Map(),
      };
      const s = scan;
      runScan(s).catch((e) => {
        s.status = "failed";
        s.error = (e as Error).message;
      });
      return json(scanView(s));
    }
    if (req.method === "GET" && path === "/api/scan") {
      return json(scan ? scanView(scan) : { status: "none" });
    }
    if (req.method === "DELETE" && path === "/api/scan") {
      if (scan?.status === "running") scan.status = "cancelled";
      return json(scan ? scanView(scan) : { status: "none" });
    }
    return json({ error: `no route ${req.method} ${path}` }, 404);
  }

  const scanView = (s: ScanState) => ({
    id: s.id,
    done: s.done,
    total: s.total,
    status: s.status,
    error: s.error,
  });

  const want = o.port ?? 8787;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: "127.0.0.1",
      port: want,
      onListen: () => {},
      onError: (e) =>
        new Response(JSON.stringify({ error: (e as Error).message }), { status: 500 }),
    }, guarded);
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new ExplorerError(
        `Port ${want} on 127.0.0.1 is in use (another explorer?): pass --port 0 for any free ` +
          "port, or another number.",
      );
    }
    throw new ExplorerError(`Cannot listen on 127.0.0.1:${want}: ${(e as Error).message}`);
  }
  port = server.addr.port;
  await Promise.resolve();
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    stats,
    shutdown: async () => {
      if (scan?.status === "running") scan.status = "cancelled";
      await server.shutdown();
    },
  };
} // deno-fmt-ignore
