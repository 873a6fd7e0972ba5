/**
 * The WGSL of the dense-layer kernels for software adapters (lavapipe), the `linear_cpu` and
 * `linear_sg` shaders, whose register blocks are spelled out variable by variable (see the comments
 * at the top of the outputs). linear.ts builds them from here the first time a pipeline needs
 * them; they are not committed as `.wgsl` files. Their uniform block `P` is linear.ts's
 * LINEAR_P, prepended there.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { linearCpuWgsl, linearSgWgsl } from "./linear_cpu_gen.ts";
 *
 * assert.ok(linearCpuWgsl().length > 0);
 * assert.ok(linearSgWgsl().includes("subgroupBroadcast"));
 * ```
 * @module
 */

/** Rows per invocation (8 apart) and column quads per invocation (4 quads apart). */
const ROWS = 16;
const QUADS = 8;
/** The same for the `small` entry (small layers: compiles in a fraction of the time). */
const SMALL_ROWS = 4;
const SMALL_QUADS = 2;
/** The subgroup kernels (linear_sg): consecutive rows and column quads (8 apart) per
 * lane, and the same for their `small` entries. */
const SG_ROWS = 64;
const SG_QUADS = 4;
const SG_SMALL_ROWS = 16;
const SG_SMALL_QUADS = 2;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
/** Statements four to a line, indented. */
const lines = (xs: string[], indent: string, per = 4): string =>
  range(Math.ceil(xs.length / per)).map((i) => indent + xs.slice(i * per, i * per + per).join(" "))
    .join("\n");

/** The loop body's loads of B for column quads q0.. (k0..k3: the rows of this k step), or with
 * `trans` the quads' four rows of the weight read as vec4 along k. */
function bLoads(quads: number, trans: boolean): string[] {
  return trans
    ? range(quads).flatMap((q) =>
      range(4).map((j) => `let b${j}${q} = vec4<f32>(B[(q${q} * 4u + ${j}u) * LDB4 + boff4 + kq]);`)
    )
    : range(4).flatMap((j) =>
      range(quads).map((q) => `let b${j}${q} = vec4<f32>(B[k${j} + q${q}]);`)
    );
}

/** An entry point: `head` (the invocation's rows r0.., column quads q0.. and whatever the A loads
 * need), `aLoads` (a0.. from the loop body), then the same accumulation and epilogue. */
function entryPoint(
  name: string,
  o: { size: number; args: string; head: string; aLoads: string; rowOf: string; quadOf: string },
  rows: number,
  quads: number,
  trans: boolean,
): string {
  const R = range(rows), Q = range(quads);
  const acc = R.map((r) => Q.map((q) => `var c${r}_${q} = vec4<f32>();`).join(" "));
  const fn = trans ? "d4" : "f4";
  const fmas = R.flatMap((r) =>
    Q.map((q) => `c${r}_${q} = ${fn}(c${r}_${q}, a${r}, b0${q}, b1${q}, b2${q}, b3${q});`)
  );
  const stores = R.flatMap((r) => Q.map((q) => `st(r${r}, q${q}, c${r}_${q} + bq${q});`));
  return `@compute @workgroup_size(${o.size})
fn ${name}(${o.args}) {
  let K4 = p.K / 4u;
  let N4 = (p.N + 3u) / 4u;
${o.head}
${acc.map((s) => "  " + s).join("\n")}
  let LDB4 = p.LDB / 4u;
  let boff4 = p.boff / 4u;
  for (var kq = 0u; kq < K4; kq++) {
${
    trans ? "" : `    let k0 = kq * 4u * LDB4 + boff4;
    let k1 = k0 + LDB4;
    let k2 = k1 + LDB4;
    let k3 = k2 + LDB4;
`
  }${lines(bLoads(quads, trans), "    ")}
${o.aLoads}
${lines(fmas, "    ", 2)}
  }
${lines(Q.map((q) => `var bq${q} = vec4<f32>();`), "  ")}
  if (p.has_bias != 0u) {
${lines(Q.map((q) => `bq${q} = bias[q${q}];`), "    ")}
  }
${lines(stores, "  ", 2)}
  if (!SPLIT && (ACT != 0u || RESID)) {
    for (var i = 0u; i < ${rows * quads}u; i++) { epi(${o.rowOf}, ${o.quadOf}); }
  }
}
`;
}

/** One entry point of linear_cpu: 32 invocations (4 column groups x 8 row groups), each
 * `rows` rows (8 apart) x `quads` column quads (4 apart), so a workgroup makes an (8 rows) x
 * (16 quads) tile. `trans`: B is read transposed (the backward of a dense layer, dx = g · Wᵀ):
 * output column n is row n of the weight, read as vec4 along k from column `boff` of rows of LDB
 * elements. */
function entry(name: string, rows: number, quads: number, trans = false): string {
  const R = range(rows), Q = range(quads);
  const head = `  let nq0 = wg.x * ${4 * quads}u + li % 4u;
  let m0 = wg.y * ${8 * rows}u + li / 4u;
${lines(Q.map((q) => `let q${q} = min(nq0 + ${4 * q}u, N4 - 1u);`), "  ")}
${lines(R.map((r) => `let r${r} = min(m0 + ${8 * r}u, p.M - 1u);`), "  ")}`;
  const aLoads = lines(R.map((r) => `let a${r} = A[r${r} * K4 + kq];`), "    ");
  const args = "@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32";
  const rowOf = `min(m0 + 8u * (i / ${quads}u), p.M - 1u)`;
  const quadOf = `min(nq0 + 4u * (i % ${quads}u), N4 - 1u)`;
  return entryPoint(name, { size: 32, args, head, aLoads, rowOf, quadOf }, rows, quads, trans);
}

/** One entry point of linear_sg: a workgroup is one subgroup of 8 lanes; lane l makes `rows`
 * consecutive rows x `quads` column quads (l, l + 8, ..), so the lanes share their rows and each
 * loads only its own columns of B, and A's rows are loaded spread over the lanes (lane l loads rows
 * l, l + 8, ..: `rows` / 8 loads a lane instead of `rows`) and handed round with subgroupBroadcast
 * (a register shuffle on a CPU). A workgroup makes a `rows` x (32 `quads`) tile. */
function sgEntry(name: string, rows: number, quads: number, trans = false): string {
  const R = range(rows), Q = range(quads), G = range(rows / 8);
  const head = `  let nq0 = wg.x * ${8 * quads}u + l;
  let m0 = wg.y * ${rows}u;
${lines(Q.map((q) => `let q${q} = min(nq0 + ${8 * q}u, N4 - 1u);`), "  ")}
${lines(R.map((r) => `let r${r} = min(m0 + ${r}u, p.M - 1u);`), "  ")}
${lines(G.map((g) => `let ra${g} = min(m0 + ${8 * g}u + l, p.M - 1u) * K4;`), "  ")}`;
  const aLoads = `${lines(G.map((g) => `let av${g} = A[ra${g} + kq];`), "    ")}
${
    lines(
      R.map((r) => `let a${r} = subgroupBroadcast(av${Math.floor(r / 8)}, ${r % 8}u);`),
      "    ",
      2,
    )
  }`;
  const args = "@builtin(workgroup_id) wg: vec3u, @builtin(subgroup_invocation_id) l: u32";
  const rowOf = `min(m0 + i / ${quads}u, p.M - 1u)`;
  const quadOf = `min(nq0 + 8u * (i % ${quads}u), N4 - 1u)`;
  return entryPoint(name, { size: 8, args, head, aLoads, rowOf, quadOf }, rows, quads, trans);
}

/** What both shaders hold after their header comment: bindings, helpers and the epilogue (the
 * uniform block P is linear.ts's LINEAR_P). */
const PRELUDE = `@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: array<vec4<WT>>;
@group(0) @binding(3) var<storage, read_write> C: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> D: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> R: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> E3: array<f32>;

// c + a.x b0 + a.y b1 + a.z b2 + a.w b3: four consecutive k of one row and one column quad.
fn f4(c: vec4<f32>, a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
  return fma(vec4(a.w), b3, fma(vec4(a.z), b2, fma(vec4(a.y), b1, fma(vec4(a.x), b0, c))));
}

// c + (a·b0, a·b1, a·b2, a·b3): four consecutive k of one row against four output columns read
// as rows of the weight (the transposed entries).
fn d4(c: vec4<f32>, a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
  return c + vec4(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
}

fn act4(y: vec4<f32>) -> vec4<f32> {
  return vec4(activation(y.x, ACT - 1u), activation(y.y, ACT - 1u), activation(y.z, ACT - 1u),
    activation(y.w, ACT - 1u));
}

// Stores quad q of row r of C (y = A·B + bias). SPLIT: three outputs side by side (see
// linear.wgsl), each a whole number of quads. CROP: the output is E3 [M, N] with N not a multiple
// of 4 (the unembedding's vocabulary; the weight's rows are padded to LDB): the quad's columns
// below N, one scalar store each, so no second pass copies the real columns out of a padded
// product.
fn st(r: u32, q: u32, y: vec4<f32>) {
  if (CROP) {
    let c = q * 4u;
    let o = r * p.N + c;
    E3[o] = y.x;
    if (c + 1u < p.N) { E3[o + 1u] = y.y; }
    if (c + 2u < p.N) { E3[o + 2u] = y.z; }
    if (c + 3u < p.N) { E3[o + 3u] = y.w; }
    return;
  }
  if (SPLIT) {
    let q1 = p.n1 / 4u;
    let q12 = (p.n1 + p.n2) / 4u;
    if (q < q1) { C[r * q1 + q] = y; }
    else if (q < q12) { D[r * (p.n2 / 4u) + q - q1] = y; }
    else {
      let o = (r * (p.N / 4u - q12) + q - q12) * 4u;
      E3[o] = y.x; E3[o + 1u] = y.y; E3[o + 2u] = y.z; E3[o + 3u] = y.w;
    }
    return;
  }
  C[r * (p.N / 4u) + q] = y;
}

// D of quad q of row r from the stored C: act(C) (gated by the threshold R[q] or the gate R) or
// R + C. Called in a loop once the block is stored, so that llvmpipe, which inlines every call,
// compiles it once instead of once a quad (most of the compile time of the small blocks).
fn epi(r: u32, q: u32) {
  let i = r * (p.N / 4u) + q;
  let y = C[i];
  if (ACT != 0u) {
    var d = act4(y);
    if (GATE == 1u) { d = select(vec4<f32>(), d, y > R[q]); }
    if (GATE == 2u) { d = select(vec4<f32>(), d, R[i] > vec4<f32>()); }
    D[i] = d;
  }
  if (RESID) { D[i] = R[i] + y; }
}

`;

/**
 * The WGSL text of the `linear_cpu` shader (without its uniform block).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { linearCpuWgsl } from "./linear_cpu_gen.ts";
 *
 * const code = linearCpuWgsl();
 * assert.match(code, /@compute/);
 * ```
 */
export function linearCpuWgsl(): string {
  return `// Generated by src/gpu/kernels/linear_cpu_gen.ts when a pipeline first needs it.
//
// Dense layer for software adapters (lavapipe): C[M, N] = A[M, K] · B[K, N] + bias[N] with the
// epilogues of linear.wgsl (D = act(C), gated; D = R + C). Each invocation runs on one lane of a
// CPU SIMD register, where a load from a storage or workgroup buffer is a scalar loop over the
// lanes (several instructions an element) and a barrier is a coroutine switch, while a multiply-add
// is one vector instruction. So these kernels use no workgroup memory and a register block: each of
// 32 invocations (4 column groups x 8 row groups) makes R rows (8 apart) x Q column quads (4 quads
// apart), loads first (Q + R / 4 vec4 per k), then the multiply-adds in one straight block. main:
// R ${ROWS}, Q ${QUADS} (a ${8 * ROWS}x${
    16 * QUADS
  } tile); small: R ${SMALL_ROWS}, Q ${SMALL_QUADS} (${8 * SMALL_ROWS}x${
    16 * SMALL_QUADS
  }), for small layers, as LLVM
// takes seconds to compile main. The blocks are spelled out variable by variable: held in arrays,
// or stored through a loop, llvmpipe compiles them ~9x slower. The second output (activation,
// residual) is made after the stores, in a loop that reads C back: llvmpipe inlines every call, and
// one epilogue per quad was most of the compile time (2-3x less now). Rows and column quads past
// the end are clamped: a clamped lane computes and stores the same values as the lane that owns
// the last row or quad, so nothing needs a branch. Requires K, N and B's row stride LDB to be
// multiples of 4, except with CROP (no epilogue): then N may be any width up to LDB, and the
// output is E3 [M, N]. Specialisation as linear.wgsl: WT, ACT, RESID, GATE, SPLIT (each part a
// multiple of 4 columns), and CROP. B's rows are LDB long and its columns read from boff on (a
// column block of a joint weight). main_t / small_t: C = A · Bᵀ[boff .., ..] for the backward of a
// dense layer (B [N, LDB], its columns boff .. boff + K; K, LDB and boff multiples of 4).

${PRELUDE}${entry("main", ROWS, QUADS)}
${entry("small", SMALL_ROWS, SMALL_QUADS)}
${entry("main_t", ROWS, QUADS, true)}
${entry("small_t", SMALL_ROWS, SMALL_QUADS, true)}`;
}

/**
 * The WGSL text of the `linear_sg` shader (without its uniform block).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { linearSgWgsl } from "./linear_cpu_gen.ts";
 *
 * const code = linearSgWgsl();
 * assert.match(code, /@compute/);
 * ```
 */
export function linearSgWgsl(): string {
  return `// Generated by src/gpu/kernels/linear_cpu_gen.ts when a pipeline first needs it.
//
// The dense layers of linear_cpu (read its comment first: same bindings, specialisation,
// epilogues and requirements) for software adapters whose subgroups are 8 lanes (lavapipe on a
// 256-bit SIMD CPU), with fewer buffer loads per multiply-add: a workgroup is one subgroup, and
// lane l makes R consecutive rows x Q column quads (l, l + 8, ..). The lanes share their rows, so
// each loads only its own columns of B (4Q vec4 per k step), and the R rows of A are loaded
// spread over the lanes (R / 8 vec4 each) and handed round with subgroupBroadcast, a register
// shuffle there: 4Q + R / 8 loads per 4RQ vec4 multiply-adds where linear_cpu takes 4Q + R.
// main: R ${SG_ROWS}, Q ${SG_QUADS} (a ${SG_ROWS}x${
    32 * SG_QUADS
  } tile); small: R ${SG_SMALL_ROWS}, Q ${SG_SMALL_QUADS} (${SG_SMALL_ROWS}x${
    32 * SG_SMALL_QUADS
  }). main_t / small_t: transposed, as
// there. Needs the device's "subgroups" feature.

${PRELUDE}${sgEntry("main", SG_ROWS, SG_QUADS)}
${sgEntry("small", SG_SMALL_ROWS, SG_SMALL_QUADS)}
${sgEntry("main_t", SG_ROWS, SG_QUADS, true)}
${sgEntry("small_t", SG_SMALL_ROWS, SG_SMALL_QUADS, true)}`;
}
