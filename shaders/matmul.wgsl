// Batched, strided matrix multiply with a fused epilogue:
//   C[z][m][n] = alpha * sum_k A[z][m][k] * B[z][k][n] + bias[n] (+ C[z][m][n] if ACCUM), soft cap,
//   causal (and sliding-window) -inf.
// z = b1 * NB2 + b2 walks two batch levels, each operand with its own strides, so per-head attention
// (q·kᵀ, pattern·v) reads TransformerLens's [batch, pos, head, d_head] layout in place.
// 64x64 output tile per workgroup, 4x4 per thread, 16-deep K tiles in workgroup memory.

// Uniform block P (bound as p): MATMUL_P in src/gpu/kernels/matmul.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// SAE encode only: the activation's output and its per-column threshold / per-element gate.
@group(0) @binding(5) var<storage, read_write> Post: array<f32>;
@group(0) @binding(6) var<storage, read> aux: array<f32>;

// Where batch z = b1 NB2 + b2 starts in A, B (whose b2 is divided by b_div: grouped-query
// attention) and C.
fn a_start(z: u32) -> u32 { return p.a_off + (z / p.NB2) * p.a_b1 + (z % p.NB2) * p.a_b2; }
fn b_start(z: u32) -> u32 {
  return p.b_off + (z / p.NB2) * p.b_b1 + ((z % p.NB2) / max(p.b_div, 1u)) * p.b_b2;
}
fn c_start(z: u32) -> u32 { return p.c_off + (z / p.NB2) * p.c_b1 + (z % p.NB2) * p.c_b2; }

// c * tanh(v / c), without overflow for large |v|.
fn soft_cap(v: f32, c: f32) -> f32 {
  let e = exp(-2.0 * abs(v / c));
  return c * sign(v) * (1.0 - e) / (1.0 + e);
}

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> As: array<array<f32, 64>, 16>;        // [k][m]
var<workgroup> Bs: array<array<vec4<f32>, 16>, 16>;  // [k][n / 4]

// acc[i] = row (lid.y + 16 i), columns 4 lid.x .. 4 lid.x + 3 of the tile. Constant indices keep
// the accumulators in registers.
var<private> acc: array<vec4<f32>, 4>;

// acc = the 64x64 tile of A·B at workgroup `wg` (each thread 4 rows x 4 adjacent columns).
fn tile_product(wg: vec3u, lid: vec3u, li: u32) {
  let a_base = a_start(wg.z);
  let b_base = b_start(wg.z);
  let m0 = wg.y * TM;
  let n0 = wg.x * TN;
  acc[0] = vec4<f32>(0.0);
  acc[1] = vec4<f32>(0.0);
  acc[2] = vec4<f32>(0.0);
  acc[3] = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    // 256 threads load 64x16 of A and 16x64 of B, 4 elements each (strided operands).
    for (var r = 0u; r < 4u; r++) {
      let e = li + r * 256u;          // 0..1023
      let kk = e % TK;
      let mm = e / TK;
      let gm = m0 + mm;
      let gk = k0 + kk;
      var va = 0.0;
      if (gm < p.M && gk < p.K) { va = A[a_base + gm * p.a_m + gk * p.a_k]; }
      As[kk][mm] = va;
      let nn = e % TN;
      let kb = e / TN;
      let gn = n0 + nn;
      let gkb = k0 + kb;
      var vb = 0.0;
      if (gn < p.N && gkb < p.K) { vb = B[b_base + gkb * p.b_k + gn * p.b_n]; }
      Bs[kb][nn / 4u][nn % 4u] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let b = Bs[kk][lid.x];
      acc[0] = fma(vec4<f32>(As[kk][lid.y]), b, acc[0]);
      acc[1] = fma(vec4<f32>(As[kk][lid.y + 16u]), b, acc[1]);
      acc[2] = fma(vec4<f32>(As[kk][lid.y + 32u]), b, acc[2]);
      acc[3] = fma(vec4<f32>(As[kk][lid.y + 48u]), b, acc[3]);
    }
    workgroupBarrier();
  }
}

fn epilogue_one(b2: u32, c_base: u32, gm: u32, gn: u32, x: f32) {
  if (gm >= p.M || gn >= p.N) { return; }
  var v = x * p.alpha;
  if (p.bias_mode == 1u) { v += bias[gn]; }
  if (p.bias_mode == 2u) { v += bias[b2 * p.N + gn]; }
  let ci = c_base + gm * p.c_m + gn * p.c_n;
  if (p.accum != 0u) { v += C[ci]; }
  if (p.softcap > 0.0) { v = soft_cap(v, p.softcap); }
  let q = gm + p.causal_off;
  if (p.causal != 0u && (gn > q || (p.window != 0u && q - gn >= p.window))) {
    v = bitcast<f32>(0xff800000u);
  }
  C[ci] = v;
}

fn epilogue_row(b2: u32, c_base: u32, gm: u32, n: u32, v: vec4<f32>) {
  epilogue_one(b2, c_base, gm, n, v.x);
  epilogue_one(b2, c_base, gm, n + 1u, v.y);
  epilogue_one(b2, c_base, gm, n + 2u, v.z);
  epilogue_one(b2, c_base, gm, n + 3u, v.w);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  tile_product(wg, lid, li);
  let b2 = wg.z % p.NB2;
  let c_base = c_start(wg.z);
  let m = wg.y * TM + lid.y;
  let n = wg.x * TN + lid.x * 4u;
  epilogue_row(b2, c_base, m, n, acc[0]);
  epilogue_row(b2, c_base, m + 16u, n, acc[1]);
  epilogue_row(b2, c_base, m + 32u, n, acc[2]);
  epilogue_row(b2, c_base, m + 48u, n, acc[3]);
}

// SAE encode, fused: C = A·B + bias (the pre-activation) and Post = activation(C), contiguous
// [M, N] outputs.
@compute @workgroup_size(16, 16)
fn encode(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
          @builtin(local_invocation_index) li: u32) {
  tile_product(wg, lid, li);
  let m = wg.y * TM + lid.y;
  let n = wg.x * TN + lid.x * 4u;
  encode_row(m, n, acc[0]);
  encode_row(m + 16u, n, acc[1]);
  encode_row(m + 32u, n, acc[2]);
  encode_row(m + 48u, n, acc[3]);
}

fn encode_one(gm: u32, gn: u32, x: f32) {
  if (gm >= p.M || gn >= p.N) { return; }
  let v = x * p.alpha + bias[gn];
  let ci = gm * p.N + gn;
  C[ci] = v;
  var post = max(v, 0.0);
  if (p.act == 2u && !(v > aux[gn])) { post = 0.0; }
  if (p.act == 3u && !(aux[ci] > 0.0)) { post = 0.0; }
  Post[ci] = post;
}

fn encode_row(gm: u32, n: u32, v: vec4<f32>) {
  encode_one(gm, n, v.x);
  encode_one(gm, n + 1u, v.y);
  encode_one(gm, n + 2u, v.z);
  encode_one(gm, n + 3u, v.w);
}

// Software adapters (lavapipe): no workgroup memory or barriers (an invocation is one lane of a
// CPU SIMD register, a barrier a coroutine switch, every buffer load a loop over the lanes). A
// 32x32 tile per workgroup of 4x4 invocations, each 8 rows (4 apart) x 8 columns (two groups of 4
// adjacent ones, 16 apart) read straight from A and B: 16 loads per 64 multiply-adds. Rows and
// columns past the end are clamped on load and skipped on store, so the loop has no branches.
var<private> blk: array<vec4<f32>, 16>;   // [row i][column group h] = blk[2 i + h]

fn block_product(wg: vec3u, lid: vec3u) {
  let a_base = a_start(wg.z);
  let b_base = b_start(wg.z);
  let m0 = wg.y * 32u + lid.y;
  let n0 = wg.x * 32u + lid.x * 4u;
  let lm = max(p.M, 1u) - 1u;
  let ln = max(p.N, 1u) - 1u;
  let a0 = a_base + min(m0, lm) * p.a_m;
  let a1 = a_base + min(m0 + 4u, lm) * p.a_m;
  let a2 = a_base + min(m0 + 8u, lm) * p.a_m;
  let a3 = a_base + min(m0 + 12u, lm) * p.a_m;
  let a4 = a_base + min(m0 + 16u, lm) * p.a_m;
  let a5 = a_base + min(m0 + 20u, lm) * p.a_m;
  let a6 = a_base + min(m0 + 24u, lm) * p.a_m;
  let a7 = a_base + min(m0 + 28u, lm) * p.a_m;
  let c0 = b_base + min(n0, ln) * p.b_n;
  let c1 = b_base + min(n0 + 1u, ln) * p.b_n;
  let c2 = b_base + min(n0 + 2u, ln) * p.b_n;
  let c3 = b_base + min(n0 + 3u, ln) * p.b_n;
  let c4 = b_base + min(n0 + 16u, ln) * p.b_n;
  let c5 = b_base + min(n0 + 17u, ln) * p.b_n;
  let c6 = b_base + min(n0 + 18u, ln) * p.b_n;
  let c7 = b_base + min(n0 + 19u, ln) * p.b_n;
  var s00 = vec4<f32>(0.0); var s01 = vec4<f32>(0.0); var s10 = vec4<f32>(0.0); var s11 = vec4<f32>(0.0);
  var s20 = vec4<f32>(0.0); var s21 = vec4<f32>(0.0); var s30 = vec4<f32>(0.0); var s31 = vec4<f32>(0.0);
  var s40 = vec4<f32>(0.0); var s41 = vec4<f32>(0.0); var s50 = vec4<f32>(0.0); var s51 = vec4<f32>(0.0);
  var s60 = vec4<f32>(0.0); var s61 = vec4<f32>(0.0); var s70 = vec4<f32>(0.0); var s71 = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k++) {
    let ka = k * p.a_k;
    let kb = k * p.b_k;
    let u = vec4<f32>(B[c0 + kb], B[c1 + kb], B[c2 + kb], B[c3 + kb]);
    let v = vec4<f32>(B[c4 + kb], B[c5 + kb], B[c6 + kb], B[c7 + kb]);
    let x0 = vec4<f32>(A[a0 + ka]); let x1 = vec4<f32>(A[a1 + ka]);
    let x2 = vec4<f32>(A[a2 + ka]); let x3 = vec4<f32>(A[a3 + ka]);
    let x4 = vec4<f32>(A[a4 + ka]); let x5 = vec4<f32>(A[a5 + ka]);
    let x6 = vec4<f32>(A[a6 + ka]); let x7 = vec4<f32>(A[a7 + ka]);
    s00 = fma(x0, u, s00); s01 = fma(x0, v, s01); s10 = fma(x1, u, s10); s11 = fma(x1, v, s11);
    s20 = fma(x2, u, s20); s21 = fma(x2, v, s21); s30 = fma(x3, u, s30); s31 = fma(x3, v, s31);
    s40 = fma(x4, u, s40); s41 = fma(x4, v, s41); s50 = fma(x5, u, s50); s51 = fma(x5, v, s51);
    s60 = fma(x6, u, s60); s61 = fma(x6, v, s61); s70 = fma(x7, u, s70); s71 = fma(x7, v, s71);
  }
  blk[0] = s00; blk[1] = s01; blk[2] = s10; blk[3] = s11; blk[4] = s20; blk[5] = s21;
  blk[6] = s30; blk[7] = s31; blk[8] = s40; blk[9] = s41; blk[10] = s50; blk[11] = s51;
  blk[12] = s60; blk[13] = s61; blk[14] = s70; blk[15] = s71;
}

// Row block i of the 8x8 block: rows m + 4 (i / 2), columns n + 16 (i % 2) .. + 3.
@compute @workgroup_size(4, 4)
fn main_cpu(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  block_product(wg, lid);
  let b2 = wg.z % p.NB2;
  let c_base = c_start(wg.z);
  let m = wg.y * 32u + lid.y;
  let n = wg.x * 32u + lid.x * 4u;
  for (var i = 0u; i < 16u; i++) {
    epilogue_row(b2, c_base, m + 4u * (i / 2u), n + 16u * (i % 2u), blk[i]);
  }
}

@compute @workgroup_size(4, 4)
fn encode_cpu(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  block_product(wg, lid);
  let m = wg.y * 32u + lid.y;
  let n = wg.x * 32u + lid.x * 4u;
  for (var i = 0u; i < 16u; i++) { encode_row(m + 4u * (i / 2u), n + 16u * (i % 2u), blk[i]); }
}
