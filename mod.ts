/**
 * hooklens: TransformerLens's HookedTransformer and SAELens's HookedSAETransformer for Deno, with
 * the arithmetic in WGSL compute shaders on WebGPU.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HookedSAETransformer, provenanceOf, SAE } from "@hooklens/hooklens";
 *
 * using model = await HookedSAETransformer.fromPretrained("models/demo-pycode/hf");
 * using sae = await SAE.load("models/demo-pycode/sae");
 * {
 *   using withSae = model.withSaes([sae]); // attached until the block ends, also on a throw
 *   using logits = await withSae.forward("def f(x):");
 *   assert.deepEqual(logits.shape, [1, 6, 50257]); // [batch, pos, d_vocab]
 *   assert.equal(provenanceOf(logits)?.saes[0].hookName, "blocks.2.hook_resid_pre");
 * }
 * assert.equal(model.attachedSaes.size, 0);
 * ```
 * @module
 */
export { Tensor } from "./src/gpu/tensor.ts";
export type { DType } from "./src/gpu/tensor.ts";
export { gpuInfo, initGpu } from "./src/gpu/info.ts";
export type { GpuInfo } from "./src/gpu/info.ts";
export type { RuntimeStats } from "./src/gpu/runtime.ts";
export * from "./src/errors.ts";
export { HookedTransformer, ModelView } from "./src/model/model.ts";
export { provenanceOf } from "./src/model/provenance.ts";
export type { Provenance, SaeAttachment, SaeInfo, SaeProvenance } from "./src/model/provenance.ts";
export type {
  ForwardOptions,
  ForwardOutput,
  GenerateOptions,
  Input,
  LoadOptions,
  LogitsAndLoss,
  RunWithCacheOptions,
  RunWithHooksOptions,
  TokensWithMask,
} from "./src/model/model.ts";
export { gatherPositions } from "./src/gpu/kernels/padding.ts";
export { lastTokenIndices } from "./src/model/padding.ts";
export type { AttentionMask, PaddingSide } from "./src/model/padding.ts";
export type { HookedTransformerConfig, NormalizationType } from "./src/model/config.ts";
export type { ToTokensOptions } from "./src/model/options.ts";
export type { ProcessingOptions } from "./src/model/processing.ts";
export type { HfTokenizer } from "./src/io/tokenizer.ts";
export type { Json } from "./src/io/json.ts";
export type { RopeScaling } from "./src/model/rope.ts";
export { SUPPORTED_ARCHITECTURES } from "./src/model/config.ts";
export { ActivationCache, actName } from "./src/model/cache.ts";
export type { CacheModel, LabeledStack, StackOptions } from "./src/model/cache.ts";
export type {
  AddHookOptions,
  HookEntry,
  HookFn,
  HookPoint,
  HookRegistry,
  HookSpec,
} from "./src/model/hooks.ts";
export { SAE } from "./src/sae/sae.ts";
export type { SaeHookRunner, SaeLoadOptions } from "./src/sae/sae.ts";
export type { NormalizeActivations, SaeArchitecture, SaeConfig } from "./src/sae/config.ts";
export { Transcoder, transcoderConfigFromJson } from "./src/sae/transcoder.ts";
export type {
  TranscoderArchitecture,
  TranscoderConfig,
  TranscoderLoadOptions,
} from "./src/sae/transcoder.ts";
export { pretrainedSaeReleases, resolvePretrainedSae } from "./src/sae/registry.ts";
export type { PretrainedSaeEntry, PretrainedSaeFormat } from "./src/sae/registry.ts";
export { HookedSAETransformer } from "./src/sae/hooked_sae_transformer.ts";
export type { AddSaeOptions, SaeScope, WithSaesOptions } from "./src/sae/hooked_sae_transformer.ts";
export { nextTokens, topIndices, topLatentsPerToken } from "./src/sae/features.ts";
export type {
  LatentActivation,
  NextToken,
  PaddingOptions,
  TokenLatents,
} from "./src/sae/features.ts";
export type { BackwardMetric } from "./src/model/model.ts";
export {
  cpuActivationSource,
  modelActivationSource,
  saveTrainedSae,
  trainSae,
  trainSaeOnActivations,
} from "./src/sae/train/trainer.ts";
export type {
  ActivationSource,
  CeEval,
  TrainProgress,
  TrainResult,
  TrainSaeConfig,
  TrainSaeOptions,
} from "./src/sae/train/trainer.ts";
export type { StepMetrics, TrainArchitecture } from "./src/sae/train/kernels.ts";
