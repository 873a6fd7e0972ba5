/**
 * SAEs by SAELens release name: `pretrained_saes.json` maps a release ("gpt2-small-res-jb",
 * "gemma-scope-2b-pt-res-canonical", "llama_scope_lxr_8x", "pythia-70m-deduped-res-sm", ...) and an
 * SAE id to a hub repository, the folder in it, the on-disk format and the hook point, as SAELens's
 * `pretrained_saes.yaml` does. Files come through the hub cache (`hubFile`), so offline use
 * (`HF_HUB_OFFLINE=1`) reads what an earlier download left there.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolvePretrainedSae } from "./registry.ts";
 *
 * const e = resolvePretrainedSae("gemma-scope-2b-pt-res-canonical", "layer_20/width_16k/canonical");
 * assert.equal(e.repo, "google/gemma-scope-2b-pt-res");
 * assert.equal(e.path, "layer_20/width_16k/average_l0_71");
 * assert.equal(e.hook, "blocks.20.hook_resid_post");
 * ```
 * @module
 */
import { dirname } from "node:path";
import { PretrainedSaeError } from "../errors.ts";
import { HubError, hubFile, type HubOptions } from "../io/hub.ts";
import registry from "./pretrained_saes.json" with { type: "json" };

/** On-disk formats of the registry: SAELens's, Gemma Scope's params.npz, Llama Scope's. */
export type PretrainedSaeFormat = "saelens" | "gemma_scope" | "llama_scope";

/** One SAE of a release, resolved. */
export interface PretrainedSaeEntry {
  /** Release name, e.g. "gpt2-small-res-jb". */
  release: string;
  /** SAE id within the release, e.g. "blocks.8.hook_resid_pre". */
  saeId: string;
  /** Hub repository. */
  repo: string;
  /** Folder in the repository. */
  path: string;
  /** On-disk format. */
  format: PretrainedSaeFormat;
  /** Hook point, or null when the SAE's own config names it. */
  hook: string | null;
  /** Model the SAE was trained on (SAELens's name). */
  model: string;
  /** Gemma Scope embedding SAE (its weights are rescaled by sqrt(d_in) on load, as SAELens does). */
  embedding: boolean;
  /** Llama Scope: the input norm scaling SAELens folds into the weights on load. */
  normScalingFactor: number | null;
}

interface RawRelease {
  repo: string;
  model: string;
  format: string;
  saes: Record<
    string,
    { path: string; hook: string | null; embedding?: boolean; normScalingFactor?: number }
  >;
}

const RELEASES = registry.releases as Record<string, RawRelease>;

/** Formats hooklens loads. */
const LOADABLE: readonly PretrainedSaeFormat[] = ["saelens", "gemma_scope", "llama_scope"];

/** The files of each format, relative to the SAE's folder; the first one names the folder. */
const FILES: Record<PretrainedSaeFormat, string[]> = {
  saelens: ["cfg.json", "sae_weights.safetensors"],
  gemma_scope: ["params.npz"],
  llama_scope: ["hyperparams.json", "checkpoints/final.safetensors"],
};

/**
 * Release names in the registry.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pretrainedSaeReleases } from "./registry.ts";
 *
 * assert.ok(pretrainedSaeReleases().includes("gpt2-small-res-jb"));
 * ```
 */
export function pretrainedSaeReleases(): string[] {
  return Object.keys(RELEASES);
}

/**
 * Looks up one SAE of a release; throws a {@link PretrainedSaeError} listing what exists when the
 * release or id is unknown.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PretrainedSaeError } from "../errors.ts";
 * import { resolvePretrainedSae } from "./registry.ts";
 *
 * const e = resolvePretrainedSae("gpt2-small-res-jb", "blocks.8.hook_resid_pre");
 * assert.equal(e.model, "gpt2-small");
 * assert.throws(() => resolvePretrainedSae("gpt2-small-res-jb", "blocks.99.hook_resid_pre"), PretrainedSaeError);
 * ```
 */
export function resolvePretrainedSae(release: string, saeId: string): PretrainedSaeEntry {
  const r = Object.hasOwn(RELEASES, release) ? RELEASES[release] : undefined;
  if (!r) {
    throw new PretrainedSaeError(
      `Unknown SAE release "${release}". Known releases: ${pretrainedSaeReleases().join(", ")}. ` +
        "For another SAE, pass its local directory or hub path (org/name/folder) to SAE.load.",
    );
  }
  const s = Object.hasOwn(r.saes, saeId) ? r.saes[saeId] : undefined;
  if (!s) {
    const ids = Object.keys(r.saes);
    const near = ids.filter((id) => id.startsWith(saeId.split("/")[0])).slice(0, 12);
    throw new PretrainedSaeError(
      `Release "${release}" has no SAE "${saeId}". It has ${ids.length}, e.g. ${
        (near.length ? near : ids.slice(0, 12)).join(", ")
      }.`,
    );
  }
  return {
    release,
    saeId,
    repo: r.repo,
    path: s.path,
    format: r.format as PretrainedSaeFormat,
    hook: s.hook,
    model: r.model,
    embedding: s.embedding === true,
    normScalingFactor: s.normScalingFactor ?? null,
  };
}

/**
 * Downloads (or finds in the hub cache) the files of a resolved SAE and returns their local
 * directory: `cfg.json` + `sae_weights.safetensors` (SAELens) or `params.npz` (Gemma Scope).
 *
 * @example Not run as a doc test: it downloads from the hub
 * ```
 * import { downloadPretrainedSae, resolvePretrainedSae } from "./registry.ts";
 * const dir = await downloadPretrainedSae(resolvePretrainedSae("gpt2-small-res-jb", "blocks.8.hook_resid_pre"));
 * ```
 */
export async function downloadPretrainedSae(
  e: PretrainedSaeEntry,
  opts: HubOptions = {},
): Promise<string> {
  if (!LOADABLE.includes(e.format)) {
    throw new PretrainedSaeError(
      `${e.release}/${e.saeId} is stored in ${e.format}'s format (${e.repo}/${e.path}), which ` +
        `hooklens does not read yet (it reads ${LOADABLE.join(", ")}); convert it to SAELens's ` +
        "layout (cfg.json + sae_weights.safetensors) and load that directory.",
    );
  }
  const [first, ...rest] = FILES[e.format];
  const path = (await hubFile(e.repo, `${e.path}/${first}`, opts))!;
  for (const f of rest) await hubFile(e.repo, `${e.path}/${f}`, opts);
  return dirname(path);
}

/**
 * Downloads an SAE folder of a hub repository ("org/name/path/in/repo") in whichever layout it
 * has: SAELens's (`cfg.json` + `sae_weights.safetensors`), Gemma Scope's (`params.npz`, with an
 * optional `cfg.json` beside it) or Llama Scope's (`hyperparams.json` +
 * `checkpoints/final.safetensors`); returns its local directory.
 *
 * @example Not run as a doc test: it downloads from the hub
 * ```
 * import { downloadSaeFolder } from "./registry.ts";
 * const dir = await downloadSaeFolder("google/gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71");
 * ```
 */
export async function downloadSaeFolder(id: string, opts: HubOptions = {}): Promise<string> {
  const parts = id.split("/");
  const repo = parts.slice(0, 2).join("/");
  const prefix = parts.length > 2 ? `${parts.slice(2).join("/")}/` : "";
  const optional = { ...opts, optional: true };
  const cfg = await hubFile(repo, `${prefix}cfg.json`, optional);
  if (cfg && await hubFile(repo, `${prefix}sae_weights.safetensors`, optional)) return dirname(cfg);
  const npz = await hubFile(repo, `${prefix}params.npz`, optional);
  if (npz) return dirname(npz);
  const hp = await hubFile(repo, `${prefix}hyperparams.json`, optional);
  if (hp && await hubFile(repo, `${prefix}checkpoints/final.safetensors`, optional)) {
    return dirname(hp);
  }
  throw new HubError(
    `${id}: the hub folder has neither cfg.json + sae_weights.safetensors (SAELens) nor ` +
      "params.npz (Gemma Scope) nor hyperparams.json + checkpoints/final.safetensors (Llama Scope)" +
      (opts.offline || offlineEnv()
        ? " in the local cache (offline mode is on: download it once with network access)."
        : "."),
  );
}

function offlineEnv(): boolean {
  try {
    return ["1", "true", "yes"].includes((Deno.env.get("HF_HUB_OFFLINE") ?? "").toLowerCase());
  } catch {
    return false;
  }
}
