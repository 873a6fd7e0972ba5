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

var<workgroup> As: array<array<f32, 64>, 16>;        // [k][m]
var<workgroup> Bs: array<array<vec4<f32>, 16>, 16>;  // [k][n / 4]

// acc[i] = row (lid.y + 16 i), columns 4 lid.x .. 4 lid.x + 3 of the tile. Constant indices keep
// the accumulators in registers.
var<private> acc: array<vec4<f32>, 4>;

// acc = the 64x64 tile of A·B at workgroup `wg` (each thread 4 rows x 4 adjacent columns).
fn tile_product(wg: vec3u, lid: vec3u, li: u32) {
  let z = wg.z;
  let b1 = z / p.NB2;
  let b2 = z % p.NB2;
  let a_base = p.a_off + b1 * p.a_b1 + b2 * p.a_b2;
  let b_base = p.b_off + b1 * p.b_b1 + (b2 / max(p.b_div, 1u)) * p.b_b2;
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
  if (p.causal != 0u && gn > gm + p.causal_off) { v = bitcast<f32>(0xff800000u); }
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
  let b1 = wg.z / p.NB2;
  let b2 = wg.z % p.NB2;
  let c_base = p.c_off + b1 * p.c_b1 + b2 * p.c_b2;
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
// CPU SIMD register, a barrier a coroutine switch). A 16x16 tile per workgroup of 4x4 invocations,
// each 4 rows (4 apart) x 4 adjacent columns read straight from A and B; rows and columns past
// the end are clamped on load and skipped on store, so the loop has no branches.
fn block_product(wg: vec3u, lid: vec3u) {
  let b1 = wg.z / p.NB2;
  let b2 = wg.z % p.NB2;
  let a_base = p.a_off + b1 * p.a_b1 + b2 * p.a_b2;
  let b_base = p.b_off + b1 * p.b_b1 + (b2 / max(p.b_div, 1u)) * p.b_b2;
  let m0 = wg.y * 16u + lid.y;
  let n0 = wg.x * 16u + lid.x * 4u;
  let last_m = max(p.M, 1u) - 1u;
  let last_n = max(p.N, 1u) - 1u;
  let a0 = a_base + min(m0, last_m) * p.a_m;
  let a1 = a_base + min(m0 + 4u, last_m) * p.a_m;
  let a2 = a_base + min(m0 + 8u, last_m) * p.a_m;
  let a3 = a_base + min(m0 + 12u, last_m) * p.a_m;
  let c0 = b_base + min(n0, last_n) * p.b_n;
  let c1 = b_base + min(n0 + 1u, last_n) * p.b_n;
  let c2 = b_base + min(n0 + 2u, last_n) * p.b_n;
  let c3 = b_base + min(n0 + 3u, last_n) * p.b_n;
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  var s3 = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k++) {
    let ka = k * p.a_k;
    let kb = k * p.b_k;
    let b = vec4<f32>(B[c0 + kb], B[c1 + kb], B[c2 + kb], B[c3 + kb]);
    let x0 = A[a0 + ka];
    let x1 = A[a1 + ka];
    let x2 = A[a2 + ka];
    let x3 = A[a3 + ka];
    s0 = fma(vec4<f32>(x0), b, s0);
    s1 = fma(vec4<f32>(x1), b, s1);
    s2 = fma(vec4<f32>(x2), b, s2);
    s3 = fma(vec4<f32>(x3), b, s3);
  }
  acc[0] = s0;
  acc[1] = s1;
  acc[2] = s2;
  acc[3] = s3;
}

@compute @workgroup_size(4, 4)
fn main_cpu(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  block_product(wg, lid);
  let b1 = wg.z / p.NB2;
  let b2 = wg.z % p.NB2;
  let c_base = p.c_off + b1 * p.c_b1 + b2 * p.c_b2;
  let m = wg.y * 16u + lid.y;
  let n = wg.x * 16u + lid.x * 4u;
  epilogue_row(b2, c_base, m, n, acc[0]);
  epilogue_row(b2, c_base, m + 4u, n, acc[1]);
  epilogue_row(b2, c_base, m + 8u, n, acc[2]);
  epilogue_row(b2, c_base, m + 12u, n, acc[3]);
}

@compute @workgroup_size(4, 4)
fn encode_cpu(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  block_product(wg, lid);
  let m = wg.y * 16u + lid.y;
  let n = wg.x * 16u + lid.x * 4u;
  encode_row(m, n, acc[0]);
  encode_row(m + 4u, n, acc[1]);
  encode_row(m + 8u, n, acc[2]);
  encode_row(m + 12u, n, acc[3]);
}
