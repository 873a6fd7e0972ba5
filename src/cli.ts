/**
 * The hooklens command line: `deno task cli -- <command>`; `deno task demo` runs `demo`.
 *
 * @example
 * ```sh
 * deno task cli -- features --text "def f(x):" --json
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { gpuInfo, initGpu } from "./gpu/info.ts";
import { HooklensError } from "./errors.ts";
import type { Tensor } from "./gpu/tensor.ts";
import { HookedSAETransformer } from "./sae/hooked_sae_transformer.ts";
import { SAE } from "./sae/sae.ts";
import { nextTokens, topLatentsPerToken } from "./sae/features.ts";

const ROOT = new URL("../", import.meta.url);
/** The built-in demo model and SAE (shipped in the repository). */
export const DEMO_MODEL: string = new URL("models/demo-pycode/hf", ROOT).pathname;
/** The built-in demo SAE. */
export const DEMO_SAE: string = new URL("models/demo-pycode/sae", ROOT).pathname;
/** The demo's corpus of Python snippets. */
export const DEMO_CORPUS: string = new URL("models/demo-pycode/corpus.txt", ROOT).pathname;

/**
 * Texts of a corpus file: separated by lines "# ----".
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEMO_CORPUS, loadCorpus } from "./cli.ts";
 *
 * const texts = await loadCorpus(DEMO_CORPUS); // snippets separated by "# ----" lines
 * assert.ok(texts.length > 1 && texts.every((t) => t.trim().length > 0));
 * ```
 */
export async function loadCorpus(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(path);
  return text.split(/\n# ----\n/).map((t) => t.replace(/\n+$/, "")).filter((t) => t.trim());
}

/**
 * Loads a model (default: the demo model, named as its SAE's metadata names it) and an SAE.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadModelAndSae } from "./cli.ts";
 *
 * const { model, sae } = await loadModelAndSae(undefined, undefined); // the demo model and SAE
 * using _model = model;
 * using _sae = sae;
 * assert.equal(sae.cfg.hookName, "blocks.2.hook_resid_pre");
 * ```
 */
export async function loadModelAndSae(
  modelPath?: string,
  saePath?: string,
): Promise<{ model: HookedSAETransformer; sae: SAE }> {
  const model = await HookedSAETransformer.fromPretrained(
    modelPath ?? DEMO_MODEL,
    modelPath ? {} : { modelName: "demo-pycode-gpt2-4l" },
  );
  const sae = await SAE.load(saePath ?? DEMO_SAE);
  return { model, sae };
}

const SNIPPET = `def fibonacci(n):
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)

for i in range(10):
    print(`;

const show = (s: string) => JSON.stringify(s).slice(1, -1);
const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length));

function fmtNext(list: { token: string; prob: number }[]): string {
  return list.map((t) =>
    `${pad(`"${show(t.token)}"`, 10)} ${(t.prob * 100).toFixed(1).padStart(5)}%`
  ).join("  ");
}

/** The demo: latents per token, then ablation, steering and a completion on the built-in model. */
async function demo(): Promise<void> {
  const t0 = performance.now();
  const info = await initGpu();
  console.log(`hooklens demo on ${info.adapter}${info.fallback ? " (software)" : ""}\n`);
  using model = await HookedSAETransformer.fromPretrained(DEMO_MODEL);
  using sae = await SAE.load(DEMO_SAE);
  const c = model.cfg;
  console.log(
    `model: demo-pycode, ${c.nLayers} layers, d_model ${c.dModel}, trained on Python source\n` +
      `SAE:   ${sae.cfg.dSae} latents (${sae.cfg.architecture}) reading ${sae.cfg.hookName}\n`,
  );
  console.log("Snippet:\n" + SNIPPET.split("\n").map((l) => "  | " + l).join("\n") + "\n");

  const rows = await topLatentsPerToken(model, sae, SNIPPET, 3);
  console.log("Strongest SAE latents per token (latent:activation):");
  for (const r of rows.slice(1)) {
    const lat = r.latents.map((l) => pad(`#${l.latent}:${l.act.toFixed(2)}`, 12)).join(" ");
    console.log(`  ${pad(`"${show(r.token)}"`, 16)} ${lat}`);
  }

  // Only the last position's logits: the next-token prediction is all the demo reads.
  using base = await model.forward(SNIPPET, { logitsAt: "last" });
  const before = await nextTokens(model, base, 5);
  const last = rows[rows.length - 1];
  const target = last.latents[0];
  console.log(`\nNext token after the snippet:\n  ${fmtNext(before)}`);

  // (a) Ablation: zero the strongest latent at the last token; the error term keeps the rest exact.
  using ablated = await model.runWithHooksWithSaes(SNIPPET, {
    logitsAt: "last",
    saes: [sae],
    useErrorTerm: true,
    fwdHooks: [[`${sae.cfg.hookName}.hook_sae_acts_post`, (a) => a.fillAt(-1, [target.latent], 0)]],
  }) as Tensor;
  console.log(
    `\n(a) Zeroing latent #${target.latent} (strongest at the last token, ${
      target.act.toFixed(2)
    }):\n  ${fmtNext(await nextTokens(model, ablated, 5))}`,
  );

  // (b) Steering: add a latent's decoder direction to the residual stream at every position.
  const steerLatent = rows.find((r) => r.token.trim() === "return")?.latents[0]?.latent ??
    rows[1].latents[0].latent;
  using dir = sae.decoderDirection(steerLatent);
  const scale = 8;
  let steered: string;
  {
    using _h = model.hooks([[sae.cfg.hookName, (resid) => resid.add(dir.scale(scale))]]);
    using logits = await model.forward(SNIPPET, { logitsAt: "last" });
    console.log(
      `\n(b) Steering along latent #${steerLatent} (strongest at " return") x${scale} at ${sae.cfg.hookName}:\n  ${
        fmtNext(await nextTokens(model, logits, 5))
      }`,
    );
    steered = await model.generate(SNIPPET, { maxNewTokens: 12, doSample: false });
  }

  // (c) A greedy completion, plain and steered.
  const plain = await model.generate(SNIPPET, { maxNewTokens: 12, doSample: false });
  console.log(
    `\n(c) Greedy completion (12 tokens):\n  plain:   ${
      show(plain.slice(SNIPPET.length))
    }\n  steered: ${show(steered.slice(SNIPPET.length))}`,
  );
  console.log(
    `\ndone in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s; GPU submits ${gpuInfo().stats.submits}, readbacks ${gpuInfo().stats.readbacks}`,
  );
}

/** Adapter info and one matmul compared with a float64 CPU result. */
async function doctor(json: boolean): Promise<void> {
  const info = await initGpu();
  const { Tensor } = await import("./gpu/tensor.ts");
  const { matmul } = await import("./gpu/ops.ts");
  const [M, K, N] = [64, 96, 80];
  const a = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37));
  const b = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.11));
  using ta = Tensor.from(a, [M, K]);
  using tb = Tensor.from(b, [K, N]);
  using tc = matmul(ta, tb);
  const got = await tc.toArray();
  let err = 0, ref = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * b[k * N + j];
      err = Math.max(err, Math.abs(s - got[i * N + j]));
      ref = Math.max(ref, Math.abs(s));
    }
  }
  const ok = err / ref < 1e-5;
  if (json) console.log(JSON.stringify({ ...info, matmulMaxRelError: err / ref, ok }));
  else {
    console.log(`adapter: ${info.adapter}${info.fallback ? " (software)" : ""}`);
    console.log(
      `features: shader-f16 ${info.f16 ? "yes" : "no"}, timestamp-query ${
        info.timestamps ? "yes" : "no"
      }`,
    );
    console.log(
      `matmul ${M}x${K}x${N}: max rel error ${(err / ref).toExponential(2)} vs float64 ${
        ok ? "OK" : "FAILED"
      }`,
    );
  }
  if (!ok) Deno.exit(1);
}

/** A usage error of the command line (unknown command or option, missing or bad value). */
export class CliError extends HooklensError {}

/** Parsed options of a command (see {@link OPTIONS}). */
export type CliValues = ReturnType<typeof parse>["values"];

/** A command of the command line. */
export interface CliCommand {
  /** One line for the help text. */
  summary: string;
  /** Runs the command; `json` is set by --json. */
  run(values: CliValues, json: boolean): Promise<void>;
  /**
   * For a command with options of its own: runs it with the arguments after its name, unparsed
   * (then `run` is not used).
   */
  runArgs?: (args: string[]) => Promise<void>;
}

/** Options every command accepts (a command ignores those it does not use). */
const OPTIONS = {
  model: {
    type: "string",
    help: "DIR|ID   model directory or hub id (default: the built-in demo model)",
  },
  sae: {
    type: "string",
    help: "DIR|ID     SAE directory or hub path (default: the built-in demo SAE)",
  },
  text: { type: "string", help: "TEXT      input text" },
  top: { type: "string", help: "N          latents per token (features; default 5)" },
  "max-new-tokens": { type: "string", help: "N   tokens to generate (generate; default 20)" },
  sample: {
    type: "boolean",
    help: "         sample instead of greedy decoding (generate), with --seed N, --temperature T",
  },
  seed: { type: "string", help: "N         sampling seed (generate --sample)" },
  temperature: { type: "string", help: "T  sampling temperature (generate --sample; default 1)" },
  corpus: {
    type: "string",
    help: 'FILE    texts for the explorer\'s top contexts, separated by lines "# ----"',
  },
  port: {
    type: "string",
    help: "N         explorer port on 127.0.0.1 (default 8787; 0: any free port)",
  },
  json: { type: "boolean", help: "           machine-readable output" },
  verbose: { type: "boolean", help: "        on an error, print its stack trace too" },
  help: { type: "boolean", short: "h", help: "        this text" },
} as const; // deno-fmt-ignore

function parse(args: string[]) {
  const options = Object.fromEntries(
    Object.entries(OPTIONS).map(([k, v]) => [k, "short" in v ? { type: v.type, short: v.short } : { type: v.type }]),
  ) as { [K in keyof typeof OPTIONS]: { type: (typeof OPTIONS)[K]["type"]; short?: string } };
  return parseArgs({ args, allowPositionals: true, strict: true, options });
} // deno-fmt-ignore

/** A number-valued option, or `d` when absent; a non-number is a {@link CliError}. */
function num(v: string | undefined, d: number, name: string): number {
  if (v === undefined) return d;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) {
    throw new CliError(`--${name} must be a number, got "${v}".`);
  }
  return n;
}

function needText(values: CliValues, cmd: string): string {
  if (values.text === undefined) throw new CliError(`${cmd} needs --text "..."`);
  return values.text;
}

/**
 * The commands, by name. Another command is one more entry here (its options in `OPTIONS`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { COMMANDS } from "./cli.ts";
 *
 * assert.ok("demo" in COMMANDS && "features" in COMMANDS);
 * ```
 */
export const COMMANDS: Record<string, CliCommand> = {
  demo: {
    summary: "the built-in demo: SAE latents per token, ablation, steering, completion",
    run: () => demo(),
  },
  features: {
    summary: "strongest SAE latents of each token of --text",
    async run(values, json) {
      const text = needText(values, "features");
      const top = num(values.top, 5, "top");
      using model = await HookedSAETransformer.fromPretrained(values.model ?? DEMO_MODEL);
      using sae = await SAE.load(values.sae ?? DEMO_SAE);
      const rows = await topLatentsPerToken(model, sae, text, top);
      if (json) console.log(JSON.stringify({ hook: sae.cfg.hookName, tokens: rows }));
      else {
        for (const r of rows) {
          console.log(
            `${pad(`"${show(r.token)}"`, 16)} ${
              r.latents.map((l) => `#${l.latent}:${l.act.toFixed(3)}`).join("  ")
            }`,
          );
        }
      }
    },
  },
  generate: {
    summary: "continue --text",
    async run(values, json) {
      const text = needText(values, "generate");
      const maxNewTokens = num(values["max-new-tokens"], 20, "max-new-tokens");
      const seed = values.seed === undefined ? undefined : num(values.seed, 0, "seed");
      const temperature = num(values.temperature, 1, "temperature");
      using model = await HookedSAETransformer.fromPretrained(values.model ?? DEMO_MODEL);
      const out = await model.generate(text, {
        maxNewTokens,
        doSample: Boolean(values.sample),
        seed,
        temperature,
      });
      if (json) {
        console.log(
          JSON.stringify({ prompt: text, text: out, completion: out.slice(text.length) }),
        );
      } else console.log(out);
    },
  },
  hooks: {
    summary: "list the model's hook points (with SAEs attached if --sae) and their shapes",
    async run(values, json) {
      using model = await HookedSAETransformer.fromPretrained(values.model ?? DEMO_MODEL);
      using sae = values.sae ? await SAE.load(values.sae) : null;
      if (sae) model.addSae(sae);
      const shapes = new Map<string, readonly number[]>();
      {
        using _h = model.hooks([[() => true, (a, h) => void shapes.set(h.name, a.shape)]]);
        using _o = await model.forward([[0, 1, 2, 3]]);
      }
      const rows = model.hookNames().map((name) => ({ name, shape: shapes.get(name) ?? null }));
      if (json) console.log(JSON.stringify({ input: [1, 4], hooks: rows }));
      else for (const r of rows) console.log(`${pad(r.name, 44)} [${r.shape?.join(", ")}]`);
    },
  },
  train: {
    summary: "train an SAE on the model's activations, saved in SAELens's layout (train --help)",
    run: () => Promise.resolve(),
    async runArgs(args) {
      const { trainCommand } = await import("./sae/train/cli.ts");
      await trainCommand(args);
    },
  },
  explore: {
    summary: "the feature explorer: a local web page on 127.0.0.1 (--port, default 8787)",
    async run(values) {
      const port = num(values.port, 8787, "port");
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new CliError(`--port must be an integer in 0..65535, got "${values.port}".`);
      }
      const { serveExplorer } = await import("./explore/server.ts");
      const { model, sae } = await loadModelAndSae(values.model, values.sae);
      const corpus = await loadCorpus(values.corpus ?? DEMO_CORPUS);
      const ex = await serveExplorer({ model, sae, corpus, port });
      console.log(`hooklens explorer: ${ex.url} (Ctrl-C to stop)`);
      await new Promise<void>(() => {});
    },
  },
  doctor: {
    summary: "adapter info and one kernel checked against the CPU",
    run: (_values, json) => doctor(json),
  },
  help: {
    summary: "this text",
    run: () => Promise.resolve(console.log(helpText())),
  },
};

/**
 * The help text, made from {@link COMMANDS} and the options.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { helpText } from "./cli.ts";
 *
 * assert.match(helpText(), /demo/);
 * ```
 */
export function helpText(): string {
  const cmds = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`);
  const opts = Object.entries(OPTIONS).map(([n, o]) => `  --${n} ${o.help}`);
  return `hooklens: TransformerLens-style hooks and SAEs on WebGPU

Usage: deno task cli -- <command> [options]

Commands:
${cmds.join("\n")}

Options:
${opts.join("\n")}

Errors print one line and exit with status 1 (2 for a usage error); --verbose adds the stack.
`;
}

/**
 * Entry point: parses `args` and runs a command. A leading "--" (which `deno task cli -- ...`
 * passes on) is skipped. Throws a {@link CliError} for an unknown command or option.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./cli.ts";
 *
 * await main(["doctor", "--json"]); // prints what the GPU and the models look like, as JSON
 * await assert.rejects(main(["no-such-command"]));
 * ```
 */
export async function main(args: string[]): Promise<void> {
  if (args[0] === "--") args = args.slice(1);
  const own = Object.hasOwn(COMMANDS, args[0] ?? "") ? COMMANDS[args[0]].runArgs : undefined;
  if (own) return await own(args.slice(1));
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (e) {
    // node:util's parseArgs: unknown option, missing value, "--" misplaced.
    throw new CliError(`${(e as Error).message.split("\n")[0]} (see: deno task cli -- help)`);
  }
  const { values, positionals } = parsed;
  const name = values.help ? "help" : positionals[0] ?? "help";
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    throw new CliError(
      `Unknown command "${name}"; commands: ${Object.keys(COMMANDS).join(", ")}.`,
    );
  }
  if (positionals.length > 1) {
    throw new CliError(
      `Unexpected argument "${positionals[1]}" after ${name}: options start with --, and ` +
        "texts with spaces need quotes.",
    );
  }
  await cmd.run(values, Boolean(values.json));
}

/**
 * Runs the command line and returns its exit status: 0, 1 for an error, 2 for a usage error. An
 * error prints one line on stderr ("hooklens: ..."), with its stack when `args` has --verbose.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runCli } from "./cli.ts";
 *
 * // In a script: Deno.exit(await runCli(Deno.args));
 * assert.equal(await runCli(["no-such-command"]), 2); // a usage error, said on stderr
 * ```
 */
export async function runCli(args: string[]): Promise<number> {
  try {
    await main(args);
    return 0;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    const verbose = args.includes("--verbose");
    const known = err instanceof HooklensError;
    const line = (known ? err.message : `${err.name}: ${err.message}`).split("\n")[0];
    console.error(`hooklens: ${line}`);
    if (verbose && err.stack) console.error(err.stack);
    else if (!known) console.error("(an unexpected error: run with --verbose for the stack)");
    return err instanceof CliError ? 2 : 1;
  }
}

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
