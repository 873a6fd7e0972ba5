// SAE training throughput at the demo model's shape (d_in 128, d_sae 1024, 256 activations a step):
// one WGSL training step (forward, backward, clipping, Adam; one submit) per architecture, and,
// side by side in the same run, the same step as a plain PyTorch CPU loop (bench/train_torch.py;
// Debian's python3-torch) when python3 can import torch. The ratio is printed at the end.
import { TRAIN_PARAMS, trainParamSizes, type TrainShape } from "../src/sae/train/kernels.ts";
import { createTrainStep, recordTrainStep } from "../src/sae/train/kernels.ts";
import { bench, info, randn, suite } from "./_common.ts";

suite("train");
const B = 256, D = 128, S = 1024, K = 32;
const ours = new Map<string, number>();

for (const arch of ["standard", "topk"] as const) {
  const shape: TrainShape = {
    architecture: arch,
    batch: B,
    dIn: D,
    dSae: S,
    k: K,
    applyBDecToInput: true,
    rescaleActsByDecoderNorm: true,
    deadFeatureWindow: 1000,
    adamBeta1: 0.9,
    adamBeta2: 0.999,
    metricSlots: 1,
  };
  const sizes = trainParamSizes(shape);
  const init: Record<string, Float32Array> = {};
  TRAIN_PARAMS[arch].forEach((n, i) => (init[n] = randn(sizes[n], 0.05, 10 + i)));
  const st = createTrainStep(shape, init);
  const x = randn(B * D, 1, 99);
  let step = 0;
  // Five matrix products of B x D x S (encode, decode, decode's transpose, two weight gradients).
  const flops = 5 * 2 * B * D * S;
  bench(`${arch} step ${B}x${D}x${S}`, { flops }, () => {
    recordTrainStep(st, x, { lr: 3e-4, coefficient: 1, step: ++step });
  });
  Deno.bench({ name: `${arch} (tokens/s)`, n: 1, warmup: 0, group: "train" }, async () => {
    const t0 = performance.now();
    const n = 10;
    for (let i = 0; i < n; i++) recordTrainStep(st, x, { lr: 3e-4, coefficient: 1, step: ++step });
    const { readStepMetrics } = await import("../src/sae/train/kernels.ts");
    await readStepMetrics(st, 1);
    ours.set(arch, (n * B) / ((performance.now() - t0) / 1000));
  });
}

const torch = new Map<string, { tokens_per_s: number; threads: number; torch: string }>();
// Debian's python3-torch lives in the system python (a pyenv or venv python3 on PATH lacks it).
const PY = Deno.env.get("HOOKLENS_TORCH_PYTHON") ??
  (await Deno.stat("/usr/bin/python3").then(() => "/usr/bin/python3").catch(() => "python3"));
const hasTorch = await new Deno.Command(PY, { args: ["-c", "import torch"], stderr: "null" })
  .output().then((o) => o.success).catch(() => false);
if (hasTorch) {
  for (const arch of ["standard", "topk"]) {
    Deno.bench(
      { name: `pytorch cpu ${arch} (tokens/s)`, n: 1, warmup: 0, group: "train" },
      async () => {
        // Torch's best of one thread and every core (on a loaded 2-core machine one thread won).
        const script = new URL("./train_torch.py", import.meta.url).pathname;
        for (const threads of [1, navigator.hardwareConcurrency]) {
          const o = await new Deno.Command(PY, {
            args: [script, arch, `${B}`, `${D}`, `${S}`, `${K}`, "20", `${threads}`],
          }).output();
          const r = JSON.parse(new TextDecoder().decode(o.stdout));
          if (!torch.has(arch) || r.tokens_per_s > torch.get(arch)!.tokens_per_s) {
            torch.set(arch, r);
          }
        }
      },
    );
  }
}

globalThis.addEventListener("unload", () => {
  console.log(`\nSAE training, ${B} activations x d_in ${D} x d_sae ${S}, on ${info.adapter}:`);
  for (const [arch, tps] of ours) {
    const t = torch.get(arch);
    console.log(
      `  ${arch.padEnd(9)} hooklens ${tps.toFixed(0).padStart(8)} tokens/s` +
        (t
          ? `   pytorch cpu (${t.threads} threads, torch ${t.torch}) ${
            t.tokens_per_s.toFixed(0).padStart(8)
          } tokens/s   ratio ${(tps / t.tokens_per_s).toFixed(2)}`
          : "   (pytorch: python3 cannot import torch; apt-get install python3-torch)"),
    );
  }
});
