/**
 * Generation (TransformerLens's `generate`): greedy or sampled decoding on the GPU, with a KV
 * cache by default, checking for EOS every few steps without waiting for the GPU.
 *
 * @example Not run as a doc test: the host is the model (model.ts); use `model.generate`
 * ```
 * import { generateTokens } from "./generate.ts";
 * const rows = await generateTokens(host, [[1, 2, 3]], { maxNewTokens: 4, doSample: false });
 * ```
 * @module
 */
import { AttentionMaskError, InputError } from "../errors.ts";
import * as ops from "../gpu/ops.ts";
import { copyBuffer, flush } from "../gpu/runtime.ts";
import { closeArena, openArena, Tensor } from "../gpu/tensor.ts";
import type { HfTokenizer } from "../io/tokenizer.ts";
import type { KvState } from "./components/index.ts";
import type { HookedTransformerConfig } from "./config.ts";
import type { GenerateOptions, Input } from "./options.ts";
import { seededUniform } from "./random.ts";
import {
  checkMask,
  isFull,
  maskRows,
  type Padding,
  paddingOf,
  type PadState,
  padState,
} from "./padding.ts";
import { encodeBatch, tokensTensor } from "./tokens.ts";

/** What generation needs of the model: its config, tokenizer and one forward step. */
export interface GenerateHost {
  /** The model's configuration. */
  readonly cfg: HookedTransformerConfig;
  /** Its tokenizer, if any. */
  readonly tokenizer: HfTokenizer | null;
  /** Logits [B, P, V] of a step's tokens [B, P] (with the KV cache and padding, when given). */
  step(tokens: Tensor, kv: KvState | null, pad: PadState | null): Promise<Tensor>;
}

/** Steps between the EOS checks of `generate` (each waits for the GPU to finish its queue). */
const EOS_CHECK_EVERY = 4;
/** How long `generate` lets an EOS check's readback (~11 ms in Deno) run before reading it. */
const EOS_CHECK_LAG_MS = 12;

/**
 * Where generation ends once every row has made a stop token (EOS or one of `stopTokens`) among
 * its generated positions [from, to): just past the latest row's first one (TransformerLens stops
 * at that step). Null while some row has none.
 */
function eosEnd(
  ids: Int32Array | Float32Array,
  B: number,
  total: number,
  from: number,
  to: number,
  stop: ReadonlySet<number>,
): number | null {
  let end = from;
  for (let b = 0; b < B; b++) {
    let i = from;
    while (i < to && !stop.has(ids[b * total + i])) i++;
    if (i === to) return null;
    end = Math.max(end, i + 1);
  }
  return end;
}

/**
 * The prompt as left-padded rows (each row continues from its own last token) and its padding,
 * null when every row is real end to end. Token rows with a right-padded mask are re-padded on the
 * left; a Tensor's must be left-padded already (moving it would need a readback).
 */
function promptOf(
  host: GenerateHost,
  input: Input,
  o: GenerateOptions & { attentionMask?: number[][] },
): { rows: number[][] | Tensor; padding: Padding | null } {
  const cfg = host.cfg;
  const isText = typeof input === "string" ||
    (Array.isArray(input) && typeof input[0] === "string");
  if (isText) {
    const { rows, padding } = encodeBatch(cfg, host.tokenizer, input as string | string[], {
      prependBos: o.prependBos,
      paddingSide: "left",
    });
    return { rows, padding: isFull(padding) ? null : padding };
  }
  if (o.attentionMask === undefined) return { rows: input as number[][] | Tensor, padding: null };
  const tokens = tokensTensor(cfg, host.tokenizer, input);
  const [B, P] = tokens.shape;
  const padding = checkMask(o.attentionMask, B, P);
  if (isFull(padding)) return { rows: tokens, padding: null };
  if (padding.ends.every((e) => e === P)) return { rows: tokens, padding };
  if (input instanceof Tensor) {
    throw new AttentionMaskError(
      "generate on a Tensor needs a left-padded attentionMask (each row's real tokens end at the " +
        'last position): pad on the left (toTokensWithMask(texts, { paddingSide: "left" })), or ' +
        "pass the token ids as arrays.",
    );
  }
  const given = Array.isArray(input[0]) ? input as number[][] : [input as number[]];
  const real = given.map((r, b) => r.slice(padding.starts[b], padding.ends[b]));
  const left = paddingOf(real.map((r) => r.length), P, "left");
  const fill = host.tokenizer?.padTokenId ?? 0;
  return {
    rows: real.map((r) => [...new Array(P - r.length).fill(fill), ...r]),
    padding: left,
  };
}

/**
 * Generates tokens for `input` (see `HookedTransformer.generate`): text for text input, token
 * ids otherwise. Prompts of different lengths are left-padded; each row keeps its own positions
 * and stops at its own stop token. The caller holds the model lock.
 *
 * @example Not run as a doc test: `HookedTransformer.generate` calls it as its host
 * ```
 * const text = await generateTokens(host, "def add(a, b):", { maxNewTokens: 8 });
 * ```
 */
export async function generateTokens(
  host: GenerateHost,
  input: Input,
  o: GenerateOptions,
): Promise<string | string[] | number[][]> {
  o = await maskRows(o);
  const cfg = host.cfg;
  const maxNew = o.maxNewTokens ?? 10;
  if (!Number.isInteger(maxNew) || maxNew < 0) {
    throw new InputError(`maxNewTokens ${maxNew} is not a non-negative integer.`);
  }
  const isText = typeof input === "string" ||
    (Array.isArray(input) && typeof input[0] === "string");
  const stopTokens = o.stopTokens ?? [];
  for (const t of stopTokens) {
    if (!Number.isInteger(t) || t < 0 || t >= cfg.dVocab) {
      throw new InputError(
        `stopTokens: ${t} is not a token id of this model (0..${cfg.dVocab - 1}).`,
      );
    }
  }
  const arena = openArena();
  try {
    const prompt = promptOf(host, input, o as GenerateOptions & { attentionMask?: number[][] });
    const padding = prompt.padding;
    const tokens = tokensTensor(cfg, host.tokenizer, prompt.rows);
    const [B, P0] = tokens.shape;
    const total = P0 + maxNew;
    if (total > cfg.nCtx) {
      throw new InputError(
        `Prompt of ${P0} tokens + ${maxNew} new ones exceeds the context n_ctx = ${cfg.nCtx}.`,
      );
    }
    const eos = host.tokenizer?.eosTokenId ?? cfg.eosTokenId;
    const stop = new Set(stopTokens);
    if ((o.stopAtEos ?? true) && eos !== null) stop.add(eos);
    const stopping = stop.size > 0;
    // Finished rows are padded with EOS (TransformerLens's), else the first stop token.
    const fill = eos ?? stopTokens[0];
    // The key mask covers every position generation may reach; generated tokens are real.
    const pad = padding ? padState(padding, total) : null;
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
        const logits = await host.step(stepInput, kv, pad);
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
      if (!stopping || step === maxNew - 1) continue;
      if (check && performance.now() - check.at >= EOS_CHECK_LAG_MS) {
        const ids = await check.ids;
        const end = eosEnd(ids, B, total, P0, check.done, stop);
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
    const end = ended?.end ?? (stopping ? eosEnd(ids, B, total, P0, done, stop) : null) ?? done;
    // Each row without its left padding.
    const rows = Array.from(
      { length: B },
      (_, b) => Array.from(ids.subarray(b * total + (padding?.starts[b] ?? 0), b * total + end)),
    );
    // Where each row's own output ends (just past its first stop token).
    const ends = rows.map((r, b) => {
      const from = P0 - (padding?.starts[b] ?? 0);
      const i = stopping ? r.findIndex((t, j) => j >= from && stop.has(t)) : -1;
      if (i >= 0) r.fill(fill!, i + 1);
      return i >= 0 ? i + 1 : r.length;
    });
    if (!isText) return rows;
    // As TransformerLens: the text output leaves out the BOS token the prompt was given; and
    // each row's text ends at its own stop token.
    const dropBos = o.prependBos ?? cfg.defaultPrependBos;
    const texts = rows.map((r, b) => host.tokenizer!.decode(r.slice(dropBos ? 1 : 0, ends[b])));
    return typeof input === "string" ? texts[0] : texts;
  } finally {
    closeArena(arena);
  }
}
