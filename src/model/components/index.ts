/**
 * The components of a HookedTransformer, in TransformerLens's spirit: embed, norm, attention, MLP
 * (plain and gated), block, unembed. Each owns its hook names (in firing order), its forward and
 * its backward rule (recorded on the tape as it runs), and sees only a per-call
 * {@link RunContext}: the hook function, whether a hook may replace an activation, the KV cache,
 * whether the tape records. Each hook point fires in exactly one place.
 *
 * Dimension legend (shapes in comments and docs):
 * - B: batch
 * - P: positions of this call (query positions)
 * - Pk: key positions (P, or the KV cache's offset + P during generation)
 * - E: d_model (the residual stream)
 * - H: attention heads; Hkv: key/value heads (H / Hkv queries share a K/V head)
 * - D: d_head
 * - F: d_mlp
 * - V: d_vocab (out)
 *
 * Inside a kernel call the `ops` parameters keep their own names (there `E` is d_head).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "../../io/json.ts";
 * import { configFromHf } from "../config.ts";
 * import { hookNamesFor } from "./index.ts";
 *
 * const path = "tests/reference/rmsgqa_tiny/hf/config.json";
 * const cfg = configFromHf(await readJsonFile(path), path);
 * assert.ok(hookNamesFor(cfg).includes("blocks.0.attn.hook_rot_q")); // a rotary model
 * ```
 * @module
 */
export * from "./context.ts";
export * from "./embed.ts";
export * from "./norm.ts";
export * from "./attention.ts";
export * from "./mlp.ts";
export * from "./block.ts";
export * from "./unembed.ts";
export * from "./transformer.ts";
