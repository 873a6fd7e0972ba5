/**
 * Transcoders in SAELens's on-disk layout (`cfg.json` + `sae_weights.safetensors`), as SAELens's
 * `Transcoder`, `SkipTranscoder` and `JumpReLUTranscoder` compute them: they read one hook point
 * ([.., d_in]) and predict another ([.., d_out]).
 *
 *   encode: acts = relu(x · W_enc + b_enc)  (JumpReLU: also zero where the pre-activation is not
 *           above its threshold); the input is not shifted by b_dec (it has d_out entries)
 *   decode: out = acts · W_dec + b_dec
 *   forward: decode(encode(x)), plus x · W_skipᵀ for a skip transcoder
 *
 * Standalone use (encode / decode / forward on tensors), or attached to a HookedSAETransformer
 * (`addTranscoder` / `withTranscoders`), where {@link Transcoder.run} replaces the output hook.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Tensor } from "@hooklens/hooklens";
 * import { Transcoder } from "./transcoder.ts";
 *
 * using tc = await Transcoder.load("tests/reference/sae_training/transcoders/skip_transcoder", {
 *   hookName: "blocks.0.ln2.hook_normalized",
 *   hookNameOut: "blocks.0.hook_mlp_out",
 * });
 * using x = Tensor.from(new Float32Array(tc.cfg.dIn), [1, tc.cfg.dIn]);
 * using y = await tc.forward(x);
 * assert.deepEqual(y.shape, [1, tc.cfg.dOut]);
 * ```
 * @module
 */
import { join } from "node:path";
import { ConfigError, DisposedError, ShapeError, WeightsError } from "../errors.ts";
import { type Json, readJsonFile } from "../io/json.ts";
import { SafetensorsFile } from "../io/safetensors.ts";
import * as ops from "../gpu/ops.ts";
import { initRuntime } from "../gpu/runtime.ts";
import { closeArena, openArena, Tensor } from "../gpu/tensor.ts";
import { Tape } from "../model/tape.ts";
import type { SaeHookRunner } from "./sae.ts";

/** Transcoder architectures (SAELens's names). */
export type TranscoderArchitecture = "transcoder" | "skip_transcoder" | "jumprelu_transcoder";

/** A transcoder's configuration (camelCase SAELens cfg). */
export interface TranscoderConfig {
  /** Input width (the input hook's). */
  dIn: number;
  /** Number of latents. */
  dSae: number;
  /** Output width (the output hook's). */
  dOut: number;
  /** Architecture. */
  architecture: TranscoderArchitecture;
  /** Hook read, if the config or the caller names it. */
  hookName: string | null;
  /** Hook written, if the config or the caller names it. */
  hookNameOut: string | null;
  /** Model trained on (metadata.model_name), if given. */
  modelName?: string;
}

/** Options of {@link Transcoder.load}. */
export interface TranscoderLoadOptions {
  /** Input hook, overriding (or supplying) the config's. */
  hookName?: string;
  /** Output hook, overriding (or supplying) the config's. */
  hookNameOut?: string;
}

const ARCHS: readonly TranscoderArchitecture[] = [
  "transcoder",
  "skip_transcoder",
  "jumprelu_transcoder",
];

/**
 * Parses a transcoder's cfg.json (SAELens 6). Run-time input normalisation and b_dec on the input
 * are refused (SAELens refuses the latter for transcoders too).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../io/json.ts";
 * import { transcoderConfigFromJson } from "./transcoder.ts";
 *
 * const path = "tests/reference/sae_training/transcoders/jumprelu_transcoder/cfg.json";
 * const cfg = transcoderConfigFromJson(await readJsonFile(path), path);
 * assert.equal(cfg.architecture, "jumprelu_transcoder");
 * assert.equal(cfg.hookName, null); // this cfg.json names no hooks
 * ```
 */
export function transcoderConfigFromJson(j: Json, file: string): TranscoderConfig {
  if (j === null || typeof j !== "object" || Array.isArray(j)) {
    throw new ConfigError(file, "not a JSON object");
  }
  const o = j as Record<string, Json>;
  const meta = o.metadata && typeof o.metadata === "object" && !Array.isArray(o.metadata)
    ? o.metadata as Record<string, Json>
    : {};
  const pos = (k: string): number => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0 || v > 2 ** 24) {
      throw new ConfigError(file, `must be a positive integer, got ${JSON.stringify(v)}`, k);
    }
    return v;
  };
  const arch = o.architecture;
  if (typeof arch !== "string" || !ARCHS.includes(arch as TranscoderArchitecture)) {
    throw new ConfigError(
      file,
      `not a transcoder architecture: ${JSON.stringify(arch)}; supported: ${ARCHS.join(", ")}`,
      "architecture",
    );
  }
  if (o.apply_b_dec_to_input === true) {
    throw new ConfigError(file, "must be false for a transcoder", "apply_b_dec_to_input");
  }
  const norm = o.normalize_activations ?? "none";
  if (norm !== "none") {
    throw new ConfigError(
      file,
      `run-time normalisation ${JSON.stringify(norm)} is not supported for transcoders`,
      "normalize_activations",
    );
  }
  if ((o.reshape_activations ?? "none") !== "none") {
    throw new ConfigError(file, 'must be "none" for a transcoder', "reshape_activations");
  }
  const str = (...vs: (Json | undefined)[]): string | null =>
    (vs.find((v) => typeof v === "string" && v) as string | undefined) ?? null;
  const model = str(o.model_name, meta.model_name);
  return {
    dIn: pos("d_in"),
    dSae: pos("d_sae"),
    dOut: pos("d_out"),
    architecture: arch as TranscoderArchitecture,
    hookName: str(o.hook_name, meta.hook_name),
    hookNameOut: str(o.hook_name_out, meta.hook_name_out),
    modelName: model ?? undefined,
  };
}

/** A transcoder on the GPU. See the module docs. */
export class Transcoder implements Disposable {
  /** Configuration. */
  readonly cfg: Readonly<TranscoderConfig>;
  /** Where it was loaded from. */
  readonly source: string;
  readonly #w: Map<string, Tensor>;

  private constructor(cfg: TranscoderConfig, source: string, w: Map<string, Tensor>) {
    this.cfg = Object.freeze({ ...cfg });
    this.source = source;
    this.#w = w;
  }

  /**
   * Loads a transcoder directory in SAELens's layout.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Transcoder } from "./transcoder.ts";
   *
   * using tc = await Transcoder.load("tests/reference/sae_training/transcoders/skip_transcoder");
   * assert.equal(tc.cfg.architecture, "skip_transcoder");
   * ```
   */
  static async load(dir: string, opts: TranscoderLoadOptions = {}): Promise<Transcoder> {
    await initRuntime();
    const cfgPath = join(dir, "cfg.json");
    const cfg = transcoderConfigFromJson(await readJsonFile(cfgPath), cfgPath);
    if (opts.hookName) cfg.hookName = opts.hookName;
    if (opts.hookNameOut) cfg.hookNameOut = opts.hookNameOut;
    const wPath = join(dir, "sae_weights.safetensors");
    using f = await SafetensorsFile.open(wPath);
    const { dIn, dSae, dOut } = cfg;
    const shapes: Record<string, number[]> = {
      W_enc: [dIn, dSae],
      b_enc: [dSae],
      W_dec: [dSae, dOut],
      b_dec: [dOut],
      ...(cfg.architecture === "jumprelu_transcoder" ? { threshold: [dSae] } : {}),
      ...(cfg.architecture === "skip_transcoder" ? { W_skip: [dOut, dIn] } : {}),
    };
    const want = Object.keys(shapes);
    const missing = want.filter((n) => !f.has(n));
    if (missing.length) {
      throw new WeightsError(
        wPath,
        `missing ${missing.join(", ")} for a ${cfg.architecture}`,
        missing[0],
      );
    }
    const extra = f.names().filter((n) => !want.includes(n));
    if (extra.length) {
      throw new WeightsError(
        wPath,
        `unexpected tensors ${extra.join(", ")} for a ${cfg.architecture}`,
        extra[0],
      );
    }
    const cpu: Record<string, Float32Array> = {};
    for (const n of want) {
      const got = f.info(n).shape;
      if (got.length !== shapes[n].length || got.some((d, i) => d !== shapes[n][i])) {
        throw new WeightsError(
          wPath,
          `shape [${got.join(", ")}], expected [${
            shapes[n].join(", ")
          }] (d_in ${dIn}, d_sae ${dSae}, d_out ${dOut})`,
          n,
        );
      }
      const data = await f.float32(n);
      const bad = data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new WeightsError(wPath, `non-finite value ${data[bad]} at element ${bad}`, n);
      }
      cpu[n] = data;
    }
    const w = new Map<string, Tensor>();
    for (const n of ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"]) {
      if (cpu[n]) w.set(n, Tensor.from(cpu[n], shapes[n]).keep());
    }
    if (cpu.W_skip) {
      // Stored [d_out, d_in]; kept transposed so that the skip term is one x · W dense layer.
      const t = new Float32Array(dIn * dOut);
      for (let o = 0; o < dOut; o++) {
        for (let i = 0; i < dIn; i++) t[i * dOut + o] = cpu.W_skip[o * dIn + i];
      }
      w.set("W_skipT", Tensor.from(t, [dIn, dOut]).keep());
    }
    return new Transcoder(cfg, dir, w);
  }

  #check(x: Tensor, width: number, what: string): void {
    if (this.#w.size === 0) {
      throw new DisposedError(
        `Transcoder ${this.source} was disposed: load it again with Transcoder.load.`,
      );
    }
    if (x.shape.at(-1) !== width) {
      throw new ShapeError(
        `Transcoder ${this.source}: ${what} [${x.shape.join(", ")}] does not end in ${width}.`,
      );
    }
  }

  #encode(x: Tensor): [Tensor, Tensor] {
    this.#check(x, this.cfg.dIn, "input");
    const jump = this.cfg.architecture === "jumprelu_transcoder";
    return ops.saeEncode(
      x,
      this.#w.get("W_enc")!,
      this.#w.get("b_enc")!,
      jump ? "jumprelu" : "relu",
      jump ? this.#w.get("threshold") : undefined,
    );
  }

  #decode(acts: Tensor): Tensor {
    this.#check(acts, this.cfg.dSae, "latents");
    return ops.matmul(acts, this.#w.get("W_dec")!, this.#w.get("b_dec"));
  }

  /** Runs fn's GPU ops in an arena: intermediates are freed, the result is kept. */
  #standalone(fn: () => Tensor): Promise<Tensor> {
    const arena = openArena();
    let out: Tensor | null = null;
    try {
      out = fn();
      if (out.isView) out = out.clone();
      return Promise.resolve(out);
    } catch (e) {
      return Promise.reject(e);
    } finally {
      closeArena(arena, out ? [out] : []);
      out?.keep();
    }
  }

  /**
   * Pre-activations x · W_enc + b_enc [.., d_sae].
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Tensor } from "@hooklens/hooklens";
   * import { SafetensorsFile } from "../io/safetensors.ts";
   * import { Transcoder } from "./transcoder.ts";
   *
   * const dir = "tests/reference/sae_training/transcoders/transcoder"; // d_in 16, d_sae 32, d_out 16
   * using tc = await Transcoder.load(dir);
   * using io = await SafetensorsFile.open(`${dir}/io.safetensors`); // SAELens's outputs
   * using x = Tensor.from(await io.float32("x"), [8, 16]);
   * const close = (a: ArrayLike<number>, b: ArrayLike<number>) =>
   *   Array.from(a).every((v, i) => Math.abs(v - b[i]) <= 1e-4 * (1 + Math.abs(b[i])));
   * using pre = await tc.preActivations(x);
   * assert.ok(close(await pre.toArray(), await io.float32("hidden_pre")));
   * ```
   */
  preActivations(x: Tensor): Promise<Tensor> {
    return this.#standalone(() => this.#encode(x)[0]);
  }

  /**
   * Latent activations [.., d_sae] of an input [.., d_in].
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Tensor } from "@hooklens/hooklens";
   * import { SafetensorsFile } from "../io/safetensors.ts";
   * import { Transcoder } from "./transcoder.ts";
   *
   * const dir = "tests/reference/sae_training/transcoders/transcoder"; // d_in 16, d_sae 32, d_out 16
   * using tc = await Transcoder.load(dir);
   * using io = await SafetensorsFile.open(`${dir}/io.safetensors`); // SAELens's outputs
   * using x = Tensor.from(await io.float32("x"), [8, 16]);
   * const close = (a: ArrayLike<number>, b: ArrayLike<number>) =>
   *   Array.from(a).every((v, i) => Math.abs(v - b[i]) <= 1e-4 * (1 + Math.abs(b[i])));
   * using acts = await tc.encode(x);
   * assert.ok(close(await acts.toArray(), await io.float32("encode")));
   * ```
   */
  encode(x: Tensor): Promise<Tensor> {
    return this.#standalone(() => this.#encode(x)[1]);
  }

  /**
   * Output [.., d_out] of latents [.., d_sae] (no skip term: it needs the input).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Tensor } from "@hooklens/hooklens";
   * import { SafetensorsFile } from "../io/safetensors.ts";
   * import { Transcoder } from "./transcoder.ts";
   *
   * const dir = "tests/reference/sae_training/transcoders/transcoder"; // d_in 16, d_sae 32, d_out 16
   * using tc = await Transcoder.load(dir);
   * using io = await SafetensorsFile.open(`${dir}/io.safetensors`); // SAELens's outputs
   * using x = Tensor.from(await io.float32("x"), [8, 16]);
   * const close = (a: ArrayLike<number>, b: ArrayLike<number>) =>
   *   Array.from(a).every((v, i) => Math.abs(v - b[i]) <= 1e-4 * (1 + Math.abs(b[i])));
   * using acts = await tc.encode(x);
   * using y = await tc.decode(acts);
   * assert.ok(close(await y.toArray(), await io.float32("decode_of_encode")));
   * ```
   */
  decode(acts: Tensor): Promise<Tensor> {
    return this.#standalone(() => this.#decode(acts));
  }

  /**
   * The transcoder's prediction [.., d_out] of the output hook from an input [.., d_in]
   * (with the skip term for a skip transcoder).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Tensor } from "@hooklens/hooklens";
   * import { SafetensorsFile } from "../io/safetensors.ts";
   * import { Transcoder } from "./transcoder.ts";
   *
   * const dir = "tests/reference/sae_training/transcoders/transcoder"; // d_in 16, d_sae 32, d_out 16
   * using tc = await Transcoder.load(dir);
   * using io = await SafetensorsFile.open(`${dir}/io.safetensors`); // SAELens's outputs
   * using x = Tensor.from(await io.float32("x"), [8, 16]);
   * const close = (a: ArrayLike<number>, b: ArrayLike<number>) =>
   *   Array.from(a).every((v, i) => Math.abs(v - b[i]) <= 1e-4 * (1 + Math.abs(b[i])));
   * using y = await tc.forward(x);
   * assert.ok(close(await y.toArray(), await io.float32("forward")));
   * ```
   */
  forward(x: Tensor): Promise<Tensor> {
    return this.#standalone(() => {
      const y = this.#decode(this.#encode(x)[1]);
      const skip = this.#w.get("W_skipT");
      return skip ? y.add(ops.matmul(x, skip)) : y;
    });
  }

  /**
   * The transcoder as attached to a model (inside a model call, like `SAE.run`): from the input
   * hook's activation `x` it predicts the output hook's, firing its hook points (`hook_sae_input`,
   * `hook_sae_acts_pre`, `hook_sae_acts_post`, `hook_sae_recons`, with `errorTerm` also
   * `hook_sae_error`, then `hook_sae_output`) through `hook`. With `errorTerm`, the error
   * `original` - (clean prediction) is added back, as SAELens's wrapper does; it is a constant for
   * gradients. `hooksMayChange`: whether a hook may replace a tensor (then the clean prediction is
   * recomputed without hooks).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Tensor, Transcoder } from "@hooklens/hooklens";
   *
   * using tc = await Transcoder.load("tests/reference/sae_training/transcoders/transcoder");
   * using x = Tensor.from(new Float32Array(2 * 16).fill(0.5), [2, 16]);
   * using real = Tensor.from(new Float32Array(2 * 16).fill(1), [2, 16]);
   * const noHooks = (_name: string, t: Tensor) => Promise.resolve(t);
   * // With the error term, the output is the real activation (prediction + (real - prediction)).
   * using out = await tc.run(x, real, noHooks, true, false);
   * assert.ok((await out.toArray()).every((v) => Math.abs(v - 1) < 1e-5));
   * ```
   */
  async run(
    x: Tensor,
    original: Tensor,
    hook: SaeHookRunner,
    errorTerm: boolean,
    hooksMayChange: boolean,
  ): Promise<Tensor> {
    this.#check(x, this.cfg.dIn, "input");
    this.#check(original, this.cfg.dOut, "output hook activation");
    const pred = await this.#predict(x, hook);
    if (!errorTerm) return await hook("hook_sae_output", pred);
    const clean = hooksMayChange
      ? await Tape.untaped(() => this.#predict(x, (_n, t) => Promise.resolve(t)))
      : pred;
    const error = await hook("hook_sae_error", original.sub(clean));
    const out = pred.add(error);
    Tape.record([out], [pred, null], ([g]) => [g, null]);
    return await hook("hook_sae_output", out);
  }

  async #predict(x: Tensor, hook: SaeHookRunner): Promise<Tensor> {
    const w = this.#w;
    const jump = this.cfg.architecture === "jumprelu_transcoder";
    const act = jump ? "jumprelu" : "relu";
    const aux = jump ? w.get("threshold") : undefined;
    const sin = await hook("hook_sae_input", x);
    const [pre, post] = ops.saeEncode(sin, w.get("W_enc")!, w.get("b_enc")!, act, aux);
    Tape.record([pre], [sin], ([g]) => [ops.linearBack(g!, w.get("W_enc")!)]);
    const hookedPre = await hook("hook_sae_acts_pre", pre);
    const hookedPost = hookedPre === pre ? post : ops.saeActivation(hookedPre, act, aux);
    Tape.record([hookedPost], [hookedPre], ([g]) => [ops.maskGrad(g!, hookedPost)]);
    const acts = await hook("hook_sae_acts_post", hookedPost);
    let y = ops.matmul(acts, w.get("W_dec")!, w.get("b_dec"));
    Tape.record([y], [acts], ([g]) => [ops.linearBack(g!, w.get("W_dec")!)]);
    const skipT = w.get("W_skipT");
    if (skipT) {
      const s = ops.matmul(sin, skipT);
      Tape.record([s], [sin], ([g]) => [ops.linearBack(g!, skipT)]);
      const sum = y.add(s);
      Tape.record([sum], [y, s], ([g]) => [g, g]);
      y = sum;
    }
    return await hook("hook_sae_recons", y);
  }

  /** Whether the weights were freed. */
  get disposed(): boolean {
    return this.#w.size === 0;
  }

  /** Whether the transcoder adds its error back by default (false, as SAELens). */
  readonly useErrorTerm: boolean = false;

  /** Frees the GPU weights. */
  dispose(): void {
    for (const t of this.#w.values()) t.dispose();
    this.#w.clear();
  }

  /** Same as {@link Transcoder.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
