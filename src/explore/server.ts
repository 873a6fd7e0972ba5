/**
 * The feature explorer: a local web page (plain HTML/CSS/JS, no build) served by `Deno.serve` on
 * 127.0.0.1, talking to this process over a small JSON API; all computation stays here, on WebGPU.
 * Tokens are shaded by a chosen SAE latent; a token lists its top latents; a latent shows its
 * top-activating contexts over a corpus (a scan with progress that can be cancelled), its
 * activation histogram, the tokens its decoder direction promotes and suppresses through the
 * unembedding, and what ablating or steering it does to the next-token predictions.
 *
 * @example
 * ```ts
 * import { serveExplorer } from "./server.ts";
 * const ex = await serveExplorer({ model, sae, corpus: ["def f(x):\n    return x"] });
 * console.log(ex.url);
 * await ex.shutdown();
 * ```
 * @module
 */
import type { Tensor } from "../gpu/tensor.ts";
import type { HookedSAETransformer } from "../sae/hooked_sae_transformer.ts";
import type { SAE } from "../sae/sae.ts";
import { layerAfter, nextTokens, topIndices, topLatentsPerToken } from "../sae/features.ts";
import page from "./page.html" with { type: "text" };

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
}

/** A running explorer. */
export interface Explorer {
  /** The page's address. */
  url: string;
  /** The port it listens on. */
  port: number;
  /** Stops the server. */
  shutdown(): Promise<void>;
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

/**
 * Starts the explorer server.
 *
 * @example
 * ```ts
 * const ex = await serveExplorer({ model, sae, corpus, port: 0 });
 * ```
 */
export function serveExplorer(o: ExplorerOptions): Promise<Explorer> {
  const { model, sae, corpus } = o;
  const hook = `${sae.cfg.hookName}.hook_sae_acts_post`;
  let scan: ScanState | null = null;
  let scanId = 0;

  async function actsOf(text: string): Promise<{ ids: number[]; acts: Float32Array }> {
    const ids = model.toTokenIds(text)[0];
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
      if (s.status !== "running") return;
      const { ids, acts } = await actsOf(corpus[d]);
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

  const json = (v: unknown, status = 200) =>
    new Response(JSON.stringify(v), { status, headers: { "content-type": "application/json" } });
  const bad = (msg: string) => json({ error: msg }, 400);

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
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
      try {
        const raw = await req.text();
        body = raw ? JSON.parse(raw) : {};
      } catch {
        return bad("the request body is not JSON");
      }
    }
    const text = typeof body.text === "string" ? body.text : "";
    const latent = Number(body.latent);
    const latentOk = Number.isInteger(latent) && latent >= 0 && latent < sae.cfg.dSae;
    if (req.method === "POST" && path === "/api/features") {
      if (!text) return bad("text is empty");
      const top = Number.isInteger(body.top) ? body.top as number : 8;
      return json({
        hook: sae.cfg.hookName,
        tokens: await topLatentsPerToken(model, sae, text, top),
      });
    }
    if (req.method === "POST" && path === "/api/latent") {
      if (!text || !latentOk) return bad(`needs text and a latent in 0..${sae.cfg.dSae - 1}`);
      const { ids, acts } = await actsOf(text);
      const dSae = sae.cfg.dSae;
      return json({ latent, acts: ids.map((_, p) => acts[p * dSae + latent]) });
    }
    if (req.method === "POST" && path === "/api/latent-info") {
      if (!latentOk) return bad(`latent must be in 0..${sae.cfg.dSae - 1}`);
      using dir = sae.decoderDirection(latent);
      using logits = model.unembedDirection(dir.reshape([1, model.cfg.dModel]));
      const row = await logits.toArray();
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
      const mode = body.mode === "steer" ? "steer" : "ablate";
      const scale = Number.isFinite(body.scale) ? body.scale as number : 8;
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
      return json({ latent, mode, scale, before, after });
    }
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

  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: o.port ?? 8787,
      onListen: ({ port }) => {
        resolve({
          url: `http://127.0.0.1:${port}/`,
          port,
          shutdown: async () => {
            if (scan?.status === "running") scan.status = "cancelled";
            await server.shutdown();
          },
        });
      },
      onError: (e) =>
        new Response(JSON.stringify({ error: (e as Error).message }), { status: 500 }),
    }, handle);
  });
} // deno-fmt-ignore
