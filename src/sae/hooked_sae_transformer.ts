/**
 * HookedSAETransformer: a HookedTransformer with SAEs spliced into its hook points, as SAELens's
 * HookedSAETransformer. With an SAE attached at `H`, the hook points `H.hook_sae_input`,
 * `H.hook_sae_acts_pre`, `H.hook_sae_acts_post`, `H.hook_sae_recons`, `H.hook_sae_output` (and
 * `H.hook_sae_error` with the error term) exist and `H` itself does not.
 *
 * SAEs are layered: the persistent ones (`addSae` / `resetSaes`, as SAELens), then the scopes
 * open now, in opening order. `withSaes` opens a scope and returns it as a view of the model
 * ({@link ModelView}): the view's calls run with the persistent SAEs plus its own, whatever other
 * tasks do; plain model calls see every open scope. Closing removes exactly that scope's layer.
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
 * {
 *   using withSae = model.withSaes([sae]);
 *   using logits = await withSae.forward([[1, 2, 3]]); // with the SAE; so is model.forward
 *   assert.equal(model.attachedSaes.size, 1);
 * } // detached here, also when the block throws
 * assert.equal(model.attachedSaes.size, 0);
 * ```
 *
 * Transcoders (SAELens's Transcoder, SkipTranscoder, JumpReLUTranscoder) attach the same way
 * (`addTranscoder` / `withTranscoders`, in the same layers and scopes as SAEs): a transcoder reads
 * its input hook `cfg.hookName` (which stays a hook point) and replaces its output hook
 * `cfg.hookNameOut` with its prediction, whose hook points are `OUT.hook_sae_input` (the input
 * hook's activation), `OUT.hook_sae_acts_pre`, ... `OUT.hook_sae_output` as for an SAE at OUT.
 * With the error term, OUT's real activation minus the (hook-free) prediction is added back.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, SAE, type Tensor } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
 * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
 * using logits = await model.runWithSaes([[1, 2, 3]], { saes: [sae] }) as Tensor;
 * assert.deepEqual(logits.shape, [1, 3, 1000]); // [batch, pos, d_vocab]
 * ```
 * @module
 */
import { DisposedError, SaeAttachError } from "../errors.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { ActivationCache } from "../model/cache.ts";
import {
  type ForwardOptions,
  type ForwardOutput,
  HookedTransformer,
  type HookLayer,
  type Input,
  type LoadOptions,
  type ModelView,
  type RunWithCacheOptions,
  type RunWithHooksOptions,
  type ScopeLayer,
} from "../model/model.ts";
import type { SaeAttachment } from "../model/provenance.ts";
import { type SAE, SAE_HOOKS } from "./sae.ts";
import { Transcoder } from "./transcoder.ts";

/** Options of `addSae` / `withSaes`. */
export interface AddSaeOptions {
  /** Add the SAE's reconstruction error back (overrides `sae.useErrorTerm` while attached). */
  useErrorTerm?: boolean;
  /** Attach even though the SAE's `model_name` names another model. */
  allowOtherModel?: boolean;
}

/** SAEs for one run. */
export interface WithSaesOptions extends AddSaeOptions {
  /** The SAEs attached for this run only. */
  saes: SAE[];
}

/** A scope of SAEs (and hooks) that is also a view of the model: see {@link ModelView}. */
export type SaeScope = ModelView;

type Attachment = SaeAttachment<SAE | Transcoder>;

/**
 * The layer that splices `saes` (SAEs and transcoders, by the hook they replace) into the hook
 * points: at an SAE's hook, the SAE runs with its own hook points passed to the layer beneath; a
 * transcoder's input hook stashes the activation that goes on (for this call: the layer is made
 * per call), and its output hook runs the transcoder on it.
 */
function saeLayer(saes: ReadonlyMap<string, Attachment>): HookLayer {
  const reads = new Map<string, string[]>(); // input hook -> the output hooks that read it
  for (const [out, a] of saes) {
    if (!(a.sae instanceof Transcoder)) continue;
    const h = a.sae.cfg.hookName!;
    reads.set(h, [...reads.get(h) ?? [], out]);
  }
  return (inner) => {
    const stashed = new Map<string, Tensor>();
    const run = async (name: string, act: Tensor): Promise<Tensor> => {
      const a = saes.get(name);
      if (!a) return await inner.hook(name, act);
      const errorTerm = a.useErrorTerm ?? a.sae.useErrorTerm;
      const hooked = SAE_HOOKS.some((h) => inner.mayReplace(`${name}.${h}`));
      const sub = (n: string, t: Tensor) => inner.hook(`${name}.${n}`, t);
      if (!(a.sae instanceof Transcoder)) return await a.sae.run(act, sub, errorTerm, hooked);
      const x = stashed.get(name);
      if (!x) {
        throw new SaeAttachError(
          `Transcoder ${a.sae.source} replaces ${name} but its input hook ${a.sae.cfg.hookName} ` +
            "did not fire before it in this call: attach it to a model that runs both hooks.",
        );
      }
      stashed.delete(name);
      return await a.sae.run(x, act, sub, errorTerm, hooked);
    };
    return {
      mayReplace: (name) => saes.has(name) || reads.has(name) || inner.mayReplace(name),
      async hook(name: string, act: Tensor): Promise<Tensor> {
        const out = await run(name, act);
        for (const o of reads.get(name) ?? []) stashed.set(o, out);
        return out;
      },
    };
  };
}

/** Width of the activation an SAE sees at a hook point, or null for hooks no SAE can read. */
function hookWidth(model: HookedTransformer, name: string, reshapeZ: boolean): number | null {
  const c = model.cfg;
  const heads = /attn\.hook_(k|v)$/.test(name) && c.nKeyValueHeads ? c.nKeyValueHeads : c.nHeads;
  if (/attn\.hook_(q|k|v|z|rot_q|rot_k)$/.test(name)) return reshapeZ ? heads * c.dHead : c.dHead;
  if (/mlp\.hook_(pre|post|pre_linear)$/.test(name)) return c.dMlp;
  if (/hook_scale$/.test(name) || /hook_(attn_scores|pattern)$/.test(name)) return null;
  if (name === "unembed.hook_out") return c.dVocabOut;
  return c.dModel;
}

/** The hook an SAE or transcoder replaces. */
function hookOf(s: SAE | Transcoder): string {
  return s instanceof Transcoder ? s.cfg.hookNameOut! : s.cfg.hookName;
}

/** A HookedTransformer that SAEs attach to. See the module docs. */
export class HookedSAETransformer extends HookedTransformer {
  /** The persistent SAEs (addSae / resetSaes). */
  #saes = new Map<string, Attachment>();

  /**
   * Loads an HF model directory with TransformerLens's default weight processing.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer } from "@hooklens/hooklens";
   *
   * // An HF model folder (config.json + model.safetensors), or a hub id such as "gpt2".
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * assert.equal(model.cfg.nLayers, 2);
   * ```
   */
  static override async fromPretrained(
    source: string,
    opts: LoadOptions = {},
  ): Promise<HookedSAETransformer> {
    return (await super.fromPretrained(source, opts)) as HookedSAETransformer;
  }

  /**
   * Loads an HF model directory without weight processing.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer } from "@hooklens/hooklens";
   *
   * using raw = await HookedSAETransformer.fromPretrainedNoProcessing("tests/reference/gpt2_tiny/hf");
   * assert.ok(raw.hookNames().includes("blocks.0.ln1.hook_scale"));
   * ```
   */
  static override async fromPretrainedNoProcessing(
    source: string,
    opts: LoadOptions = {},
  ): Promise<HookedSAETransformer> {
    return (await super.fromPretrainedNoProcessing(source, opts)) as HookedSAETransformer;
  }

  /**
   * The SAEs plain calls run with now (persistent and every open scope's), by hook name.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * model.addSae(sae);
   * assert.deepEqual([...model.attachedSaes.keys()], ["blocks.1.hook_resid_pre"]);
   * ```
   */
  get attachedSaes(): ReadonlyMap<string, SAE> {
    return new Map(
      [...this.effectiveSaes()].flatMap(([k, a]) =>
        a.sae instanceof Transcoder ? [] : [[k, a.sae as SAE] as const]
      ),
    );
  }

  /**
   * The transcoders plain calls run with now (persistent and every open scope's), by output hook.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, Transcoder } from "@hooklens/hooklens";
   * import { writeSafetensors } from "../io/safetensors.ts";
   *
   * // A zero transcoder for gpt2_tiny's first MLP, in SAELens's layout.
   * const dir = await Deno.makeTempDir();
   * const zeros = (...shape: number[]) => ({ dtype: "F32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b)) });
   * await writeSafetensors(`${dir}/sae_weights.safetensors`, { W_enc: zeros(64, 8), b_enc: zeros(8), W_dec: zeros(8, 64), b_dec: zeros(64) });
   * await Deno.writeTextFile(`${dir}/cfg.json`, JSON.stringify({ architecture: "transcoder", d_in: 64, d_sae: 8, d_out: 64,
   *   hook_name: "blocks.0.ln2.hook_normalized", hook_name_out: "blocks.0.hook_mlp_out" }));
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using tc = await Transcoder.load(dir);
   * model.addTranscoder(tc);
   * assert.deepEqual([...model.attachedTranscoders.keys()], ["blocks.0.hook_mlp_out"]);
   * ```
   */
  get attachedTranscoders(): ReadonlyMap<string, Transcoder> {
    return new Map(
      [...this.effectiveSaes()].flatMap(([k, a]) =>
        a.sae instanceof Transcoder ? [[k, a.sae] as const] : []
      ),
    );
  }

  /** Every hook point, in firing order; an attached SAE's hooks replace its hook name. */
  override hookNames(): string[] {
    const saes = this.effectiveSaes();
    const out: string[] = [];
    for (const n of super.hookNames()) {
      const a = saes.get(n);
      if (!a) {
        out.push(n);
        continue;
      }
      const err = a.useErrorTerm ?? a.sae.useErrorTerm;
      for (const h of SAE_HOOKS) if (err || h !== "hook_sae_error") out.push(`${n}.${h}`);
    }
    return out;
  }

  /** Checks that every SAE fits this model; throws before anything changes. */
  #validate(saes: readonly SAE[], opts: AddSaeOptions): void {
    const seen = new Set<string>();
    const base = (n: string) => n.toLowerCase().split("/").at(-1)!;
    for (const sae of saes) {
      const h = sae.cfg.hookName;
      if (sae.disposed) {
        throw new DisposedError(
          `SAE ${sae.source} (${h}) was disposed: load it again with SAE.load before attaching it.`,
        );
      }
      const [mine, theirs] = [this.cfg.modelName, sae.cfg.modelName];
      if (!opts.allowOtherModel && mine && theirs && base(mine) !== base(theirs)) {
        throw new SaeAttachError(
          `SAE ${sae.source} was trained on model "${theirs}" (metadata.model_name), but this model is ` +
            `"${mine}": load the SAE made for this model, or pass { allowOtherModel: true } to attach it anyway.`,
        );
      }
      if (!this.hasBaseHook(h)) {
        throw new SaeAttachError(
          `SAE ${sae.source} attaches to "${h}", which is not a hook point of this model ` +
            `(${this.cfg.originalArchitecture}, ${this.cfg.nLayers} layers). Valid hook names: ` +
            `${super.hookNames().join(", ")}.`,
        );
      }
      const width = hookWidth(this, h, sae.cfg.reshapeActivations === "hook_z");
      if (width === null) {
        throw new SaeAttachError(`SAE ${sae.source}: no SAE can attach to "${h}".`);
      }
      if (width !== sae.cfg.dIn) {
        throw new SaeAttachError(
          `SAE ${sae.source} has d_in ${sae.cfg.dIn}, but ${h} has width ${width}` +
            ` (d_model ${this.cfg.dModel}): load the SAE trained for this hook and model.`,
        );
      }
      if (seen.has(h)) {
        throw new SaeAttachError(`Two SAEs given for the same hook ${h}: attach one per hook.`);
      }
      seen.add(h);
    }
  }

  /** Checks that every transcoder fits this model; throws before anything changes. */
  #validateTranscoders(tcs: readonly Transcoder[], opts: AddSaeOptions): void {
    const seen = new Set<string>();
    const base = (n: string) => n.toLowerCase().split("/").at(-1)!;
    const order = super.hookNames();
    for (const tc of tcs) {
      const { hookName: hIn, hookNameOut: hOut } = tc.cfg;
      if (tc.disposed) {
        throw new DisposedError(
          `Transcoder ${tc.source} was disposed: load it again with Transcoder.load before attaching it.`,
        );
      }
      if (!hIn || !hOut) {
        throw new SaeAttachError(
          `Transcoder ${tc.source} names no ${
            hIn ? "output hook (hook_name_out)" : "input hook (hook_name)"
          }` +
            ": load it with Transcoder.load(dir, { hookName, hookNameOut }).",
        );
      }
      const [mine, theirs] = [this.cfg.modelName, tc.cfg.modelName];
      if (!opts.allowOtherModel && mine && theirs && base(mine) !== base(theirs)) {
        throw new SaeAttachError(
          `Transcoder ${tc.source} was trained on model "${theirs}" (metadata.model_name), but this ` +
            `model is "${mine}": load the transcoder made for this model, or pass ` +
            "{ allowOtherModel: true } to attach it anyway.",
        );
      }
      for (
        const [h, d, what] of [[hIn, tc.cfg.dIn, "d_in"], [hOut, tc.cfg.dOut, "d_out"]] as const
      ) {
        if (!this.hasBaseHook(h)) {
          throw new SaeAttachError(
            `Transcoder ${tc.source} uses "${h}", which is not a hook point of this model ` +
              `(${this.cfg.originalArchitecture}, ${this.cfg.nLayers} layers). Valid hook names: ` +
              `${order.join(", ")}.`,
          );
        }
        const width = hookWidth(this, h, false);
        if (width === null) {
          throw new SaeAttachError(`Transcoder ${tc.source}: no transcoder can use "${h}".`);
        }
        if (width !== d) {
          throw new SaeAttachError(
            `Transcoder ${tc.source} has ${what} ${d}, but ${h} has width ${width}` +
              ` (d_model ${this.cfg.dModel}): load the transcoder trained for these hooks and model.`,
          );
        }
      }
      if (order.indexOf(hOut) <= order.indexOf(hIn)) {
        throw new SaeAttachError(
          `Transcoder ${tc.source} writes ${hOut}, which does not come after its input hook ${hIn} ` +
            "in the forward pass: the output hook must fire after the input hook.",
        );
      }
      if (seen.has(hOut)) {
        throw new SaeAttachError(
          `Two transcoders given for the same output hook ${hOut}: attach one per hook.`,
        );
      }
      seen.add(hOut);
    }
  }

  /** @ignore The persistent layer, for the model's call machinery. */
  protected override persistentSaes(): ReadonlyMap<string, SaeAttachment> {
    return this.#saes;
  }

  /** @ignore Splices the SAEs of a call in; a disposed one is a typed error before anything runs. */
  protected override saeLayer(saes: ReadonlyMap<string, SaeAttachment>): HookLayer | null {
    for (const [h, a] of saes as ReadonlyMap<string, Attachment>) {
      if (a.sae.disposed) {
        const what = a.sae instanceof Transcoder ? "Transcoder" : "SAE";
        const load = a.sae instanceof Transcoder ? "Transcoder.load" : "SAE.load";
        throw new DisposedError(
          `${what} ${a.sae.source} attached at ${h} was disposed: detach it (resetSaes, or close its ` +
            `scope) or load it again with ${load}.`,
        );
      }
    }
    return saeLayer(saes as ReadonlyMap<string, Attachment>);
  }

  /**
   * Attaches an SAE at its hook until `resetSaes` (replacing a persistent one there), like
   * SAELens's `add_sae`. It goes to the persistent layer, also when called inside a scope (it
   * stays after the scope closes; an open scope's SAE at the same hook wins while it is open).
   * A bad SAE throws and leaves the model unchanged.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * model.addSae(sae, { useErrorTerm: true });
   * assert.ok(model.hookNames().includes("blocks.1.hook_resid_pre.hook_sae_error"));
   * model.resetSaes();
   * ```
   */
  addSae(sae: SAE, opts: AddSaeOptions = {}): void {
    this.#validate([sae], opts);
    this.#saes.set(sae.cfg.hookName, { sae, useErrorTerm: opts.useErrorTerm });
  }

  /**
   * Detaches the persistent SAEs at these hook names (all when omitted). Open scopes keep theirs.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * model.addSae(sae);
   * model.resetSaes();
   * assert.equal(model.attachedSaes.size, 0);
   * ```
   */
  resetSaes(hookNames?: string[]): void {
    if (!hookNames) this.#saes.clear();
    else for (const h of hookNames) this.#saes.delete(h);
  }

  /**
   * Opens a scope with these SAEs and returns it as a view of the model: `using v =
   * model.withSaes([sae])`. The view's calls run with the persistent SAEs plus these, whatever
   * other tasks do; plain model calls see them until the scope closes (at the block's end, also
   * on a throw). Closing removes exactly this scope's SAEs, in any order, once.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using plain = await model.forward([[1, 2, 3]]);
   * {
   *   using v = model.withSaes([sae], { useErrorTerm: true });
   *   using withError = await v.forward([[1, 2, 3]]);
   *   // With the error term the SAE changes nothing downstream (up to rounding).
   *   const [a, b] = [await plain.toArray(), await withError.toArray()];
   *   assert.ok(a.every((x, i) => Math.abs(x - b[i]) < 1e-3));
   * }
   * ```
   */
  withSaes(saes: SAE[], opts: AddSaeOptions = {}): SaeScope {
    this.#validate(saes, opts);
    return this.openScope(this.#layer(saes, opts));
  }

  #layer(saes: (SAE | Transcoder)[], opts: AddSaeOptions): ScopeLayer {
    const map = new Map<string, Attachment>();
    for (const sae of saes) map.set(hookOf(sae), { sae, useErrorTerm: opts.useErrorTerm });
    return { hooks: null, saes: map };
  }

  /**
   * Attaches a transcoder until `resetSaes` (with the output hook's name), like `addSae`: it reads
   * `tc.cfg.hookName` and replaces `tc.cfg.hookNameOut` (and whatever SAE or transcoder is
   * persistent there). A transcoder that does not fit throws a {@link SaeAttachError} and leaves
   * the model unchanged.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, Transcoder } from "@hooklens/hooklens";
   * import { writeSafetensors } from "../io/safetensors.ts";
   *
   * // A zero transcoder for gpt2_tiny's first MLP, in SAELens's layout.
   * const dir = await Deno.makeTempDir();
   * const zeros = (...shape: number[]) => ({ dtype: "F32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b)) });
   * await writeSafetensors(`${dir}/sae_weights.safetensors`, { W_enc: zeros(64, 8), b_enc: zeros(8), W_dec: zeros(8, 64), b_dec: zeros(64) });
   * await Deno.writeTextFile(`${dir}/cfg.json`, JSON.stringify({ architecture: "transcoder", d_in: 64, d_sae: 8, d_out: 64,
   *   hook_name: "blocks.0.ln2.hook_normalized", hook_name_out: "blocks.0.hook_mlp_out" }));
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using tc = await Transcoder.load(dir);
   * model.addTranscoder(tc, { useErrorTerm: true });
   * assert.ok(model.hasHook("blocks.0.hook_mlp_out.hook_sae_error"));
   * model.resetSaes();
   * assert.ok(model.hasHook("blocks.0.hook_mlp_out"));
   * ```
   */
  addTranscoder(tc: Transcoder, opts: AddSaeOptions = {}): void {
    this.#validateTranscoders([tc], opts);
    this.#saes.set(hookOf(tc), { sae: tc, useErrorTerm: opts.useErrorTerm });
  }

  /**
   * Opens a scope with these transcoders, as `withSaes` does for SAEs: `using v =
   * model.withTranscoders([tc])`; they are detached when the scope closes.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, Transcoder } from "@hooklens/hooklens";
   * import { writeSafetensors } from "../io/safetensors.ts";
   *
   * // A zero transcoder for gpt2_tiny's first MLP, in SAELens's layout.
   * const dir = await Deno.makeTempDir();
   * const zeros = (...shape: number[]) => ({ dtype: "F32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b)) });
   * await writeSafetensors(`${dir}/sae_weights.safetensors`, { W_enc: zeros(64, 8), b_enc: zeros(8), W_dec: zeros(8, 64), b_dec: zeros(64) });
   * await Deno.writeTextFile(`${dir}/cfg.json`, JSON.stringify({ architecture: "transcoder", d_in: 64, d_sae: 8, d_out: 64,
   *   hook_name: "blocks.0.ln2.hook_normalized", hook_name_out: "blocks.0.hook_mlp_out" }));
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using tc = await Transcoder.load(dir);
   * {
   *   using v = model.withTranscoders([tc]);
   *   using logits = await v.forward([[1, 2, 3]]); // MLP 0's output is the transcoder's (b_dec)
   *   assert.equal(model.attachedTranscoders.size, 1);
   * }
   * assert.equal(model.attachedTranscoders.size, 0);
   * ```
   */
  withTranscoders(tcs: Transcoder[], opts: AddSaeOptions = {}): SaeScope {
    this.#validateTranscoders(tcs, opts);
    return this.openScope(this.#layer(tcs, opts));
  }

  /** A private view with these SAEs (plain calls and other tasks never see it). */
  #private(opts: WithSaesOptions): ModelView {
    this.#validate(opts.saes, opts);
    return this.openScope(this.#layer(opts.saes, opts), false);
  }

  /**
   * A forward pass with these SAEs attached for the call only (SAELens's `run_with_saes`).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using logits = await model.runWithSaes([[1, 2, 3]], { saes: [sae] }) as Tensor;
   * assert.deepEqual(logits.shape, [1, 3, 1000]);
   * assert.equal(model.attachedSaes.size, 0); // attached for that call only
   * ```
   */
  async runWithSaes(input: Input, opts: WithSaesOptions & ForwardOptions): Promise<ForwardOutput> {
    using v = this.#private(opts);
    return await v.forward(input, opts);
  }

  /**
   * `runWithCache` with these SAEs attached for the call only.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * const [logits, cache] = await model.runWithCacheWithSaes([[1, 2, 3]], { saes: [sae] });
   * const acts = cache.get("blocks.1.hook_resid_pre.hook_sae_acts_post");
   * assert.deepEqual(acts.shape, [1, 3, 256]); // [batch, pos, d_sae]
   * cache.dispose();
   * (logits as Tensor).dispose();
   * ```
   */
  async runWithCacheWithSaes(
    input: Input,
    opts: WithSaesOptions & RunWithCacheOptions,
  ): Promise<[ForwardOutput, ActivationCache]> {
    using v = this.#private(opts);
    return await v.runWithCache(input, opts);
  }

  /**
   * `runWithHooks` with these SAEs attached for the call only (hooks may target SAE hook points).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HookedSAETransformer, SAE, type Tensor } from "@hooklens/hooklens";
   *
   * using model = await HookedSAETransformer.fromPretrained("tests/reference/gpt2_tiny/hf");
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * const zeroAll = (a: Tensor): Tensor => a.scale(0); // ablate every latent
   * using ablated = await model.runWithHooksWithSaes([[1, 2, 3]], {
   *   saes: [sae],
   *   fwdHooks: [[`${sae.cfg.hookName}.hook_sae_acts_post`, zeroAll]],
   * }) as Tensor;
   * using clean = await model.runWithSaes([[1, 2, 3]], { saes: [sae] }) as Tensor;
   * assert.notDeepEqual(await ablated.toArray(), await clean.toArray());
   * ```
   */
  async runWithHooksWithSaes(
    input: Input,
    opts: WithSaesOptions & RunWithHooksOptions,
  ): Promise<ForwardOutput> {
    using v = this.#private(opts);
    return await v.runWithHooks(input, opts);
  }
}
