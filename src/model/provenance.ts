/**
 * Provenance: what ran to make a model call's output. Every output of a call (the logits or loss
 * tensor, the `ActivationCache`, the generated tokens) is tagged with the SAEs spliced in (by hook
 * name, with their source, width, architecture and error-term setting) and the user hooks in
 * effect, fixed when the call started. Nobody has to guess whether an SAE was applied.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, provenanceOf, SAE } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
 * using view = model.withSaes([sae]);
 * using logits = await view.forward([[1, 2, 3]]);
 * assert.deepEqual(provenanceOf(logits)?.saes.map((s) => s.hookName), ["blocks.1.hook_resid_pre"]);
 * ```
 * @module
 */
import type { HookRegistry } from "./hooks.ts";

/** The parts of an SAE provenance names (structural: the SAE class is in src/sae). */
export interface SaeInfo {
  /** Where the SAE was loaded from. */
  readonly source: string;
  /** Its configuration. */
  readonly cfg: {
    readonly hookName: string | null;
    /** A transcoder's output hook (it reads `hookName`); absent for an SAE. */
    readonly hookNameOut?: string | null;
    readonly dSae: number;
    readonly architecture: string;
    readonly dIn: number;
  };
  /** Whether the SAE adds its reconstruction error back by default. */
  readonly useErrorTerm: boolean;
}

/** An SAE attached at a hook, with the attachment's error-term setting (undefined: the SAE's). */
export interface SaeAttachment<S extends SaeInfo = SaeInfo> {
  /** The SAE. */
  readonly sae: S;
  /** Overrides `sae.useErrorTerm` while attached. */
  readonly useErrorTerm?: boolean;
}

/** One SAE that ran. */
export interface SaeProvenance {
  /** The hook point it replaced. */
  readonly hookName: string;
  /** Where it was loaded from. */
  readonly source: string;
  /** Its architecture ("standard", "topk", "jumprelu", "gated", ...). */
  readonly architecture: string;
  /** Its number of latents. */
  readonly dSae: number;
  /** Whether its reconstruction error was added back. */
  readonly useErrorTerm: boolean;
  /** For a transcoder: the hook it reads (it replaces `hookName`); absent for an SAE. */
  readonly inputHook?: string;
}

/** What ran in a call: the SAEs and the user hooks. */
export interface Provenance {
  /** The SAEs spliced in, in hook order. */
  readonly saes: readonly SaeProvenance[];
  /** The user hooks in effect (forward and backward), by hook name. */
  readonly hooks: readonly { readonly name: string; readonly dir: "fwd" | "bwd" }[];
}

const tags = new WeakMap<object, Provenance>();

/**
 * The provenance of a call's output (a tensor, an `ActivationCache`, a `{ logits, loss }` pair or
 * generated tokens as an array), or undefined for anything no model call made. A string is a
 * primitive and carries none: generate from `[text]` to get a tagged `string[]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, provenanceOf, SAE } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
 * using view = model.hooks([["hook_embed", () => {}]]);
 * using logits = await view.forward([[1, 2, 3]]);
 * const p = provenanceOf(logits);
 * assert.equal(p?.saes.length, 0);
 * assert.deepEqual(p?.hooks, [{ name: "hook_embed", dir: "fwd" }]);
 * assert.equal(provenanceOf(new Float32Array(1)), undefined); // no model call made it
 * ```
 */
export function provenanceOf(output: unknown): Provenance | undefined {
  return typeof output === "object" && output !== null ? tags.get(output) : undefined;
}

/**
 * Tags `output` (and the tensors of a `{ logits, loss }` pair) with `p`; returns `output`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { provenanceOf, tagOutput } from "./provenance.ts";
 *
 * const p = { saes: [], hooks: [] };
 * const pair = tagOutput({ logits: {}, loss: {} }, p);
 * assert.equal(provenanceOf(pair.loss), p); // the pair's parts are tagged too
 * ```
 */
export function tagOutput<T>(output: T, p: Provenance): T {
  if (typeof output !== "object" || output === null) return output;
  tags.set(output, p);
  const pair = output as { logits?: unknown; loss?: unknown };
  for (const part of [pair.logits, pair.loss]) {
    if (typeof part === "object" && part !== null) tags.set(part, p);
  }
  return output;
}

/**
 * The provenance of a call that runs with these SAEs and hook registries.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookRegistry } from "./hooks.ts";
 * import { provenanceFor } from "./provenance.ts";
 *
 * const registry = new HookRegistry();
 * registry.add("blocks.0.hook_resid_pre", () => {}, { dir: "bwd" });
 * const p = provenanceFor(new Map(), [registry]);
 * assert.deepEqual(p.hooks, [{ name: "blocks.0.hook_resid_pre", dir: "bwd" }]);
 * ```
 */
export function provenanceFor(
  saes: ReadonlyMap<string, SaeAttachment>,
  hooks: readonly HookRegistry[],
): Provenance {
  const out: SaeProvenance[] = [];
  for (const [hookName, a] of saes) {
    out.push(Object.freeze({
      hookName,
      source: a.sae.source,
      architecture: a.sae.cfg.architecture,
      dSae: a.sae.cfg.dSae,
      useErrorTerm: a.useErrorTerm ?? a.sae.useErrorTerm,
      ...(a.sae.cfg.hookNameOut && a.sae.cfg.hookName ? { inputHook: a.sae.cfg.hookName } : {}),
    }));
  }
  const hookList = hooks.flatMap((r) =>
    r.entries().map((e) => Object.freeze({ name: e.name, dir: e.dir }))
  );
  return Object.freeze({ saes: Object.freeze(out), hooks: Object.freeze(hookList) });
}

/**
 * One line per SAE and a count of hooks, for printing a model, a view or an output.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeProvenance } from "./provenance.ts";
 *
 * const text = describeProvenance({ saes: [], hooks: [{ name: "hook_embed", dir: "bwd" }] });
 * assert.equal(text, "  no SAEs\n  hooks at: hook_embed (bwd)");
 * ```
 */
export function describeProvenance(p: Provenance): string {
  const lines = p.saes.map((s) =>
    `  ${s.hookName} <- ${
      s.inputHook ? `transcoder ${s.source} reading ${s.inputHook}` : `SAE ${s.source}`
    } (${s.architecture}, d_sae ${s.dSae}, error term ` +
    `${s.useErrorTerm ? "on" : "off"})`
  );
  if (!lines.length) lines.push("  no SAEs");
  const names = [...new Set(p.hooks.map((h) => h.dir === "fwd" ? h.name : `${h.name} (bwd)`))];
  lines.push(names.length ? `  hooks at: ${names.join(", ")}` : "  no hooks");
  return lines.join("\n");
}
