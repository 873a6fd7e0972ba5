/**
 * Where SAE training's activations come from: CPU data ({@link cpuActivationSource}) or text
 * streamed through a model in contexts, one hook read, copied on the GPU into the activation
 * store ({@link modelActivationSource}).
 *
 * @example
 * ```ts
 * import { HookedTransformer } from "../../model/model.ts";
 * import { modelActivationSource } from "./activations.ts";
 * const model = await HookedTransformer.fromPretrained("models/demo-pycode/hf");
 * const src = modelActivationSource(model, "blocks.2.hook_resid_pre", {
 *   text: "def f(x):\n  return x",
 *   contextSize: 16,
 *   excludeBos: true,
 *   modelBatch: 4,
 * });
 * ```
 * @module
 */
import { TrainConfigError } from "../../errors.ts";
import { encoder, writeBuffer } from "../../gpu/runtime.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { HookedTransformer } from "../../model/model.ts";

/** Where training activations come from: `fill` writes `rows` rows [rows, dIn] into `store`. */
export interface ActivationSource {
  /** Input width. */
  readonly dIn: number;
  /** Writes the next `rows` activations into the GPU buffer. */
  fill(store: GPUBuffer, rows: number): Promise<void>;
}

/**
 * An activation source from CPU data (synthetic or precomputed): `next(rows)` returns the next
 * rows, [rows, dIn] flat.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initGpu } from "@hooklens/hooklens";
 * import { cpuActivationSource } from "./trainer.ts";
 *
 * await initGpu();
 * const src = cpuActivationSource(32, (rows) => new Float32Array(rows * 32).map(Math.random));
 * assert.equal(src.dIn, 32);
 * ```
 */
export function cpuActivationSource(
  dIn: number,
  next: (rows: number) => Float32Array,
): ActivationSource {
  return {
    dIn,
    fill(store: GPUBuffer, rows: number): Promise<void> {
      writeBuffer(store, next(rows));
      return Promise.resolve();
    },
  };
}

/** The layer a hook fires in ("blocks.3.x" -> 3), to stop the forward pass after it. */
function hookLayer(name: string): number | null {
  const m = /^blocks\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/** Token contexts from text: [BOS] + the next contextSize - 1 tokens, cycling at the end. */
function contextStream(
  model: HookedTransformer,
  text: string | string[] | AsyncIterable<string>,
  contextSize: number,
): () => Promise<number[]> {
  const bos = model.cfg.defaultPrependBos ? model.cfg.bosTokenId : null;
  const body = bos === null ? contextSize : contextSize - 1;
  const seen: number[] = [];
  let pos = 0;
  let iter: AsyncIterator<string> | null = null;
  let ended = false;
  if (typeof text === "string" || Array.isArray(text)) {
    for (const t of typeof text === "string" ? [text] : text) {
      seen.push(...model.toTokenIds(t, { prependBos: false })[0]);
    }
    ended = true;
  } else {
    iter = text[Symbol.asyncIterator]();
  }
  return async () => {
    while (!ended && seen.length - pos < body) {
      const n = await iter!.next();
      if (n.done) ended = true;
      else seen.push(...model.toTokenIds(n.value, { prependBos: false })[0]);
    }
    if (seen.length === 0) {
      throw new TrainConfigError("SAE training: the text gives no tokens; pass some text.");
    }
    const out: number[] = [];
    while (out.length < body) {
      if (pos >= seen.length) pos = 0;
      out.push(seen[pos++]);
    }
    return bos === null ? out : [bos, ...out];
  };
}

/**
 * An activation source that streams text through the model: contexts of `contextSize` tokens,
 * `modelBatch` at a time, reading `hookName` (the forward pass stops after its block), the BOS
 * position's row left out when `excludeBos`. Activations go from the model's cache into the
 * store on the GPU.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedTransformer } from "@hooklens/hooklens";
 * import { modelActivationSource } from "./trainer.ts";
 *
 * using model = await HookedTransformer.fromPretrained("models/demo-pycode/hf");
 * const src = modelActivationSource(model, "blocks.2.hook_resid_pre", {
 *   text: "def f(x):\n  return x",
 *   contextSize: 8,
 *   excludeBos: true,
 *   modelBatch: 1,
 * });
 * assert.equal(src.dIn, 128); // the model's d_model
 * ```
 */
export function modelActivationSource(
  model: HookedTransformer,
  hookName: string,
  o: {
    text: string | string[] | AsyncIterable<string>;
    contextSize: number;
    excludeBos: boolean;
    modelBatch: number;
  },
): ActivationSource & { nextContext: () => Promise<number[]> } {
  const dIn = hookWidth(model, hookName);
  const next = contextStream(model, o.text, o.contextSize);
  const layer = hookLayer(hookName);
  const skip = o.excludeBos && model.cfg.defaultPrependBos && model.cfg.bosTokenId !== null ? 1 : 0;
  const perCtx = o.contextSize - skip;
  return {
    dIn,
    nextContext: next,
    async fill(store: GPUBuffer, rows: number): Promise<void> {
      let filled = 0;
      while (filled < rows) {
        const batch: number[][] = [];
        const want = Math.min(o.modelBatch, Math.ceil((rows - filled) / perCtx));
        for (let b = 0; b < want; b++) batch.push(await next());
        const [out, cache] = await model.runWithCache(batch, {
          namesFilter: hookName,
          ...(layer !== null && layer + 1 < model.cfg.nLayers ? { stopAtLayer: layer + 1 } : {}),
        });
        try {
          const act = cache.get(hookName);
          const enc = encoder();
          for (let b = 0; b < batch.length && filled < rows; b++) {
            const n = Math.min(perCtx, rows - filled);
            enc.copyBufferToBuffer(
              act.buffer,
              (b * o.contextSize + skip) * dIn * 4,
              store,
              filled * dIn * 4,
              n * dIn * 4,
            );
            filled += n;
          }
        } finally {
          (out as Tensor).dispose();
          cache.dispose();
        }
      }
    },
  };
}

/**
 * The width of a hook's activations (d_model or d_mlp); a TrainConfigError naming the hook when
 * the model has no such hook or SAE training does not support it.
 *
 * @example
 * A fragment: `model` stands for a loaded HookedTransformer.
 * ```
 * hookWidth(model, "blocks.0.hook_resid_pre"); // model.cfg.dModel
 * ```
 */
export function hookWidth(model: HookedTransformer, hookName: string): number {
  if (!model.hasHook(hookName)) {
    throw new TrainConfigError(
      `SAE training: the model has no hook "${hookName}"; pick one of model.hookNames() ` +
        `(e.g. "blocks.0.hook_resid_pre").`,
    );
  }
  const c = model.cfg;
  if (/hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)$/.test(hookName)) return c.dModel;
  if (/mlp\.hook_(pre|post)$/.test(hookName)) return c.dMlp;
  throw new TrainConfigError(
    `SAE training: hook "${hookName}" is not a residual-stream, attention-output or MLP hook; ` +
      "train on blocks.N.hook_resid_pre/mid/post, hook_attn_out, hook_mlp_out or mlp.hook_pre/post.",
  );
}
