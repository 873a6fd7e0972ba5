// The choices a GPU run is to settle, side by side from the JSON summaries the suites wrote
// (bench/results/ or the folder given): each candidate's GPU ms against the default's, and which
// is faster. bench/gpu.sh prints this after the suites. Run: deno run --allow-read bench/compare.ts
interface Row {
  suite: string;
  name: string;
  gpuMs: number;
  wallMs: number;
}

const dir = Deno.args[0] ?? new URL("./results/", import.meta.url).pathname;
const rows: Row[] = [];
for (const suite of ["kernels", "model"]) {
  try {
    rows.push(...JSON.parse(Deno.readTextFileSync(`${dir}/${suite}.json`)).rows);
  } catch {
    console.log(`(no ${suite}.json in ${dir})`);
  }
}
const find = (re: RegExp) => rows.filter((r) => re.test(r.name));

/** The model suite's row of the defaults, timed beside the choices (see model_bench.ts). */
const DEFAULTS = ", default choices";
/** Each choice: the suffix that names its candidate cases, and what replaces that suffix in the
 * name of the default case each is timed against (nothing: the same case without the choice). */
const candidates: [label: string, suffix: RegExp, base?: string][] = [
  ["one-pass attention (tuning.attention.fused)", / with fused attention$/, DEFAULTS],
  ["one-pass attention, kernel alone", /, fused \(one pass\)$/, " (scores, softmax, z)"],
  ["one-pass attention in generation", /, fused attention$/, " (greedy, KV cache, batch 1)"],
  ["K step 8 of the 128x128 tiles (bk 8; the default is 16)", / with BK 8$/, DEFAULTS],
  [
    "split-K of deep sums only (splitKMinDepth 2048; the default is 256)",
    / with split-K of deep sums only$/,
    DEFAULTS,
  ],
  [
    "split-K of the MLP input too (bigTileMinTiles 264)",
    / with split-K of the MLP input too$/,
    DEFAULTS,
  ],
  ["no split-K (splitK off)", /,? without split-K$/],
];
for (const [label, suffix, base = ""] of candidates) {
  const found = find(suffix);
  if (!found.length) continue;
  console.log(`\n${label}:`);
  for (const cand of found) {
    const baseName = cand.name.replace(suffix, base);
    const def = rows.find((r) => r.name === baseName);
    if (!def) {
      console.log(`  ${cand.name}: no "${baseName}" row to compare with (did its suite finish?)`);
      continue;
    }
    const ratio = def.gpuMs / cand.gpuMs;
    console.log(
      `  ${def.name.padEnd(52)} ${def.gpuMs.toFixed(3).padStart(9)} ms  candidate ${
        cand.gpuMs.toFixed(3).padStart(9)
      } ms  ${ratio >= 1 ? `${ratio.toFixed(2)}x faster` : `${(1 / ratio).toFixed(2)}x slower`}`,
    );
  }
}
// Dense shapes: the default choice against each tiled variant.
const dense = find(/^linear \d+x\d+x\d+ \(default choice\)$/);
if (dense.length) console.log("\ndense layers (GPU ms; default choice first):");
for (const d of dense) {
  const shape = d.name.split(" ")[1];
  const variants = find(new RegExp(`^linear ${shape} \\((?!default)`)).map((v) =>
    `${v.name.slice(`linear ${shape} (`.length, -1)} ${v.gpuMs.toFixed(3)}`
  );
  console.log(`  ${shape}: default ${d.gpuMs.toFixed(3)}; ${variants.join("; ")}`);
}
