/**
 * Downloads from the Hugging Face hub into a local cache laid out as `huggingface_hub` lays it
 * out (`models--org--name/blobs`, `snapshots/<commit>/`, `refs/<revision>`), honouring
 * `HF_ENDPOINT`, `HF_HOME` / `HF_HUB_CACHE`, `HF_TOKEN` and `HF_HUB_OFFLINE`. Downloads resume,
 * are checked against the hub's sha256 (LFS files), are written atomically, and show a progress
 * bar on stderr for large files. A file name that would leave the cache directory is refused.
 *
 * @example
 * ```ts
 * import { hubFile } from "./hub.ts";
 * const path = await hubFile("openai-community/gpt2", "config.json");
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { dirname, join, resolve, sep } from "node:path";
import { HooklensError } from "../errors.ts";

/** A download or cache failure: names the repository, file and what to do. */
export class HubError extends HooklensError {}

/** Options of hub downloads. */
export interface HubOptions {
  /** Revision (branch, tag or commit); default "main". */
  revision?: string;
  /** Use only the local cache. Default: HF_HUB_OFFLINE=1. */
  offline?: boolean;
  /** Progress callback (bytes so far, total); default: a bar on stderr for files over 8 MB. */
  onProgress?: (done: number, total: number, file: string) => void;
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** The hub's base URL (HF_ENDPOINT, default https://huggingface.co). */
export function hubEndpoint(): string {
  return (env("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
}

/** The cache directory: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(): string {
  const cache = env("HF_HUB_CACHE");
  if (cache) return cache;
  const home = env("HF_HOME") ??
    join(env("XDG_CACHE_HOME") ?? join(env("HOME") ?? ".", ".cache"), "huggingface");
  return join(home, "hub");
}

/**
 * Whether a string looks like a hub repository id: "org/name", or with `withPath` also
 * "org/name/path/in/repo" (SAEs live in folders of a repository).
 */
export function isHubId(s: string, withPath = false): boolean {
  const re = withPath
    ? /^[A-Za-z0-9][\w.-]*\/[\w.-]+(\/[\w./-]+)?$/
    : /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
  return re.test(s) && !s.includes("..");
}

const REPO_RE = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** Rejects file names that could escape the snapshot directory. */
function safeJoin(base: string, file: string): string {
  if (
    !file || file.startsWith("/") || file.includes("\\") ||
    file.split("/").some((p) => p === ".." || p === "." || p === "")
  ) {
    throw new HubError(`Refusing file name "${file}": it would leave the cache directory.`);
  }
  const full = resolve(base, file);
  if (!full.startsWith(resolve(base) + sep)) {
    throw new HubError(`Refusing file name "${file}": it would leave the cache directory.`);
  }
  return full;
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}

function progressBar(file: string): (done: number, total: number) => void {
  let last = 0;
  return (done, total) => {
    const now = performance.now();
    if (now - last < 200 && done < total) return;
    last = now;
    const frac = total ? done / total : 0;
    const bar = "#".repeat(Math.round(frac * 30)).padEnd(30, ".");
    const mb = (n: number) => (n / 2 ** 20).toFixed(1);
    Deno.stderr.writeSync(
      new TextEncoder().encode(
        `\r${file.slice(-32).padEnd(32)} [${bar}] ${mb(done)}/${mb(total)} MB`,
      ),
    );
    if (done >= total) Deno.stderr.writeSync(new TextEncoder().encode("\n"));
  };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path);
  const buf = new Uint8Array(1 << 20);
  while (true) {
    const n = await f.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.digest("hex");
}

/**
 * Path of `file` of hub repository `repo` in the local cache, downloading it if needed. Returns
 * null for a file the hub does not have (404) when `optional`.
 *
 * @example
 * ```ts
 * const cfg = await hubFile("org/model", "config.json");
 * ```
 */
export async function hubFile(
  repo: string,
  file: string,
  opts: HubOptions & { optional?: boolean } = {},
): Promise<string | null> {
  if (!REPO_RE.test(repo)) throw new HubError(`"${repo}" is not a hub repository id (org/name).`);
  const revision = opts.revision ?? "main";
  if (!/^[\w.-]+$/.test(revision)) {
    throw new HubError(`Revision "${revision}" is not a branch, tag or commit.`);
  }
  const root = join(hubCacheDir(), `models--${repo.replace("/", "--")}`);
  const offline = opts.offline ??
    ["1", "true", "yes"].includes((env("HF_HUB_OFFLINE") ?? "").toLowerCase());
  // The cached snapshot for this revision, if any.
  const refFile = join(root, "refs", revision);
  const commitCached = await Deno.readTextFile(refFile).then((s) => s.trim()).catch(
    () => (/^[0-9a-f]{40}$/.test(revision) ? revision : null),
  );
  if (commitCached) {
    const snapDir = join(root, "snapshots", commitCached);
    const p = safeJoin(snapDir, file);
    if (await exists(p)) return p;
    if (await exists(join(root, ".no_exist", commitCached, file))) {
      if (opts.optional) return null;
    }
  }
  safeJoin(join(root, "snapshots", "x"), file);
  if (offline) {
    if (opts.optional) return null;
    throw new HubError(
      `${repo}/${file} is not in the local cache (${root}) and offline mode is on (HF_HUB_OFFLINE): ` +
        "download it once with network access.",
    );
  }
  const url = `${hubEndpoint()}/${repo}/resolve/${revision}/${
    file.split("/").map(encodeURIComponent).join("/")
  }`;
  const headers: Record<string, string> = {};
  const token = env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN");
  if (token) headers.authorization = `Bearer ${token}`;
  let head: Response;
  try {
    head = await fetch(url, { method: "HEAD", headers, redirect: "follow" });
  } catch (e) {
    throw new HubError(
      `Cannot reach ${hubEndpoint()} for ${repo}/${file}: ${
        (e as Error).message
      }. Set HF_HUB_OFFLINE=1 to use the cache only.`,
    );
  }
  await head.body?.cancel();
  if (head.status === 404) {
    if (commitCached) {
      const marker = join(root, ".no_exist", commitCached, file);
      await Deno.mkdir(dirname(marker), { recursive: true }).catch(() => {});
      await Deno.writeTextFile(marker, "").catch(() => {});
    }
    if (opts.optional) return null;
    throw new HubError(`${repo} has no file "${file}" at revision ${revision} (404 from ${url}).`);
  }
  if (head.status === 401 || head.status === 403) {
    throw new HubError(
      `${repo}/${file}: access denied (${head.status}); set HF_TOKEN to a token that can read this repository.`,
    );
  }
  if (!head.ok) {
    throw new HubError(`${repo}/${file}: the hub answered ${head.status} ${head.statusText}.`);
  }
  const commit = head.headers.get("x-repo-commit") ?? commitCached ?? revision;
  if (!/^[\w.-]+$/.test(commit)) {
    throw new HubError(`${repo}: the hub sent an invalid commit id "${commit}".`);
  }
  const etag = (head.headers.get("x-linked-etag") ?? head.headers.get("etag") ?? "").replace(
    /^W\//,
    "",
  ).replace(/"/g, "");
  const size = Number(
    head.headers.get("x-linked-size") ?? head.headers.get("content-length") ?? NaN,
  );
  const sha256 = /^[0-9a-f]{64}$/.test(etag) ? etag : null;
  const blobName = etag && /^[\w-]+$/.test(etag) ? etag : `${commit}-${file.replaceAll("/", "_")}`;
  const blob = join(root, "blobs", blobName);
  const snap = safeJoin(join(root, "snapshots", commit), file);
  if (!(await exists(blob))) {
    await Deno.mkdir(join(root, "blobs"), { recursive: true });
    const part = `${blob}.incomplete`;
    const have = await Deno.stat(part).then((s) => s.size).catch(() => 0);
    const h2 = { ...headers, ...(have > 0 ? { range: `bytes=${have}-` } : {}) };
    let res: Response;
    try {
      res = await fetch(url, { headers: h2, redirect: "follow" });
    } catch (e) {
      throw new HubError(
        `Download of ${repo}/${file} failed: ${(e as Error).message}. Run again to resume.`,
      );
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new HubError(`Download of ${repo}/${file} failed: ${res.status} ${res.statusText}.`);
    }
    const resumed = res.status === 206 && have > 0;
    const total = Number.isFinite(size)
      ? size
      : Number(res.headers.get("content-length") ?? 0) + (resumed ? have : 0);
    const report = opts.onProgress ?? (total > 8 * 2 ** 20 ? progressBar(file) : undefined);
    const out = await Deno.open(part, {
      write: true,
      create: true,
      append: resumed,
      truncate: !resumed,
    });
    let done = resumed ? have : 0;
    try {
      for await (const chunk of res.body) {
        await out.write(chunk);
        done += chunk.length;
        if (Number.isFinite(size) && done > size) {
          throw new HubError(
            `${repo}/${file}: the hub sent more than the announced ${size} bytes.`,
          );
        }
        report?.(done, total, file);
      }
    } catch (e) {
      if (e instanceof HubError) {
        out.close();
        await Deno.remove(part).catch(() => {});
        throw e;
      }
      out.close();
      throw new HubError(
        `Download of ${repo}/${file} broke off after ${done} bytes (${
          (e as Error).message
        }); run again to resume.`,
      );
    }
    out.close();
    if (Number.isFinite(size) && done !== size) {
      throw new HubError(
        `Download of ${repo}/${file} is truncated: ${done} of ${size} bytes; run again to resume.`,
      );
    }
    if (sha256) {
      const got = await sha256File(part);
      if (got !== sha256) {
        await Deno.remove(part).catch(() => {});
        throw new HubError(
          `${repo}/${file} failed its sha256 check (expected ${sha256}, got ${got}); the partial file was removed, run again.`,
        );
      }
    }
    await Deno.rename(part, blob);
  }
  await Deno.mkdir(dirname(snap), { recursive: true });
  if (!(await exists(snap))) {
    const tmp = `${snap}.tmp-${crypto.randomUUID()}`;
    await Deno.copyFile(blob, tmp);
    await Deno.rename(tmp, snap);
  }
  await Deno.mkdir(join(root, "refs"), { recursive: true });
  if (revision !== commit) await Deno.writeTextFile(refFile, commit);
  return snap;
}

/**
 * Downloads the files a model needs (config.json; model.safetensors or the index and its
 * shards; tokenizer files if present) and returns the local snapshot directory.
 *
 * @example
 * ```ts
 * const dir = await hubModelDir("openai-community/gpt2");
 * ```
 */
export async function hubModelDir(repo: string, opts: HubOptions = {}): Promise<string> {
  const cfg = (await hubFile(repo, "config.json", opts))!;
  const single = await hubFile(repo, "model.safetensors", { ...opts, optional: true });
  if (!single) {
    const index = await hubFile(repo, "model.safetensors.index.json", { ...opts, optional: true });
    if (!index) {
      throw new HubError(
        `${repo} has neither model.safetensors nor model.safetensors.index.json (hooklens reads safetensors only).`,
      );
    }
    const map = JSON.parse(await Deno.readTextFile(index)).weight_map as
      | Record<string, string>
      | undefined;
    if (!map || typeof map !== "object") {
      throw new HubError(`${repo}: model.safetensors.index.json has no weight_map.`);
    }
    for (const shard of new Set(Object.values(map))) await hubFile(repo, String(shard), opts);
  }
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    await hubFile(repo, f, { ...opts, optional: true });
  }
  return dirname(cfg);
}

/**
 * Downloads an SAE ("org/name/path/in/repo": cfg.json + sae_weights.safetensors) and returns
 * its local directory.
 *
 * @example
 * ```ts
 * const dir = await hubSaeDir("org/saes/blocks.8.hook_resid_pre");
 * ```
 */
export async function hubSaeDir(id: string, opts: HubOptions = {}): Promise<string> {
  const parts = id.split("/");
  const repo = parts.slice(0, 2).join("/");
  const folder = parts.slice(2).join("/");
  const prefix = folder ? `${folder}/` : "";
  const cfg = (await hubFile(repo, `${prefix}cfg.json`, opts))!;
  await hubFile(repo, `${prefix}sae_weights.safetensors`, opts);
  return dirname(cfg);
}
