/**
 * Downloads from the Hugging Face hub into a local cache laid out as `huggingface_hub` lays it
 * out (`models--org--name/blobs`, `snapshots/<commit>/`, `refs/<revision>`), honouring
 * `HF_ENDPOINT`, `HF_HOME` / `HF_HUB_CACHE`, `HF_TOKEN` and `HF_HUB_OFFLINE`. Downloads resume,
 * go to a temporary file that is checked (the hub's sha256 for LFS files, the announced size, a
 * parse of the file's format) before it is renamed into the cache, are capped in size when the
 * hub announces none, and show a progress bar on stderr for large files. Cached files that fail
 * the format check are fetched again. Repository ids, revisions and file names must be plain
 * path components; TransformerLens's model aliases ("gpt2-small", "pythia-70m") are accepted.
 *
 * @example Download one file (not run as a doc test: it needs the network)
 * ```
 * import { hubFile } from "./hub.ts";
 * const path = await hubFile("openai-community/gpt2", "config.json");
 * console.log(path); // ~/.cache/huggingface/hub/models--openai-community--gpt2/snapshots/<commit>/config.json
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { dirname, join, resolve, sep } from "node:path";
import { HooklensError } from "../errors.ts";
import { SafetensorsFile } from "./safetensors.ts";

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
  /**
   * Largest download accepted for a file whose size the hub does not announce (default 64 MiB:
   * files the hub keeps outside LFS are at most 10 MB, and LFS files always announce theirs).
   */
  maxUnannouncedBytes?: number;
}

/** Default of {@link HubOptions.maxUnannouncedBytes}. */
export const MAX_UNANNOUNCED_BYTES = 64 * 2 ** 20;

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
 * Whether `s` is one safe path component: letters, digits, `_`, `.`, `-`, not `.` or `..`, at
 * most 255 characters. Repository names, revisions, commits and file-name parts must be, since
 * each becomes a directory or file name in the cache.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isSafeComponent } from "./hub.ts";
 *
 * assert.equal(isSafeComponent("main"), true);
 * assert.equal(isSafeComponent(".."), false);
 * ```
 */
export function isSafeComponent(s: string): boolean {
  return /^[\w.-]{1,255}$/.test(s) && s !== "." && s !== "..";
}

/** Repository ids: "name" (as "gpt2") or "org/name", each part a safe component. */
function isRepoId(s: string): boolean {
  const parts = s.split("/");
  return parts.length <= 2 && /^[A-Za-z0-9]/.test(s) && parts.every(isSafeComponent) &&
    !s.includes("..");
}

/**
 * Whether a string looks like a hub repository id: "name" (as "gpt2") or "org/name", or with
 * `withPath` "org/name/path/in/repo" (SAEs live in folders of a repository).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isHubId } from "./hub.ts";
 *
 * assert.equal(isHubId("gpt2"), true);
 * assert.equal(isHubId("jbloom/GPT2-Small-SAEs-Reformatted/blocks.8.hook_resid_pre", true), true);
 * assert.equal(isHubId("../etc"), false);
 * ```
 */
export function isHubId(s: string, withPath = false): boolean {
  if (!withPath) return isRepoId(s);
  const parts = s.split("/");
  return parts.length >= 2 && isRepoId(parts.slice(0, 2).join("/")) &&
    parts.slice(2).every(isSafeComponent);
}

// TransformerLens's short names of the models whose architectures hooklens runs (GPT-2,
// GPT-NeoX/Pythia, Llama, Mistral, Qwen2), as `HookedTransformer.from_pretrained` accepts them.
const ALIAS_TABLE: Record<string, string[]> = {
  "gpt2": ["gpt2-small"],
  "gpt2-medium": [],
  "gpt2-large": [],
  "gpt2-xl": [],
  "distilgpt2": ["distillgpt2", "distill-gpt2", "distil-gpt2", "gpt2-xs"],
  "EleutherAI/gpt-neox-20b": ["gpt-neox-20b", "gpt-neox", "neox"],
  "meta-llama/Llama-2-7b-hf": ["Llama-2-7b"],
  "meta-llama/Llama-2-7b-chat-hf": ["Llama-2-7b-chat"],
  "meta-llama/Llama-2-13b-hf": ["Llama-2-13b"],
  "meta-llama/Llama-2-13b-chat-hf": ["Llama-2-13b-chat"],
  "meta-llama/Llama-2-70b-chat-hf": ["Llama-2-70b-chat"],
  "mistralai/Mistral-7B-v0.1": ["mistral-7b"],
  "mistralai/Mistral-7B-Instruct-v0.1": ["mistral-7b-instruct"],
  "mistralai/Mistral-Nemo-Base-2407": ["mistral-nemo-base-2407"],
};
// Pythia: "pythia-70m" etc. with each size's older name (TransformerLens keeps both).
for (
  const [size, old] of [
    ["14m", ""],
    ["31m", ""],
    ["70m", "19m"],
    ["160m", "125m"],
    ["410m", "350m"],
    ["1b", "800m"],
    ["1.4b", "1.3b"],
    ["2.8b", "2.7b"],
    ["6.9b", "6.7b"],
    ["12b", "13b"],
  ]
) {
  for (const suffix of old ? ["", "-deduped", "-v0", "-deduped-v0"] : [""]) {
    ALIAS_TABLE[`EleutherAI/pythia-${size}${suffix}`] = [
      `pythia-${size}${suffix}`,
      ...(old ? [`EleutherAI/pythia-${old}${suffix}`, `pythia-${old}${suffix}`] : []),
    ];
  }
}
ALIAS_TABLE["EleutherAI/pythia-70m"].push("pythia");
ALIAS_TABLE["EleutherAI/pythia-70m-v0"].push("pythia-v0");
// Qwen2 / Qwen2.5: "qwen2-0.5b" -> "Qwen/Qwen2-0.5B", "-instruct" variants likewise.
for (
  const [v, sizes] of [
    ["2", ["0.5B", "1.5B", "7B"]],
    ["2.5", ["0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B"]],
  ] as const
) {
  for (const size of sizes) {
    for (const suffix of ["", "-Instruct"]) {
      ALIAS_TABLE[`Qwen/Qwen${v}-${size}${suffix}`] = [`qwen${v}-${size}${suffix}`.toLowerCase()];
    }
  }
}

/** Alias (lower case) -> hub id, and each hub id (lower case) -> itself. */
const ALIASES: ReadonlyMap<string, string> = new Map(
  Object.entries(ALIAS_TABLE).flatMap(([id, names]) =>
    [id, ...names].map((n) => [n.toLowerCase(), id] as [string, string])
  ),
);

/**
 * The hub id of a TransformerLens model name or alias ("gpt2-small" -> "gpt2", "pythia-70m" ->
 * "EleutherAI/pythia-70m"; case-insensitive, as TransformerLens); other names as they are.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveModelAlias } from "./hub.ts";
 *
 * assert.equal(resolveModelAlias("gpt2-small"), "gpt2");
 * assert.equal(resolveModelAlias("my-org/my-model"), "my-org/my-model");
 * ```
 */
export function resolveModelAlias(name: string): string {
  return ALIASES.get(name.toLowerCase()) ?? name;
}

/** Rejects file names that could escape the snapshot directory. */
function safeJoin(base: string, file: string): string {
  const parts = file.split("/");
  if (!file || file.includes("\\") || !parts.every(isSafeComponent)) {
    throw new HubError(
      `Refusing file name "${file}": it would leave the cache directory or is not a plain path ` +
        "(letters, digits, _ . - in each part).",
    );
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

/** What the hub announced for a file: its size and, for LFS files, its sha256. */
export interface Announced {
  /** Size in bytes, if announced. */
  size?: number;
  /** Lower-case hex sha256 (LFS files), if announced. */
  sha256?: string | null;
}

/**
 * Checks a downloaded or cached hub file before it is used: a regular file, of the announced
 * size and sha256 (when known), whose format parses: `.json` files as JSON objects (UTF-8),
 * `.safetensors` files as a complete safetensors file (header valid, data section exactly
 * covered). Throws a {@link HubError} naming `label` and saying what is wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HubError, verifyHubFile } from "./hub.ts";
 *
 * const path = "tests/reference/gpt2_tiny/hf/config.json";
 * const { size } = await Deno.stat(path);
 * await verifyHubFile(path, "org/model/config.json", { size });
 * await assert.rejects(verifyHubFile(path, "org/model/config.json", { size: size + 1 }), HubError);
 * ```
 */
export async function verifyHubFile(
  path: string,
  label: string,
  announced: Announced = {},
): Promise<void> {
  const fail = (why: string): never => {
    throw new HubError(`${label}: ${why}`);
  };
  const st = await Deno.stat(path).catch((e) => fail(`cannot read (${(e as Error).message})`));
  if (!st.isFile) fail("is not a regular file");
  if (announced.size !== undefined && st.size !== announced.size) {
    fail(`${st.size} bytes, the hub announced ${announced.size}`);
  }
  if (announced.sha256) {
    const got = await sha256File(path);
    if (got !== announced.sha256) {
      fail(`failed its sha256 check (expected ${announced.sha256}, got ${got})`);
    }
  }
  const name = label.toLowerCase();
  if (name.endsWith(".json")) {
    if (st.size > 512 * 2 ** 20) fail(`${st.size} bytes is too large for a JSON file`);
    let v: unknown;
    try {
      v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await Deno.readFile(path)));
    } catch (e) {
      fail(`is not valid JSON (${(e as Error).message.slice(0, 120)})`);
    }
    if (!v || typeof v !== "object" || Array.isArray(v)) fail("is not a JSON object");
  } else if (name.endsWith(".safetensors")) {
    try {
      (await SafetensorsFile.open(path)).close();
    } catch (e) {
      if (!(e instanceof HooklensError)) throw e;
      fail(`is not a valid safetensors file (${e.message.slice(path.length + 2)})`);
    }
  }
}

/** HEAD of a resolve URL, following the hub's own (same-origin) redirects of renamed repos. */
async function headOf(url: string, headers: Record<string, string>): Promise<Response> {
  let u = url;
  for (let i = 0; i < 8; i++) {
    const res = await fetch(u, { method: "HEAD", headers, redirect: "manual" });
    await res.body?.cancel();
    const loc = res.headers.get("location");
    if (res.status < 300 || res.status >= 400 || !loc) return res;
    const next = new URL(loc, u);
    // A redirect to the LFS/CDN storage carries the file's metadata (x-linked-etag/-size,
    // x-repo-commit) itself: those are what the cache needs, so it is not followed here.
    if (next.origin !== new URL(u).origin || res.headers.has("x-linked-etag")) return res;
    u = next.href;
  }
  throw new HubError(`${url}: too many redirects.`);
}

/**
 * Path of `file` of hub repository `repo` in the local cache, downloading it if needed. Returns
 * null for a file the hub does not have (404) when `optional`.
 *
 * A download goes to a temporary file, is checked ({@link verifyHubFile}: announced size, sha256
 * of LFS files, format) and only then renamed into the cache; a cached file that fails the
 * format check is fetched again (or, offline, reported).
 *
 * @example Not run as a doc test: it needs the network
 * ```
 * import { hubFile } from "./hub.ts";
 * const cfg = await hubFile("openai-community/gpt2", "config.json");
 * const card = await hubFile("openai-community/gpt2", "NO_SUCH_FILE.md", { optional: true });
 * console.log(cfg, card); // <cache path> null
 * ```
 */
export async function hubFile(
  repo: string,
  file: string,
  opts: HubOptions & { optional?: boolean } = {},
): Promise<string | null> {
  if (!isRepoId(repo)) {
    throw new HubError(`"${repo}" is not a hub repository id ("name" or "org/name").`);
  }
  const revision = opts.revision ?? "main";
  if (!isSafeComponent(revision)) {
    throw new HubError(
      `Revision "${revision}" is not a branch, tag or commit name (letters, digits, _ . -; not . or ..).`,
    );
  }
  const label = `${repo}/${file}`;
  const root = join(hubCacheDir(), `models--${repo.replace("/", "--")}`);
  safeJoin(join(root, "snapshots", "x"), file);
  const offline = opts.offline ??
    ["1", "true", "yes"].includes((env("HF_HUB_OFFLINE") ?? "").toLowerCase());
  // The cached snapshot for this revision, if any.
  const refFile = join(root, "refs", revision);
  let commitCached = await Deno.readTextFile(refFile).then((s) => s.trim()).catch(
    () => (/^[0-9a-f]{40}$/.test(revision) ? revision : null),
  );
  if (commitCached !== null && !isSafeComponent(commitCached)) commitCached = null;
  let corrupt = "";
  if (commitCached) {
    const snapDir = join(root, "snapshots", commitCached);
    const p = safeJoin(snapDir, file);
    if (await exists(p)) {
      try {
        await verifyHubFile(p, label);
        return p;
      } catch (e) {
        if (!(e instanceof HubError)) throw e;
        // Kept wrong by an earlier version or damaged since: fetch it again.
        corrupt = e.message;
        await Deno.remove(p).catch(() => {});
      }
    }
    if (await exists(join(root, ".no_exist", commitCached, file))) {
      if (opts.optional) return null;
    }
  }
  if (offline) {
    if (opts.optional && !corrupt) return null;
    throw new HubError(
      corrupt
        ? `The cached copy of ${corrupt}; it was removed. Offline mode is on (HF_HUB_OFFLINE): ` +
          "download it again with network access."
        : `${label} is not in the local cache (${root}) and offline mode is on (HF_HUB_OFFLINE): ` +
          "download it once with network access.",
    );
  }
  const url = `${hubEndpoint()}/${repo}/resolve/${encodeURIComponent(revision)}/${
    file.split("/").map(encodeURIComponent).join("/")
  }`;
  const headers: Record<string, string> = {};
  const token = env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN");
  if (token) headers.authorization = `Bearer ${token}`;
  let head: Response;
  try {
    head = await headOf(url, headers);
  } catch (e) {
    if (e instanceof HubError) throw e;
    throw new HubError(
      `Cannot reach ${hubEndpoint()} for ${label}: ${
        (e as Error).message
      }. Set HF_HUB_OFFLINE=1 to use the cache only.`,
    );
  }
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
      `${label}: access denied (${head.status}); set HF_TOKEN to a token that can read this repository.`,
    );
  }
  if (!head.ok && !(head.status >= 300 && head.status < 400)) {
    throw new HubError(`${label}: the hub answered ${head.status} ${head.statusText}.`);
  }
  const commit = head.headers.get("x-repo-commit") ?? commitCached ?? revision;
  if (!isSafeComponent(commit)) {
    throw new HubError(`${repo}: the hub sent an invalid commit id "${commit}".`);
  }
  const etag = (head.headers.get("x-linked-etag") ?? head.headers.get("etag") ?? "").replace(
    /^W\//,
    "",
  ).replace(/"/g, "");
  const sizeHeader = head.headers.get("x-linked-size") ??
    (head.ok ? head.headers.get("content-length") : null);
  const size = sizeHeader !== null && /^\d+$/.test(sizeHeader) ? Number(sizeHeader) : undefined;
  const sha256 = /^[0-9a-f]{64}$/.test(etag) ? etag : null;
  const announced: Announced = { size, sha256 };
  const blobName = etag && /^[\w-]{1,200}$/.test(etag)
    ? etag
    : `${commit}-${file.replaceAll("/", "_")}`;
  const blob = join(root, "blobs", blobName);
  const snap = safeJoin(join(root, "snapshots", commit), file);
  if (await exists(blob)) {
    // A blob from an earlier run: used only if it still checks out.
    try {
      await verifyHubFile(blob, label, announced);
    } catch (e) {
      if (!(e instanceof HubError)) throw e;
      await Deno.remove(blob).catch(() => {});
    }
  }
  if (!(await exists(blob))) {
    await Deno.mkdir(join(root, "blobs"), { recursive: true });
    const part = `${blob}.incomplete`;
    await download(url, headers, part, label, announced, opts);
    try {
      await verifyHubFile(part, label, announced);
    } catch (e) {
      await Deno.remove(part).catch(() => {});
      if (!(e instanceof HubError)) throw e;
      throw new HubError(
        `${e.message}. The download was removed and nothing was cached; run again, or check ` +
          `HF_ENDPOINT (${hubEndpoint()}).`,
      );
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

/** Streams `url` into `part`, resuming what is there, within the announced size or the cap. */
async function download(
  url: string,
  headers: Record<string, string>,
  part: string,
  label: string,
  announced: Announced,
  opts: HubOptions,
): Promise<void> {
  const size = announced.size;
  const cap = size ?? opts.maxUnannouncedBytes ?? MAX_UNANNOUNCED_BYTES;
  // Resuming needs a size to stop at; with none, start over.
  let have = size === undefined
    ? 0
    : await Deno.lstat(part).then((s) => (s.isFile ? s.size : 0)).catch(() => 0);
  if (have > cap) {
    await Deno.remove(part).catch(() => {});
    have = 0;
  }
  if (size !== undefined && have === size) return; // complete already: only the check is left
  const h2 = { ...headers, ...(have > 0 ? { range: `bytes=${have}-` } : {}) };
  let res: Response;
  try {
    res = await fetch(url, { headers: h2, redirect: "follow" });
  } catch (e) {
    throw new HubError(
      `Download of ${label} failed: ${(e as Error).message}. Run again to resume.`,
    );
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new HubError(`Download of ${label} failed: ${res.status} ${res.statusText}.`);
  }
  const resumed = res.status === 206 && have > 0;
  const total = size ?? Number(res.headers.get("content-length") ?? 0);
  const report = opts.onProgress ?? (total > 8 * 2 ** 20 ? progressBar(label) : undefined);
  await Deno.mkdir(dirname(part), { recursive: true });
  if (!resumed) await Deno.remove(part).catch(() => {});
  const out = await Deno.open(part, { write: true, createNew: !resumed, append: resumed });
  let done = resumed ? have : 0;
  try {
    for await (const chunk of res.body) {
      if (done + chunk.length > cap) {
        throw new HubError(
          size === undefined
            ? `${label}: the hub sent more than ${cap} bytes without announcing a size; refused ` +
              "(raise maxUnannouncedBytes if the file is really that large)."
            : `${label}: the hub sent more than the announced ${size} bytes.`,
        );
      }
      await out.write(chunk);
      done += chunk.length;
      report?.(done, total, label);
    }
  } catch (e) {
    out.close();
    if (e instanceof HubError) {
      await Deno.remove(part).catch(() => {});
      throw e;
    }
    if (size === undefined) await Deno.remove(part).catch(() => {});
    throw new HubError(
      `Download of ${label} broke off after ${done} bytes (${(e as Error).message}); run again${
        size === undefined ? "" : " to resume"
      }.`,
    );
  }
  out.close();
  if (size !== undefined && done < size) {
    throw new HubError(
      `Download of ${label} is truncated: ${done} of ${size} bytes; run again to resume.`,
    );
  }
}

/**
 * Downloads the files a model needs (config.json; model.safetensors or the index and its
 * shards; tokenizer files if present) and returns the local snapshot directory. `id` is a hub
 * id ("org/name" or "name") or a TransformerLens alias ({@link resolveModelAlias}).
 *
 * @example Not run as a doc test: it needs the network
 * ```
 * import { hubModelDir } from "./hub.ts";
 * import { HookedTransformer } from "../../mod.ts";
 * const dir = await hubModelDir("openai-community/gpt2");
 * const model = await HookedTransformer.fromPretrained(dir);
 * ```
 */
export async function hubModelDir(id: string, opts: HubOptions = {}): Promise<string> {
  const repo = resolveModelAlias(id);
  const cfg = await hubFile(repo, "config.json", { ...opts, optional: true });
  if (!cfg) {
    throw new HubError(
      `"${id}" is neither a local model directory nor a model on the hub (${repo} has no ` +
        `config.json at revision ${opts.revision ?? "main"}): check the path or the id.`,
    );
  }
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
 * @example Not run as a doc test: it needs the network
 * ```
 * import { hubSaeDir } from "./hub.ts";
 * import { SAE } from "../../mod.ts";
 * const dir = await hubSaeDir("jbloom/GPT2-Small-SAEs-Reformatted/blocks.8.hook_resid_pre");
 * const sae = await SAE.load(dir);
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
