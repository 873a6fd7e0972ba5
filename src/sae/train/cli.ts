/**
 * `hooklens train`: trains an SAE on a model's activations with a progress line (steps, tokens/s,
 * the metrics) and writes it in SAELens's layout.
 *
 * @example Not run as a doc test: it trains an SAE (minutes on lavapipe) and writes out/sae
 * ```
 * import { trainCommand } from "./cli.ts";
 * await trainCommand(["--hook", "blocks.2.hook_resid_pre", "--d-sae", "512", "--arch", "topk", "--k", "16", "--out", "out/sae"]);
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { TrainConfigError } from "../../errors.ts";
import { HookedTransformer } from "../../model/model.ts";
import { saveTrainedSae } from "./checkpoint.ts";
import type { TrainProgress } from "./config.ts";
import type { TrainArchitecture } from "./step.ts";
import { trainSae } from "./trainer.ts";

/** The `train` command's help text. */
export const TRAIN_HELP = `Usage: deno task cli -- train --hook NAME --d-sae N --out DIR [options]

Trains an SAE (SAELens's trainer) on the model's activations at --hook and saves it in SAELens's
layout (cfg.json, sae_weights.safetensors, sparsity.safetensors).

  --model DIR        model directory (default: the built-in demo model)
  --corpus FILE      training text (default: models/demo-pycode/corpus.txt)
  --arch A           standard (default), topk, jumprelu, gated
  --k N              top-k: latents per token
  --steps N          training steps (default 1000)
  --batch N          activations per step (default 1024)
  --lr X             learning rate (default 3e-4); --lr-warm-up N, --lr-decay N
  --l1 X             standard/gated L1 coefficient (default 1); --l1-warm-up N
  --l0 X             JumpReLU L0 coefficient (default 1)
  --context N        tokens per context (default 128)
  --store-rows N     activations the shuffled GPU store holds (default 8 batches)
  --eval-contexts N  contexts of the CE-loss evaluation batch (default 4)
  --normalize        scale activations to mean norm sqrt(d_in) while training (folded on save)
  --b-dec-init M     zeros (default), mean, geometric_median
  --log-every N      progress every N steps (default 50)
  --checkpoint-every N   a checkpoint every N steps into --checkpoint-dir DIR/<step>/
  --resume DIR       continue from a checkpoint directory (same architecture and sizes)
  --seed N           initial weights and shuffling
  --json             one JSON line per progress report, then the result
`;

function bar(p: TrainProgress): string {
  const w = 24, done = Math.round((p.step / p.totalSteps) * w);
  const m = p.metrics;
  const ev = p.eval ? `  CE rec ${p.eval.recovered.toFixed(3)}` : "";
  return `[${"#".repeat(done)}${".".repeat(w - done)}] ${p.step}/${p.totalSteps}  ` +
    `${Math.round(p.tokensPerSecond)} tok/s  mse ${m.mseLoss.toFixed(4)}  L0 ${m.l0.toFixed(1)}  ` +
    `EV ${m.explainedVariance.toFixed(3)}  dead ${m.deadLatents}${ev}`;
}

/**
 * Runs `train` with its arguments (after the command name).
 *
 * @example Not run as a doc test: it trains an SAE and writes /tmp/sae (tests/train_cli_test.ts runs the command)
 * ```
 * import { trainCommand } from "./cli.ts";
 * await trainCommand(["--hook", "blocks.0.hook_resid_pre", "--d-sae", "64", "--out", "/tmp/sae", "--steps", "10"]);
 * ```
 */
export async function trainCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      corpus: { type: "string" },
      hook: { type: "string" },
      "d-sae": { type: "string" },
      out: { type: "string" },
      arch: { type: "string" },
      k: { type: "string" },
      steps: { type: "string" },
      batch: { type: "string" },
      lr: { type: "string" },
      "lr-warm-up": { type: "string" },
      "lr-decay": { type: "string" },
      l1: { type: "string" },
      "l1-warm-up": { type: "string" },
      l0: { type: "string" },
      context: { type: "string" },
      "store-rows": { type: "string" },
      "eval-contexts": { type: "string" },
      normalize: { type: "boolean" },
      "b-dec-init": { type: "string" },
      "log-every": { type: "string" },
      "checkpoint-every": { type: "string" },
      "checkpoint-dir": { type: "string" },
      resume: { type: "string" },
      seed: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(TRAIN_HELP);
    return;
  }
  const need = (name: "hook" | "d-sae" | "out"): string => {
    const v = values[name];
    if (v === undefined) throw new TrainConfigError(`train needs --${name}; see train --help.`);
    return v;
  };
  const num = (name: keyof typeof values): number | undefined => {
    const v = values[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (typeof v !== "string" || !Number.isFinite(n)) {
      throw new TrainConfigError(`--${name} must be a number, got "${v}".`);
    }
    return n;
  };
  const bInit = values["b-dec-init"];
  if (bInit !== undefined && !["zeros", "mean", "geometric_median"].includes(bInit)) {
    throw new TrainConfigError(
      `--b-dec-init must be zeros, mean or geometric_median, got "${bInit}".`,
    );
  }
  const hookName = need("hook"), out = need("out");
  const dSae = Number(need("d-sae"));
  const model = await HookedTransformer.fromPretrained(
    values.model ?? new URL("../../../models/demo-pycode/hf", import.meta.url).pathname,
  );
  try {
    const text = values.corpus ? await Deno.readTextFile(values.corpus) : undefined;
    const json = Boolean(values.json);
    const res = await trainSae(model, {
      hookName,
      dSae,
      architecture: (values.arch ?? "standard") as TrainArchitecture,
      k: num("k"),
      totalSteps: num("steps"),
      batchSize: num("batch"),
      lr: num("lr"),
      lrWarmUpSteps: num("lr-warm-up"),
      lrDecaySteps: num("lr-decay"),
      l1Coefficient: num("l1"),
      l1WarmUpSteps: num("l1-warm-up"),
      l0Coefficient: num("l0"),
      contextSize: num("context"),
      storeRows: num("store-rows"),
      evalContexts: num("eval-contexts"),
      normalizeActivations: values.normalize ? "expected_average_only_in" : "none",
      bDecInit: bInit as "zeros" | "mean" | "geometric_median" | undefined,
      logEvery: num("log-every"),
      checkpointEvery: num("checkpoint-every"),
      checkpointDir: values["checkpoint-dir"],
      resumeFrom: values.resume,
      seed: num("seed"),
      text,
    }, {
      onProgress: (p) => {
        if (json) console.log(JSON.stringify(p));
        else Deno.stderr.writeSync(new TextEncoder().encode(`\r${bar(p)}`));
      },
    });
    if (!json) Deno.stderr.writeSync(new TextEncoder().encode("\n"));
    await saveTrainedSae(out, res);
    const last = res.metrics.at(-1)!;
    if (json) {
      console.log(
        JSON.stringify({
          out,
          metrics: last,
          latents: res.latents,
          eval: res.eval,
          tokens: res.tokens,
        }),
      );
    } else {
      const ce = res.eval;
      console.log(
        `saved ${out}: explained variance ${last.explainedVariance.toFixed(3)}, ` +
          `L0 ${last.l0.toFixed(1)}, dead ${(res.latents.deadFraction * 100).toFixed(1)}%, ` +
          `dense ${(res.latents.denseFraction * 100).toFixed(1)}%` +
          (ce
            ? `, CE loss ${ce.clean.toFixed(3)} clean / ${ce.withSae.toFixed(3)} with SAE / ` +
              `${ce.zeroAblated.toFixed(3)} zero-ablated (recovered ${ce.recovered.toFixed(3)})`
            : ""),
      );
    }
    res.sae.dispose();
  } finally {
    model.dispose();
  }
}
