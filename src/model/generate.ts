/**
 * Generation (TransformerLens's `generate`): greedy or sampled decoding on the GPU, with a KV
 * cache by default, checking for EOS every few steps without waiting for the GPU.
 *
 * @example
 * ```ts
 * import { generateTokens } from "./generate.ts";
 * const rows = await generateTokens(host, [[1, 2, 3]], { maxNewTokens: 4, doSample: false });
 * ```
 * @module
 */
import { InputError } from "../errors.ts";
import * as ops from "../gpu/ops.ts";
import { copyBuffer, flush } from "../gpu/runtime.ts";
import { closeArena, openArena, Tensor } from "../gpu/tensor.ts";
import type { HfTokenizer } from "../io/tokenizer.ts";
import type { KvState } from "./components/index.ts";
import type { HookedTransformerConfig } from "./config.ts";
import type { GenerateOptions, Input } from "./options.ts";
import { seededUniform } from "./random.ts";
import { encodeTexts, tokensTensor } from "./tokens.ts";

/** What generation needs of the model: its config, tokenizer and one forward step. */
export interface GenerateHost {
  /** The model's configuration. */
  readonly cfg: HookedTransformerConfig;
  /** Its tokenizer, if any. */
  readonly tokenizer: HfTokenizer | null;
  /** Logits [B, P, V] of a step's tokens [B, P] (with the KV cache, when given). */
  step(tokens: Tensor, kv: KvState | null): Promise<Tensor>;
}

/** Steps between the EOS checks of `generate` (each waits for the GPU to finish its queue). */
const EOS_CHECK_EVERY = 4;
/** How long `generate` lets an EOS check's readback (~11 ms in Deno) run before reading it. */
const EOS_CHECK_LAG_MS = 12;

/**
 * Where generation ends once every row has made an EOS token among its generated positions
 * [from, to): just past the latest row's first EOS (TransformerLens stops at that step). Null
 * while some row has none.
 */
function eosEnd(
  ids: Int32Array | Float32Array,
  B: number,
  total: number,
  from: number,
  to: number,
  eos: number,
): number | null {
  let end = from;
  for (let b = 0; b < B; b++) {
    let i = from;
    while (i < to && ids[b * total + i] !== eos) i++;
    if (i === to) return null;
    end = Math.max(end, i + 1);
  }
  return end;
}

/**
 * Generates tokens for `input` (see `HookedTransformer.generate`): text for text input, token
 * ids otherwise. The caller holds the model lock.
 *
 * @example
 * ```ts
 * const text = await generateTokens(host, "def add(a, b):", { maxNewTokens: 8 });
 * ```
 */
export async function generateTokens(
  host: GenerateHost,
  input: Input,
  o: GenerateOptions,
): Promise<string | string[] | number[][]> {
  const cfg = host.cfg;
  const maxNew = o.maxNewTokens ?? 10;
  if (!Number.isInteger(maxNew) || maxNew < 0) {
    throw new InputError(`maxNewTokens ${maxNew} is not a non-negative integer.`);
  }
  const isText = typeof input === "string" ||
    (Array.isArray(input) && typeof input[0] === "string");
  const prompt = isText
    ? encodeTexts(cfg, host.tokenizer, input as string | string[], { prependBos: o.prependBos })
    : null;
  const arena = openArena();
  try {
    const tokens = tokensTensor(cfg, host.tokenizer, prompt ?? input);
    const [B, P0] = tokens.shape;
    const total = P0 + maxNew;
    if (total > cfg.nCtx) {
      throw new InputError(
        `Prompt of ${P0} tokens + ${maxNew} new ones exceeds the context n_ctx = ${cfg.nCtx}.`,
      );
    }
    const eos = host.tokenizer?.eosTokenId ?? cfg.eosTokenId;
    const stopAtEos = (o.stopAtEos ?? true) && eos !== null;
    const seq = Tensor.empty([B, total], "int32");
    for (let b = 0; b < B; b++) {
      copyBuffer(tokens.buffer, seq.buffer, P0 * 4, b * P0 * 4, b * total * 4);
    }
    const { nLayers, dHead: E } = cfg;
    const Hkv = cfg.nKeyValueHeads ?? cfg.nHeads;
    const kv: KvState | null = (o.useKvCache ?? true)
      ? {
        k: Array.from({ length: nLayers }, () => Tensor.empty([B, total, Hkv, E])),
        v: Array.from({ length: nLayers }, () => Tensor.empty([B, total, Hkv, E])),
        offset: 0,
        cap: total,
      }
      : null;
    const rand = seededUniform(o.seed ?? Math.floor(Math.random() * 2 ** 31));
    const greedy = !(o.doSample ?? true);
    let done = P0;
    // Checking for EOS reads the token ids back, and a readback costs ~11 ms in Deno whatever
    // its size (bench/RESULTS.md). So a check starts every few steps without waiting: the ids
    // of positions < check.done are looked at once EOS_CHECK_LAG_MS have passed, steps made in
    // the meantime. When every row had ended by then, those steps are dropped: the output ends
    // where TransformerLens's (which checks every step) does, at the latest row's EOS.
    let check: { ids: Promise<Float32Array | Int32Array>; done: number; at: number } | null = null;
    let ended: { ids: Float32Array | Int32Array; end: number } | null = null;
    for (let step = 0; step < maxNew; step++) {
      const pos = P0 + step;
      const stepArena = openArena();
      try {
        let stepInput: Tensor;
        if (step === 0) stepInput = tokens;
        else if (kv) {
          stepInput = Tensor.empty([B, 1], "int32");
          for (let b = 0; b < B; b++) {
            copyBuffer(seq.buffer, stepInput.buffer, 4, (b * total + pos - 1) * 4, b * 4);
          }
        } else {
          stepInput = Tensor.empty([B, pos], "int32");
          for (let b = 0; b < B; b++) {
            copyBuffer(seq.buffer, stepInput.buffer, pos * 4, b * total * 4, b * pos * 4);
          }
        }
        if (kv) kv.offset = step === 0 ? 0 : pos - 1;
        const logits = await host.step(stepInput, kv);
        ops.sampleNext(logits, seq, pos, {
          greedy,
          topK: o.topK,
          topP: o.topP,
          temperature: o.temperature,
          // Greedy decoding reads no random number: a constant keeps the step's uniform block
          // (and its bind group) the same from call to call.
          u: greedy ? 0 : rand(),
        });
      } finally {
        closeArena(stepArena);
      }
      flush();
      done = pos + 1;
      if (!stopAtEos || step === maxNew - 1) continue;
      if (check && performance.now() - check.at >= EOS_CHECK_LAG_MS) {
        const ids = await check.ids;
        const end = eosEnd(ids, B, total, P0, check.done, eos!);
        check = null;
        if (end !== null) {
          ended = { ids, end };
          break;
        }
      }
      if (!check && (step + 1) % EOS_CHECK_EVERY === 0) {
        check = { ids: seq.toArray(), done, at: performance.now() };
        // Left unread when generation ends first: never an unhandled rejection.
        check.ids.catch(() => {});
      }
    }
    const ids = ended?.ids ?? await seq.toArray();
    const end = ended?.end ?? (stopAtEos ? eosEnd(ids, B, total, P0, done, eos!) : null) ?? done;
    const rows = Array.from(
      { length: B },
      (_, b) => Array.from(ids.subarray(b * total, b * total + end)),
    );
    if (stopAtEos) {
      for (const r of rows) {
        const i = r.indexOf(eos!, P0);
        if (i >= 0) r.fill(eos!, i);
      }
    }
    if (!isText) return rows;
    // As TransformerLens: the text output leaves out the BOS token the prompt was given.
    const dropBos = o.prependBos ?? cfg.defaultPrependBos;
    const texts = rows.map((r) => host.tokenizer!.decode(dropBos ? r.slice(1) : r));
    return typeof input === "string" ? texts[0] : texts;
  } finally {
    closeArena(arena);
  }
}
