// Batched, strided matrix multiply with a fused epilogue:
//   C[z][m][n] = alpha * sum_k A[z][m][k] * B[z][k][n] + bias[n] (+ C[z][m][n] if ACCUM), causal -inf.
// z = b1 * NB2 + b2 walks two batch levels, each operand with its own strides, so per-head attention
// (q·kᵀ, pattern·v) reads TransformerLens's [batch, pos, head, d_head] layout in place.
// 64x64 output tile per workgroup, 4x4 per thread, 16-deep K tiles in workgroup memory.

struct P {
  M: u32, N: u32, K: u32, NB2: u32,
  a_off: u32, a_b1: u32, a_b2: u32, a_m: u32,
  a_k: u32, b_off: u32, b_b1: u32, b_b2: u32,
  b_k: u32, b_n: u32, c_off: u32, c_b1: u32,
  c_b2: u32, c_m: u32, c_n: u32, bias_mode: u32,   // 0 none, 1 bias[n], 2 bias[b2 * N + n]
  alpha: f32, causal: u32, causal_off: u32, accum: u32,
  act: u32, b_div: u32, _p1: u32, _p2: u32,   // act (encode): 1 relu, 2 jumprelu(aux[n]), 3 gated(aux[m,n] > 0);
                                            // b_div: B's inner batch index is b2 / b_div (grouped-query attention)
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// SAE encode only: the activation's output and its per-column threshold / per-element gate.
@group(0) @binding(5) var<storage, read_write> Post: array<f32>;
@group(0) @binding(6) var<storage, read> aux: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> As: array<array<f32, 64>, 16>;  // [k][m]
var<workgroup> Bs: array<array<f32, 64>, 16>;  // [k][n]

var<private> acc: array<array<f32, 4>, 4>;

// acc = the 64x64 tile of A·B at workgroup `wg` (each thread its 4x4 block).
fn tile_product(wg: vec3u, lid: vec3u, li: u32) {
  let z = wg.z;
  let b1 = z / p.NB2;
  let b2 = z % p.NB2;
  let a_base = p.a_off + b1 * p.a_b1 + b2 * p.a_b2;
  let b_base = p.b_off + b1 * p.b_b1 + (b2 / max(p.b_div, 1u)) * p.b_b2;
  let m0 = wg.y * TM;
  let n0 = wg.x * TN;
  for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i][j] = 0.0; } }
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    // 256 threads load 64x16 of A and 16x64 of B, 4 elements each.
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
      Bs[kb][nn] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { av[i] = As[kk][lid.y + i * 16u]; }
      for (var j = 0u; j < 4u; j++) { bv[j] = Bs[kk][lid.x + j * 16u]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(av[i], bv[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  tile_product(wg, lid, li);
  let b1 = wg.z / p.NB2;
  let b2 = wg.z % p.NB2;
  let c_base = p.c_off + b1 * p.c_b1 + b2 * p.c_b2;
  for (var i = 0u; i < 4u; i++) {
    let gm = wg.y * TM + lid.y + i * 16u;
    if (gm >= p.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let gn = wg.x * TN + lid.x + j * 16u;
      if (gn >= p.N) { continue; }
      var v = acc[i][j] * p.alpha;
      if (p.bias_mode == 1u) { v += bias[gn]; }
      if (p.bias_mode == 2u) { v += bias[b2 * p.N + gn]; }
      let ci = c_base + gm * p.c_m + gn * p.c_n;
      if (p.accum != 0u) { v += C[ci]; }
      if (p.causal != 0u && gn > gm + p.causal_off) { v = bitcast<f32>(0xff800000u); }
      C[ci] = v;
    }
  }
}

// SAE encode, fused: C = A·B + bias (the pre-activation) and Post = activation(C), contiguous
// [M, N] outputs.
@compute @workgroup_size(16, 16)
fn encode(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
          @builtin(local_invocation_index) li: u32) {
  tile_product(wg, lid, li);
  for (var i = 0u; i < 4u; i++) {
    let gm = wg.y * TM + lid.y + i * 16u;
    if (gm >= p.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let gn = wg.x * TN + lid.x + j * 16u;
      if (gn >= p.N) { continue; }
      let v = acc[i][j] * p.alpha + bias[gn];
      let ci = gm * p.N + gn;
      C[ci] = v;
      var post = max(v, 0.0);
      if (p.act == 2u && !(v > aux[gn])) { post = 0.0; }
      if (p.act == 3u && !(aux[ci] > 0.0)) { post = 0.0; }
      Post[ci] = post;
    }
  }
}
