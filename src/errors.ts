/**
 * Typed errors. Every failure a user can cause is one of these, with a message that says what was
 * wrong, where, and what to do.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FormatError, HooklensError } from "./errors.ts";
 * import { parseStrictJson } from "./io/json.ts";
 *
 * // Every error hooklens throws on purpose is a HooklensError; file errors name the file.
 * assert.throws(
 *   () => parseStrictJson("{", "bad.json"),
 *   (e) => e instanceof FormatError && e instanceof HooklensError && e.file === "bad.json",
 * );
 * ```
 * @module
 */

/** Base class of every error hooklens throws on purpose. */
export class HooklensError extends Error {
  /**
   * Makes the error; its `name` is the subclass's name.
   *
   * @param message what was wrong, where, and what to do.
   */
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** No WebGPU adapter could be found or a device could not be created. */
export class GpuUnavailableError extends HooklensError {}

/** The GPU reported an error for recorded work (a bug in hooklens, or a lost device). */
export class GpuError extends HooklensError {}

/** A request exceeds what the GPU adapter allows (buffer size, binding size). */
export class GpuLimitError extends HooklensError {}

/** A file could not be parsed: names the file and, where known, the tensor or field. */
export class FormatError extends HooklensError {
  /** The file involved. */
  readonly file: string;
  /** The tensor or field involved, if any. */
  readonly field?: string;
  /**
   * Makes the error; the message is prefixed with the file and the field.
   *
   * @param file path of the file.
   * @param message what is wrong.
   * @param field tensor name or config field.
   */
  constructor(file: string, message: string, field?: string) {
    super(`${file}${field ? ` [${field}]` : ""}: ${message}`);
    this.file = file;
    this.field = field;
  }
}

/** A safetensors file is malformed. */
export class SafetensorsError extends FormatError {}

/** A config.json or cfg.json is missing a field, has a bad value, or names an unsupported model. */
export class ConfigError extends FormatError {}

/** A checkpoint lacks tensors the model needs, has ones it does not expect, or mis-shaped ones. */
export class WeightsError extends FormatError {}

/** A hook name that does not exist on the model. */
export class HookNameError extends HooklensError {}

/** The input to a model is invalid (token out of range, too long, empty). */
export class InputError extends HooklensError {}

/** A tensor's shape or dtype does not fit the operation. */
export class ShapeError extends HooklensError {}

/** A tensor was used after `dispose()`. */
export class DisposedError extends HooklensError {}

/** An SAE does not fit the model or hook it is attached to. */
export class SaeAttachError extends HooklensError {}

/** A model call ended early through its `signal` (`AbortSignal`); the model stays usable. */
export class CallAbortedError extends HooklensError {}

/** An `.npz` archive (or an `.npy` array in it) is malformed. */
export class NpzError extends FormatError {}

/** An unknown SAE release or SAE id (`SAE.fromPretrained`), or a format hooklens does not read. */
export class PretrainedSaeError extends HooklensError {}

/** An SAE training configuration that cannot work (d_sae 0, k > d_sae, a hook the model lacks). */
export class TrainConfigError extends HooklensError {}

/**
 * An attention mask does not fit its batch: wrong shape, a value other than 0 or 1, a row with no
 * real token, or a row whose real tokens are not one contiguous run (a gap).
 */
export class AttentionMaskError extends InputError {}
