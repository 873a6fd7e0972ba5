/**
 * SAE: a sparse autoencoder in SAELens's on-disk layout (`cfg.json` + `sae_weights.safetensors`),
 * standard (ReLU), top-k, JumpReLU and gated, run in our WGSL kernels. The computation follows
 * SAELens: hook_sae_input -> (normalise, - b_dec) -> encode -> hook_sae_acts_pre -> activation ->
 * hook_sae_acts_post -> decode -> hook_sae_recons -> (denormalise, reshape) [+ hook_sae_error]
 * -> hook_sae_output.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SAE, Tensor } from "@hooklens/hooklens";
 *
 * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
 * assert.equal(sae.cfg.hookName, "blocks.1.hook_resid_pre");
 * using x = Tensor.from(new Float32Array(2 * 64).fill(0.5), [2, 64]); // [pos, d_in]
 * using acts = await sae.encode(x);
 * assert.deepEqual(acts.shape, [2, 256]); // [pos, d_sae]
 * ```
 * @module
 */
import { join } from "node:path";
import { ConfigError, DisposedError, ShapeError, WeightsError } from "../errors.ts";
import { Tape } from "../model/tape.ts";
import { readJsonFile } from "../io/json.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import { isHubId } from "../io/hub.ts";
import * as ops from "../gpu/ops.ts";
import { copyBuffer, initRuntime } from "../gpu/runtime.ts";
import { closeArena, openArena, Tensor } from "../gpu/tensor.ts";
import { type SaeConfig, saeConfigFromJson } from "./config.ts";
import { GEMMA_SCOPE_FILE, readGemmaScope } from "./gemma_scope.ts";
import { LLAMA_SCOPE_FILE, readLlamaScope } from "./llama_scope.ts";
import { downloadPretrainedSae, downloadSaeFolder, resolvePretrainedSae } from "./registry.ts";

/** Up to this many tokens, decoding reads only the active rows of W_dec; above, a dense matmul. */
export const SPARSE_DECODE_MAX_ROWS = 64;

/** The hook points inside an attached SAE, in firing order (error only with the error term). */
export const SAE_HOOKS: readonly string[] = [
  "hook_sae_input",
  "hook_sae_acts_pre",
  "hook_sae_acts_post",
  "hook_sae_recons",
  "hook_sae_error",
  "hook_sae_output",
];

/** Runs one of the SAE's hook points (name relative to the SAE, e.g. "hook_sae_acts_post"). */
export type SaeHookRunner = (name: string, act: Tensor) => Promise<Tensor>;

/** Options of {@link SAE.load}. */
export interface SaeLoadOptions {
  /** Hub revision when loading "org/name/path" from the hub; default "main". */
  revision?: string;
  /** Most active latents per token the sparse decode lists (more: that token decodes densely). */
  decodeCapacity?: number;
  /** Hook point, for formats that do not name one (Gemma Scope's params.npz; overrides Llama Scope's). */
  hookName?: string;
  /** Model the SAE was trained on, for formats that do not name one (Gemma and Llama Scope). */
  modelName?: string;
}

const EXPECTED: Record<string, string[]> = {
  standard: ["W_enc", "b_enc", "W_dec", "b_dec"],
  topk: ["W_enc", "b_enc", "W_dec", "b_dec"],
  jumprelu: ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"],
  gated: ["W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"],
};

/** A sparse autoencoder on the GPU. See the module docs. */
export class SAE {
  /** Configuration (camelCase SAELens cfg). */
  readonly cfg: Readonly<SaeConfig>;
  /** Add the reconstruction error back so the model's output is unchanged without hooks. */
  useErrorTerm = false;
  /** Where it was loaded from. */
  readonly source: string;
  readonly #w: Map<string, Tensor>;
  readonly #cap: number;
  #disposed = false;

  private constructor(cfg: SaeConfig, source: string, w: Map<string, Tensor>, cap: number) {
    this.cfg = Object.freeze({ ...cfg });
    this.source = source;
    this.#w = w;
    this.#cap = cap;
  }

  /**
   * Loads an SAE from a directory in SAELens's layout (`cfg.json` + `sae_weights.safetensors`),
   * Gemma Scope's (`params.npz`, a JumpReLU SAE; the hook name from `opts.hookName` or a
   * sidecar `cfg.json`) or Llama Scope's (`hyperparams.json` + `checkpoints/final.safetensors`).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SAE } from "@hooklens/hooklens";
   *
   * // A folder holding cfg.json + sae_weights.safetensors (or a hub path "org/name/folder").
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/topk_mlp_out0");
   * assert.equal(sae.cfg.architecture, "topk");
   * ```
   */
  static async load(dir: string, opts: SaeLoadOptions = {}): Promise<SAE> {
    await initRuntime();
    const local = await Deno.stat(dir).then((s) => s.isDirectory).catch(() => false);
    if (!local) {
      if (!isHubId(dir, true)) {
        throw new ConfigError(dir, "no such SAE directory (and not a hub path org/name/folder)");
      }
      dir = await downloadSaeFolder(dir, { revision: opts.revision });
    }
    const isFile = (f: string) => Deno.stat(join(dir, f)).then((s) => s.isFile, () => false);
    if (await isFile(GEMMA_SCOPE_FILE) || await isFile(LLAMA_SCOPE_FILE)) {
      const read = await isFile(GEMMA_SCOPE_FILE) ? readGemmaScope : readLlamaScope;
      const { cfg, weights } = await read(dir, opts);
      return SAE.fromWeights(cfg, weights, { ...opts, source: dir });
    }
    const cfgPath = join(dir, "cfg.json");
    const cfg = saeConfigFromJson(await readJsonFile(cfgPath), cfgPath);
    const wPath = join(dir, "sae_weights.safetensors");
    using f = await SafetensorsFile.open(wPath);
    const { dIn, dSae } = cfg;
    const shapes: Record<string, number[]> = {
      W_enc: [dIn, dSae],
      W_dec: [dSae, dIn],
      b_enc: [dSae],
      b_dec: [dIn],
      threshold: [dSae],
      b_gate: [dSae],
      r_mag: [dSae],
      b_mag: [dSae],
    }; // deno-fmt-ignore
    const want = EXPECTED[cfg.architecture];
    const missing = want.filter((n) => !f.has(n));
    if (missing.length) {
      throw new WeightsError(
        wPath,
        `missing ${missing.join(", ")} for a ${cfg.architecture} SAE`,
        missing[0],
      );
    }
    const extra = f.names().filter((n) => !want.includes(n) && n !== "scaling_factor");
    if (extra.length) {
      throw new WeightsError(
        wPath,
        `unexpected tensors ${extra.join(", ")} for a ${cfg.architecture} SAE`,
        extra[0],
      );
    }
    const cpu = new Map<string, Float32Array>();
    for (const n of want) {
      const got = f.info(n).shape;
      if (got.length !== shapes[n].length || got.some((d, i) => d !== shapes[n][i])) {
        throw new WeightsError(
          wPath,
          `shape [${got.join(", ")}], expected [${
            shapes[n].join(", ")
          }] (d_in ${dIn}, d_sae ${dSae})`,
          n,
        );
      }
      const data = await f.floatWeights(n);
      const bad = data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new WeightsError(wPath, `non-finite value ${data[bad]} at element ${bad}`, n);
      }
      cpu.set(n, data);
    }
    if (f.has("scaling_factor")) {
      const s = await f.floatWeights("scaling_factor");
      if (s.some((v) => v !== 1)) {
        throw new WeightsError(
          wPath,
          "a finetuning scaling_factor other than 1 is not supported",
          "scaling_factor",
        );
      }
    }
    return SAE.fromWeights(cfg, Object.fromEntries(cpu), { ...opts, source: dir });
  }

  /**
   * Loads an SAE by its SAELens release name and id (`pretrained_saes.json`: GPT-2 small res-jb,
   * Gemma Scope, Llama Scope, Pythia), downloading into the hub cache or, offline
   * (`HF_HUB_OFFLINE=1` or `{ offline: true }`), reading it from there. Without an id, `release`
   * is a local directory or hub path, as for {@link SAE.load}.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SAE } from "@hooklens/hooklens";
   *
   * // Without an id: a local folder (or hub path), as SAE.load.
   * using sae = await SAE.fromPretrained("tests/reference/gpt2_tiny/saes/jumprelu_z1");
   * assert.equal(sae.cfg.architecture, "jumprelu");
   * ```
   *
   * @example By release and id (not run as a doc test: it downloads from the hub)
   * ```
   * const sae = await SAE.fromPretrained("gemma-scope-2b-pt-res-canonical", "layer_20/width_16k/canonical");
   * console.log(sae.cfg.hookName); // blocks.20.hook_resid_post
   * ```
   */
  static async fromPretrained(
    release: string,
    saeId?: string,
    opts: SaeLoadOptions & { offline?: boolean } = {},
  ): Promise<SAE> {
    if (saeId === undefined) return await SAE.load(release, opts);
    const e = resolvePretrainedSae(release, saeId);
    const dir = await downloadPretrainedSae(e, { revision: opts.revision, offline: opts.offline });
    if (e.format === "saelens") return await SAE.load(dir, opts);
    const named = {
      hookName: opts.hookName ?? e.hook ?? undefined,
      modelName: opts.modelName ?? e.model,
    };
    const { cfg, weights } = e.format === "gemma_scope"
      ? await readGemmaScope(dir, { ...named, embedding: e.embedding })
      : await readLlamaScope(dir, {
        ...named,
        normScalingFactor: e.normScalingFactor ?? undefined,
      });
    return SAE.fromWeights(cfg, weights, { ...opts, source: `${release}/${saeId}` });
  }

  /**
   * An SAE from a config and weights in memory (SAELens names: W_enc [d_in, d_sae], b_enc, W_dec
   * [d_sae, d_in], b_dec, and threshold / b_gate, r_mag, b_mag by architecture).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SAE, Tensor } from "@hooklens/hooklens";
   * import { saeConfigFromJson } from "./config.ts";
   *
   * const cfg = saeConfigFromJson({
   *   d_in: 2,
   *   d_sae: 2,
   *   architecture: "standard",
   *   metadata: { hook_name: "blocks.0.hook_resid_pre" },
   * }, "cfg.json");
   * const identity = new Float32Array([1, 0, 0, 1]);
   * using sae = await SAE.fromWeights(cfg, {
   *   W_enc: identity,
   *   b_enc: new Float32Array(2),
   *   W_dec: identity,
   *   b_dec: new Float32Array(2),
   * });
   * using x = Tensor.from([3, -1], [1, 2]);
   * using acts = await sae.encode(x);
   * assert.deepEqual([...await acts.toArray()], [3, 0]); // ReLU(x · W_enc + b_enc)
   * ```
   */
  static async fromWeights(
    cfg: SaeConfig,
    weights: Record<string, Float32Array>,
    opts: SaeLoadOptions & { source?: string } = {},
  ): Promise<SAE> {
    await initRuntime();
    const source = opts.source ?? "(in memory)";
    const { dIn, dSae } = cfg;
    const sizes: Record<string, number> = {
      W_enc: dIn * dSae,
      W_dec: dSae * dIn,
      b_enc: dSae,
      b_dec: dIn,
      threshold: dSae,
      b_gate: dSae,
      r_mag: dSae,
      b_mag: dSae,
    }; // deno-fmt-ignore
    for (const n of EXPECTED[cfg.architecture]) {
      if (!weights[n] || weights[n].length !== sizes[n]) {
        throw new WeightsError(source, `needs ${sizes[n]} values for a ${cfg.architecture} SAE, got ${weights[n]?.length ?? "none"}`, n);
      }
    }
    const cpu = new Map(Object.entries(weights));
    const wDec = cpu.get("W_dec")!;
    const norms = new Float32Array(dSae);
    for (let j = 0; j < dSae; j++) {
      let s = 0;
      for (let d = 0; d < dIn; d++) s += wDec[j * dIn + d] ** 2;
      norms[j] = Math.sqrt(s);
    }
    // b_dec and the per-latent decode scale (1 / ||W_dec[j]|| for rescaled top-k) in one buffer.
    const extra = new Float32Array(dIn + dSae);
    extra.set(cpu.get("b_dec")!, 0);
    extra.set(norms.map((v) => 1 / v), dIn);
    const w = new Map<string, Tensor>();
    const up = (name: string, data: Float32Array, shape: number[]) =>
      w.set(name, Tensor.from(data, shape).keep());
    up("W_enc", cpu.get("W_enc")!, [dIn, dSae]);
    up("b_dec", cpu.get("b_dec")!, [dIn]);
    up("W_dec", wDec, [dSae, dIn]);
    up("dec_extra", extra, [extra.length]);
    up("inv_dec_norm", norms.map((v) => 1 / v), [dSae]);
    up("dec_norm", norms, [dSae]);
    if (cpu.has("b_enc")) up("b_enc", cpu.get("b_enc")!, [dSae]);
    if (cpu.has("threshold")) up("threshold", cpu.get("threshold")!, [dSae]);
    if (cfg.architecture === "gated") {
      const wEnc = cpu.get("W_enc")!, rMag = cpu.get("r_mag")!;
      const wMag = wEnc.map((v, i) => v * Math.exp(rMag[i % dSae]));
      up("W_mag", wMag, [dIn, dSae]);
      up("b_gate", cpu.get("b_gate")!, [dSae]);
      up("b_mag", cpu.get("b_mag")!, [dSae]);
    }
    const cap = Math.max(1, Math.min(dSae, opts.decodeCapacity ?? cfg.k ?? 256));
    return new SAE(cfg, source, w, cap);
  }

  /** Input width as the hook sees it: [.., heads, d_head] for hook_z SAEs, else [.., d_in]. */
  #flatIn(x: Tensor): Tensor {
    const dIn = this.cfg.dIn;
    if (this.cfg.reshapeActivations === "hook_z" && x.shape.length >= 2) {
      const heads = x.shape.at(-2)!, dh = x.shape.at(-1)!;
      if (heads * dh !== dIn) {
        throw new ShapeError(
          `SAE ${this.cfg.hookName}: hook_z input [${
            x.shape.join(", ")
          }] has ${heads}x${dh}, d_in is ${dIn}.`,
        );
      }
      return x.reshape([...x.shape.slice(0, -2), dIn]);
    }
    if (x.shape.at(-1) !== dIn) {
      throw new ShapeError(
        `SAE ${this.cfg.hookName}: input [${x.shape.join(", ")}] does not end in d_in ${dIn}.`,
      );
    }
    return x;
  }

  /**
   * The SAE's computation with its hook points run through `hook`; the output has x's shape.
   * `clean` is needed only with the error term when hooks may change the SAE's internals: it
   * reruns the SAE without hooks for the error (as SAELens does).
   */
  async run(
    x: Tensor,
    hook: SaeHookRunner,
    errorTerm: boolean,
    hooksMayChange: boolean,
  ): Promise<Tensor> {
    this.#checkUsable();
    const recons = await this.#reconstruct(x, hook);
    if (!errorTerm) return await hook("hook_sae_output", recons);
    // The error is a constant for gradients (SAELens computes it under no_grad).
    const clean = hooksMayChange
      ? await Tape.untaped(() => this.#reconstruct(x, (_n, t) => Promise.resolve(t)))
      : recons;
    const error = await hook("hook_sae_error", x.sub(clean));
    const out = recons.add(error);
    Tape.record([out], [recons, null], ([g]) => [g, null]);
    return await hook("hook_sae_output", out);
  }

  async #reconstruct(x: Tensor, hook: SaeHookRunner): Promise<Tensor> {
    const cfg = this.cfg;
    const flat = this.#flatIn(x);
    if (flat !== x) Tape.record([flat], [x], ([g]) => [g!.clone().moveTo([...x.shape])]);
    const sin = await hook("hook_sae_input", flat);
    const stats = cfg.normalizeActivations === "constant_norm_rescale" ||
        cfg.normalizeActivations === "layer_norm"
      ? ops.rowStats(sin)
      : null;
    const layerNorm = cfg.normalizeActivations === "layer_norm";
    const normed = stats ? ops.rowNorm(sin, stats, layerNorm ? "layerNormIn" : "constantIn") : sin;
    if (stats) {
      Tape.record(
        [normed],
        [sin],
        ([g]) => [ops.rowNormInGrad(g!, sin, stats, layerNorm ? "layerNormIn" : "constantIn")],
      );
    }
    const acts = await this.encodeHooked(normed, hook);
    const decoded = this.decodeFlat(acts);
    const scaled = cfg.architecture === "topk" && cfg.rescaleActsByDecoderNorm;
    Tape.record([decoded], [acts], ([g]) => {
      const ga = ops.linearBack(g!, this.#w.get("W_dec")!);
      return [scaled ? ga.mul(this.#w.get("inv_dec_norm")!) : ga];
    });
    let recons = await hook("hook_sae_recons", decoded);
    if (stats) {
      const r = recons;
      const mode = layerNorm ? "layerNormOut" : "constantOut";
      recons = ops.rowNorm(r, stats, mode);
      Tape.record([recons], [r, sin], ([g]) => ops.rowNormOutGrad(g!, r, stats, sin, mode));
    }
    if (cfg.reshapeActivations !== "hook_z") return recons;
    const out = recons.reshape([...x.shape]);
    Tape.record([out], [recons], ([g]) => [g!.clone().moveTo([...recons.shape])]);
    return out;
  }

  /** Encode of a normalised input: hook_sae_acts_pre, activation, hook_sae_acts_post. */
  async encodeHooked(normed: Tensor, hook: SaeHookRunner): Promise<Tensor> {
    const cfg = this.cfg, w = this.#w;
    const sae_in = cfg.applyBDecToInput ? normed.sub(w.get("b_dec")!) : normed;
    if (sae_in !== normed) Tape.record([sae_in], [normed], ([g]) => [g]);
    const back = (W: Tensor) => (g: Tensor) => ops.linearBack(g, W);
    if (cfg.architecture === "topk") {
      const pre0 = ops.matmul(sae_in, w.get("W_enc")!, w.get("b_enc"));
      Tape.record([pre0], [sae_in], ([g]) => [back(w.get("W_enc")!)(g!)]);
      const pre = await hook("hook_sae_acts_pre", pre0);
      const sel = cfg.rescaleActsByDecoderNorm ? pre.mul(w.get("dec_norm")!) : pre;
      if (sel !== pre) Tape.record([sel], [pre], ([g]) => [g!.mul(w.get("dec_norm")!)]);
      const post = ops.topK(sel, cfg.k!);
      Tape.record([post], [sel], ([g]) => [ops.maskGrad(g!, post)]);
      return await hook("hook_sae_acts_post", post);
    }
    let act: keyof typeof ops.SAE_ACT = "relu", aux: Tensor | undefined;
    let W = w.get("W_enc")!, b = w.get("b_enc");
    if (cfg.architecture === "jumprelu") [act, aux] = ["jumprelu", w.get("threshold")];
    if (cfg.architecture === "gated") {
      act = "gated";
      aux = ops.matmul(sae_in, W, w.get("b_gate"));
      [W, b] = [w.get("W_mag")!, w.get("b_mag")];
    }
    // One fused dispatch gives pre and post; only a hook that replaces pre forces a re-activation.
    const [pre, post] = ops.saeEncode(sae_in, W, b!, act, aux);
    // The active set (output non-zero) carries the gradient; gates and thresholds are steps.
    const Wenc = W;
    Tape.record([pre], [sae_in], ([g]) => [back(Wenc)(g!)]);
    const hookedPre = await hook("hook_sae_acts_pre", pre);
    const hookedPost = hookedPre === pre ? post : ops.saeActivation(hookedPre, act, aux);
    Tape.record([hookedPost], [hookedPre], ([g]) => [ops.maskGrad(g!, hookedPost)]);
    return await hook("hook_sae_acts_post", hookedPost);
  }

  /**
   * Latent j's decoder direction W_dec[j] as a [d_in] tensor (copied on the GPU): what steering
   * adds to the residual stream.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SAE } from "@hooklens/hooklens";
   *
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using dir = sae.decoderDirection(42); // row 42 of W_dec
   * assert.deepEqual(dir.shape, [64]);
   * ```
   */
  decoderDirection(j: number): Tensor {
    const { dIn, dSae } = this.cfg;
    if (!Number.isInteger(j) || j < 0 || j >= dSae) {
      throw new ShapeError(`Latent ${j} does not exist: this SAE has latents 0..${dSae - 1}.`);
    }
    const out = Tensor.empty([dIn]);
    copyBuffer(this.#w.get("W_dec")!.buffer, out.buffer, dIn * 4, j * dIn * 4, 0);
    return out;
  }

  /** recons = acts · W_dec + b_dec (sparse: reads only the active rows of W_dec). */
  decodeFlat(acts: Tensor): Tensor {
    if (acts.shape.at(-1) !== this.cfg.dSae) {
      throw new ShapeError(
        `SAE decode: latents [${acts.shape.join(", ")}] do not end in d_sae ${this.cfg.dSae}.`,
      );
    }
    const scaled = this.cfg.architecture === "topk" && this.cfg.rescaleActsByDecoderNorm;
    const rows = acts.size / this.cfg.dSae;
    if (rows > SPARSE_DECODE_MAX_ROWS) {
      // Many tokens: the dense tiled matmul beats per-row sparse sums (H100, 1024 tokens,
      // d_sae 24576, L0 154: 21.6 ms sparse; a dense 1024x24576x768 layer is ~2 ms).
      const a = scaled ? acts.mul(this.#w.get("inv_dec_norm")!) : acts;
      const [y] = ops.linear(a, this.#w.get("W_dec")!, this.#w.get("b_dec"));
      if (a !== acts) a.dispose();
      return y;
    }
    return ops.saeDecode(acts, this.#w.get("W_dec")!, this.#w.get("dec_extra")!, this.#cap, scaled);
  }

  /**
   * Latent activations of x [.., d_in] (or [.., heads, d_head] for hook_z SAEs).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SAE, Tensor } from "@hooklens/hooklens";
   *
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using x = Tensor.from(new Float32Array(3 * 64).fill(1), [3, 64]);
   * using acts = await sae.encode(x);
   * assert.deepEqual(acts.shape, [3, 256]);
   * assert.ok((await acts.toArray()).every((a) => a >= 0)); // ReLU latents
   * ```
   */
  async encode(x: Tensor): Promise<Tensor> {
    return await this.#standalone(async (id) => {
      const sin = this.#flatIn(x);
      const stats = this.#stats(sin);
      const normed = stats
        ? ops.rowNorm(
          sin,
          stats,
          this.cfg.normalizeActivations === "layer_norm" ? "layerNormIn" : "constantIn",
        )
        : sin;
      return await this.encodeHooked(normed, id);
    });
  }

  /**
   * Reconstruction [.., d_in] from latents [.., d_sae] (no input normalisation to undo).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SAE, Tensor } from "@hooklens/hooklens";
   * import { SafetensorsFile } from "../io/safetensors.ts";
   *
   * const dir = "tests/reference/gpt2_tiny/saes/std_resid_pre1";
   * using sae = await SAE.load(dir);
   * using acts = Tensor.from(new Float32Array(256), [1, 256]); // no latent active
   * using recons = await sae.decode(acts);
   * using weights = await SafetensorsFile.open(`${dir}/sae_weights.safetensors`);
   * assert.deepEqual(await recons.toArray(), await weights.float32("b_dec")); // just b_dec
   * ```
   */
  async decode(acts: Tensor): Promise<Tensor> {
    return await this.#standalone(() => Promise.resolve(this.decodeFlat(acts)));
  }

  /**
   * The SAE's output for x (with the error term if `useErrorTerm`), in x's shape.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SAE, Tensor } from "@hooklens/hooklens";
   *
   * using sae = await SAE.load("tests/reference/gpt2_tiny/saes/std_resid_pre1");
   * using x = Tensor.from(new Float32Array(2 * 64).fill(0.5), [2, 64]);
   * using y = await sae.forward(x);
   * assert.deepEqual(y.shape, [2, 64]);
   * ```
   */
  async forward(x: Tensor): Promise<Tensor> {
    return await this.#standalone((id) => this.run(x, id, this.useErrorTerm, false));
  }

  #stats(sin: Tensor): Tensor | null {
    const n = this.cfg.normalizeActivations;
    return n === "constant_norm_rescale" || n === "layer_norm" ? ops.rowStats(sin) : null;
  }

  async #standalone(fn: (id: SaeHookRunner) => Promise<Tensor>): Promise<Tensor> {
    this.#checkUsable();
    const arena = openArena();
    let out: Tensor | null = null;
    try {
      out = await fn((_n, t) => Promise.resolve(t));
      if (out.isView) out = out.clone();
      return out;
    } finally {
      closeArena(arena, out ? [out] : []);
      out?.keep();
    }
  }

  /** Frees the SAE's GPU weights. Attaching or running it afterwards is a DisposedError. */
  dispose(): void {
    this.#disposed = true;
    for (const t of this.#w.values()) t.dispose();
    this.#w.clear();
  }

  /** Whether {@link SAE.dispose} was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Throws a DisposedError naming this SAE if it was disposed. */
  #checkUsable(): void {
    if (this.#disposed) {
      throw new DisposedError(
        `SAE ${this.source} (${this.cfg.hookName}) was disposed: load it again with SAE.load.`,
      );
    }
  }

  /** Same as {@link SAE.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
