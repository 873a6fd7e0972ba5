// hooklens against a numpy yardstick in the same run: the demo model (models/demo-pycode, 4 layers,
// d_model 128, vocabulary 50257) forward over 1x128 tokens, logits read back to the CPU, beside a
// plain float32 numpy GPT-2 forward of the same weights (bench/numpy_gpt2.py, a subprocess that
// stays up). Rounds alternate hooklens and numpy call by call, so both see the same machine load;
// the figures are medians of wall ms per call and their ratio. Cases: every position's logits
// (both sides), and the last position's only (hooklens `logitsAt: "last"`, numpy unembedding the
// last row only, and numpy's full forward beside it). Needs python3 with numpy and
// --allow-run (deno task bench grants it); without them it says so and times nothing. Prints a
// table on exit and writes bench/results/numpy.json.
import { HookedTransformer, initGpu, type Tensor } from "../mod.ts";
import { DEMO_MODEL } from "../src/cli.ts";
import { median } from "./_common.ts";

const info = await initGpu();
const ROUNDS = Number(Deno.env.get("HOOKLENS_NUMPY_ROUNDS") ?? 15);
const P = 128;
/** Idle ms before each timed call (see the rounds loop). */
const SETTLE_MS = Number(Deno.env.get("HOOKLENS_NUMPY_SETTLE_MS") ?? 250);

/** The numpy subprocess: one JSON command a line in, one JSON answer a line out. */
async function startNumpy(): Promise<
  { ask: (cmd: unknown) => Promise<Record<string, unknown>> } | string
> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("python3", {
      args: [new URL("./numpy_gpt2.py", import.meta.url).pathname, DEMO_MODEL],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    return `cannot start python3 (${(e as Error).message}); run with --allow-run and python3 ` +
      "with numpy installed (Debian: apt-get install python3-numpy)";
  }
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const ask = async (cmd: unknown) => {
    await writer.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
    while (!buf.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) {
        const err = await new Response(child.stderr).text();
        throw new Error(`numpy_gpt2.py ended: ${err.trim().split("\n").at(-1)}`);
      }
      buf += value;
    }
    const i = buf.indexOf("\n");
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    return JSON.parse(line);
  };
  try {
    await ask({ tokens: [[0]] });
  } catch (e) {
    await child.status;
    return `numpy yardstick unavailable: ${(e as Error).message}`;
  }
  // (It ends when this process does: its stdin closes.)
  return { ask };
}

const numpy = await startNumpy();
if (typeof numpy === "string") {
  console.log(`bench/numpy_bench.ts: ${numpy}; nothing timed.`);
} else {
  const model = await HookedTransformer.fromPretrained(DEMO_MODEL);
  const V = model.cfg.dVocab;
  const tokens = [Array.from({ length: P }, (_, i) => (i * 104729 + 7) % V)];
  await numpy.ask({ tokens });

  // Both compute the same model: the first and last rows of the logits agree once each row's mean
  // is removed (TransformerLens's center_unembed shifts every logit of a row by one constant).
  {
    using full = await model.forward(tokens);
    const ours = await full.toArray();
    const { rows } = await numpy.ask({ logits: true }) as { rows: number[][] };
    const centred = (r: ArrayLike<number>) => {
      const m = Array.from(r).reduce((a, b) => a + b, 0) / r.length;
      return Array.from(r, (v) => v - m);
    };
    let diff = 0, scale = 0;
    for (const [i, row] of [[0, rows[0]], [P - 1, rows[1]]] as const) {
      const a = centred(ours.subarray(i * V, (i + 1) * V)), b = centred(row);
      for (let j = 0; j < V; j++) {
        diff = Math.max(diff, Math.abs(a[j] - b[j]));
        scale = Math.max(scale, Math.abs(b[j]));
      }
    }
    if (!(diff <= 1e-3 * scale)) {
      throw new Error(`hooklens and numpy disagree on the logits: max diff ${diff} of ${scale}`);
    }
  }

  type Side = { name: string; run: () => Promise<number> };
  const hooklens = (opts: { logitsAt?: "last" }): Side => ({
    name: `hooklens${opts.logitsAt ? ' (logitsAt "last")' : ""}`,
    run: async () => {
      const t0 = performance.now();
      const logits: Tensor = await model.forward(tokens, opts);
      await logits.toArray();
      logits.dispose();
      return performance.now() - t0;
    },
  });
  const np = (last: boolean): Side => ({
    name: `numpy${last ? " (last row unembedded)" : ""}`,
    run: async () => ((await numpy.ask({ run: 1, last })) as { ms: number[] }).ms[0],
  });
  const cases: { name: string; sides: Side[] }[] = [
    {
      name: `demo forward 1x${P}, every position's logits read back`,
      sides: [hooklens({}), np(false)],
    },
    {
      name: `demo forward 1x${P}, last position's logits read back`,
      sides: [hooklens({ logitsAt: "last" }), np(true), np(false)],
    },
  ]; // deno-fmt-ignore
  const results: { case: string; side: string; ms: number[]; median: number }[] = [];
  for (const c of cases) {
    Deno.bench({ name: c.name, n: 1, warmup: 0, group: "numpy" }, async () => {
      for (const s of c.sides) await s.run(); // warm: pipelines, pool, staging buffers
      const ms: number[][] = c.sides.map(() => []);
      for (let r = 0; r < ROUNDS; r++) {
        // Alternate which side goes first, so neither always follows the other.
        const order = c.sides.map((_, i) => i);
        if (r % 2) order.reverse();
        for (const i of order) {
          // Let the other side's idle threads settle first: OpenBLAS keeps its worker threads
          // spinning for ~0.1 s after a call (its thread timeout), which on a 2-core machine
          // took a core from whatever ran next (hooklens's last-position call: 45.9 ms median right after numpy, 39.2 with the pause).
          await new Promise((res) => setTimeout(res, SETTLE_MS));
          ms[i].push(await c.sides[i].run());
        }
      }
      // (Deno may call a case more than once: the last call's rounds stand.)
      for (let i = results.length - 1; i >= 0; i--) {
        if (results[i].case === c.name) results.splice(i, 1);
      }
      c.sides.forEach((s, i) =>
        results.push({ case: c.name, side: s.name, ms: ms[i], median: median(ms[i]) })
      );
    });
  }
  globalThis.addEventListener("unload", () => {
    if (!results.length) return;
    const lines = [
      `\nhooklens against numpy on ${info.adapter} (wall ms per call, ${ROUNDS} rounds)`,
    ];
    for (const c of cases) {
      const mine = results.filter((r) => r.case === c.name);
      if (!mine.length) continue;
      lines.push(c.name);
      for (const r of mine) {
        const ratio = r === mine[0]
          ? ""
          : `  hooklens / this: ${(mine[0].median / r.median).toFixed(2)}`;
        lines.push(
          `  ${r.side.padEnd(32)} median ${r.median.toFixed(1).padStart(7)}  (min ${
            Math.min(...r.ms).toFixed(1)
          }, max ${Math.max(...r.ms).toFixed(1)})${ratio}`,
        );
      }
    }
    console.log(lines.join("\n"));
    const dir = new URL("./results/", import.meta.url);
    Deno.mkdirSync(dir, { recursive: true });
    Deno.writeTextFileSync(
      new URL("numpy.json", dir),
      JSON.stringify(
        { adapter: info.adapter, date: new Date().toISOString(), rounds: ROUNDS, results },
        null,
        1,
      ),
    );
  }); // deno-fmt-ignore
}
