// Fast dense layer: C[M, N] = A[M, K] · B[K, N] + bias[N], row-major and contiguous, with fused
// epilogues: D = act(C) (MLP pre -> post) or D = R + C (residual add), so the hook value C and
// the next value D come from one pass over the tile.
// 128x128 output tile per workgroup of 256 threads, each an 8x8 register block read as vec4 from
// workgroup memory (two 4-wide groups 64 apart, conflict-free); K in steps of 8; vec4 loads from
// global memory. Bounds are checked only when loading tiles and storing results, never in the
// inner loop. Requires K % 4 == 0 and B's row stride (LDB) % 4 == 0 (the host pads B's columns).
// Specialisation (prepended consts and aliases): WT (the weights' element type: f32, or f16 with
// `shader-f16`, converted to f32 on load so accumulation stays f32), BK (K step: 8 or 16), ACT (0 none, else 1 + the activation
// code of elementwise.wgsl, written to D), RESID (D = R + C), GATE (SAE encode with ReLU: 1 JumpReLU,
// D = 0 unless C > R[n] (the threshold); 2 gated, D = 0 unless R[m, n] > 0 (the gate)), SPLIT
// (three outputs side by side, as a fused q/k/v projection: columns [0, n1) to C [M, n1],
// [n1, n1 + n2) to D [M, n2], the rest to E3 [M, N - n1 - n2]; no other epilogue), TRANS (main and
// main64 only: B is read transposed, C = A · Bᵀ for the backward of a dense layer: output column n
// is row n of the weight [N, LDB], read as vec4 along k from column boff; K, LDB and boff multiples
// of 4). Without TRANS, B's columns are read from boff on (a column block of a joint weight).
// SPLITK (main and main64): split-K, for outputs of too few tiles to fill a large GPU: workgroup
// z sums k in [z kc, (z + 1) kc) only and writes its raw partial product to C as slice z of
// [ks, M, N]; splitk_sum then adds the ks slices (bound as S) and stores through the epilogue.
// kc is a multiple of 16; kc 0 means all of K.

// Uniform block P (bound as p): LINEAR_P in src/gpu/kernels/linear.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: array<vec4<WT>>;  // WT: f32, or f16 weights (f32 math)
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> D: array<f32>;
@group(0) @binding(6) var<storage, read> R: array<f32>;
@group(0) @binding(7) var<storage, read_write> E3: array<f32>;
@group(0) @binding(8) var<storage, read> S: array<f32>;  // splitk_sum: the partial products
@group(0) @binding(9) var BT: texture_2d<f32>;  // matvec_tex: the weight as matvec_pack wrote it
@group(0) @binding(10) var BTW: texture_storage_2d<rgba32float, write>;  // matvec_pack's output

const BM: u32 = 128u;
const BN: u32 = 128u;

var<workgroup> As: array<vec4<f32>, 512>;  // [k][m / 4]: BK x BM (BK <= 16)
var<workgroup> Bs: array<vec4<f32>, 512>;  // [k][n / 4]: BK x BN

// The k range of this workgroup: [kBeg, kEnd); its slice of the split-K partials.
var<private> kBeg: u32;
var<private> kEnd: u32;
var<private> slice: u32;

fn kRange(z: u32) {
  let kc = select(p.kc, p.K, p.kc == 0u);
  slice = z;
  kBeg = min(p.K, z * kc);
  kEnd = min(p.K, kBeg + kc);
}

fn store(m: u32, n: u32, v: f32) {
  if (m >= p.M || n >= p.N) { return; }
  let i = m * p.N + n;
  if (SPLITK) {
    C[slice * p.M * p.N + i] = v;
    return;
  }
  var c = v;
  if (p.has_bias != 0u) { c += bias[n]; }
  if (SPLIT) {
    let n12 = p.n1 + p.n2;
    if (n < p.n1) { C[m * p.n1 + n] = c; }
    else if (n < n12) { D[m * p.n2 + n - p.n1] = c; }
    else { E3[m * (p.N - n12) + n - n12] = c; }
    return;
  }
  C[i] = c;
  if (ACT != 0u) {
    var d = activation(c, ACT - 1u);
    if (GATE == 1u && !(c > R[n])) { d = 0.0; }
    if (GATE == 2u && !(R[i] > 0.0)) { d = 0.0; }
    D[i] = d;
  }
  if (RESID) { D[i] = R[i] + c; }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tx = li % 16u;
  let ty = li / 16u;
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  var acc: array<vec4<f32>, 16>;   // rows r = 0..7 -> acc[2r] cols 0..3, acc[2r+1] cols 64..67
  for (var i = 0u; i < 16u; i++) { acc[i] = vec4<f32>(0.0); }
  kRange(wg.z);
  let K4 = p.K / 4u;
  let KE4 = kEnd / 4u;
  let LDB4 = p.LDB / 4u;
  // Tile loads, BK / 8 vec4 per thread per operand: A 128 x BK as vec4 along K (row e / (BK/4),
  // k quad e % (BK/4)); B BK x 128 as vec4 along N (k row e / 32, n quad e % 32).
  for (var k0 = kBeg; k0 < kEnd; k0 += BK) {
    for (var t = 0u; t < BK / 8u; t++) {
      let e = li + t * 256u;
      let am = e / (BK / 4u);
      let akq = e % (BK / 4u);
      var a = vec4<f32>(0.0);
      let kq = k0 / 4u + akq;
      if (m0 + am < p.M && kq < KE4) { a = A[(m0 + am) * K4 + kq]; }
      let mq = am / 4u;
      let mc = am % 4u;
      let kb = akq * 4u;
      As[(kb + 0u) * 32u + mq][mc] = a.x;
      As[(kb + 1u) * 32u + mq][mc] = a.y;
      As[(kb + 2u) * 32u + mq][mc] = a.z;
      As[(kb + 3u) * 32u + mq][mc] = a.w;
      if (TRANS) {
        // B^T: row n0 + bn of the weight, k quad bkq, spread over four k rows as A is.
        let bn = e / (BK / 4u);
        let bkq = e % (BK / 4u);
        var b = vec4<f32>(0.0);
        let kq = k0 / 4u + bkq;
        if (n0 + bn < p.N && kq < KE4) { b = vec4<f32>(B[(n0 + bn) * LDB4 + p.boff / 4u + kq]); }
        let nq = bn / 4u;
        let nc = bn % 4u;
        let kb = bkq * 4u;
        Bs[(kb + 0u) * 32u + nq][nc] = b.x;
        Bs[(kb + 1u) * 32u + nq][nc] = b.y;
        Bs[(kb + 2u) * 32u + nq][nc] = b.z;
        Bs[(kb + 3u) * 32u + nq][nc] = b.w;
      } else {
        let bk = e / 32u;
        let bnq = n0 / 4u + e % 32u;
        var b = vec4<f32>(0.0);
        if (k0 + bk < kEnd && bnq < LDB4 - p.boff / 4u) {
          b = vec4<f32>(B[(k0 + bk) * LDB4 + p.boff / 4u + bnq]);
        }
        Bs[bk * 32u + e % 32u] = b;
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let a0 = As[kk * 32u + ty];
      let a1 = As[kk * 32u + 16u + ty];
      let b0 = Bs[kk * 32u + tx];
      let b1 = Bs[kk * 32u + 16u + tx];
      acc[0] = fma(vec4<f32>(a0.x), b0, acc[0]);
      acc[1] = fma(vec4<f32>(a0.x), b1, acc[1]);
      acc[2] = fma(vec4<f32>(a0.y), b0, acc[2]);
      acc[3] = fma(vec4<f32>(a0.y), b1, acc[3]);
      acc[4] = fma(vec4<f32>(a0.z), b0, acc[4]);
      acc[5] = fma(vec4<f32>(a0.z), b1, acc[5]);
      acc[6] = fma(vec4<f32>(a0.w), b0, acc[6]);
      acc[7] = fma(vec4<f32>(a0.w), b1, acc[7]);
      acc[8] = fma(vec4<f32>(a1.x), b0, acc[8]);
      acc[9] = fma(vec4<f32>(a1.x), b1, acc[9]);
      acc[10] = fma(vec4<f32>(a1.y), b0, acc[10]);
      acc[11] = fma(vec4<f32>(a1.y), b1, acc[11]);
      acc[12] = fma(vec4<f32>(a1.z), b0, acc[12]);
      acc[13] = fma(vec4<f32>(a1.z), b1, acc[13]);
      acc[14] = fma(vec4<f32>(a1.w), b0, acc[14]);
      acc[15] = fma(vec4<f32>(a1.w), b1, acc[15]);
    }
    workgroupBarrier();
  }
  // Rows ty*4 + r and 64 + ty*4 + r; columns tx*4 + c and 64 + tx*4 + c. Constant indices keep
  // the accumulators in registers.
  let mA = m0 + ty * 4u;
  let mB = m0 + 64u + ty * 4u;
  let n = n0 + tx * 4u;
  store4(mA, n, acc[0], acc[1]);
  store4(mA + 1u, n, acc[2], acc[3]);
  store4(mA + 2u, n, acc[4], acc[5]);
  store4(mA + 3u, n, acc[6], acc[7]);
  store4(mB, n, acc[8], acc[9]);
  store4(mB + 1u, n, acc[10], acc[11]);
  store4(mB + 2u, n, acc[12], acc[13]);
  store4(mB + 3u, n, acc[14], acc[15]);
}

fn store4(m: u32, n: u32, lo: vec4<f32>, hi: vec4<f32>) {
  store(m, n, lo.x);
  store(m, n + 1u, lo.y);
  store(m, n + 2u, lo.z);
  store(m, n + 3u, lo.w);
  store(m, n + 64u, hi.x);
  store(m, n + 65u, hi.y);
  store(m, n + 66u, hi.z);
  store(m, n + 67u, hi.w);
}

// Smaller tile for few rows (M <= 512): 64x64 per workgroup, each thread 4 rows x 4 adjacent
// columns, K in steps of 16: four times the workgroups of `main` on a short input.
var<workgroup> As64: array<array<f32, 64>, 16>;         // [k][m]
var<workgroup> Bs64: array<array<vec4<f32>, 16>, 16>;   // [k][n / 4]

@compute @workgroup_size(256)
fn main64(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tx = li % 16u;
  let ty = li / 16u;
  let m0 = wg.y * 64u;
  let n0 = wg.x * 64u;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  kRange(wg.z);
  let K4 = p.K / 4u;
  let KE4 = kEnd / 4u;
  let LDB4 = p.LDB / 4u;
  let am = li / 4u;
  let akq = li % 4u;
  let bk = li / 16u;
  let bnq = n0 / 4u + li % 16u;
  let boff4 = p.boff / 4u;
  for (var k0 = kBeg; k0 < kEnd; k0 += 16u) {
    var a = vec4<f32>(0.0);
    let kq = k0 / 4u + akq;
    if (m0 + am < p.M && kq < KE4) { a = A[(m0 + am) * K4 + kq]; }
    As64[akq * 4u][am] = a.x;
    As64[akq * 4u + 1u][am] = a.y;
    As64[akq * 4u + 2u][am] = a.z;
    As64[akq * 4u + 3u][am] = a.w;
    if (TRANS) {
      // B^T: row n0 + li / 4 of the weight, k quad li % 4 (as A's element am, akq).
      var b = vec4<f32>(0.0);
      if (n0 + am < p.N && kq < KE4) { b = vec4<f32>(B[(n0 + am) * LDB4 + boff4 + kq]); }
      Bs64[akq * 4u][am / 4u][am % 4u] = b.x;
      Bs64[akq * 4u + 1u][am / 4u][am % 4u] = b.y;
      Bs64[akq * 4u + 2u][am / 4u][am % 4u] = b.z;
      Bs64[akq * 4u + 3u][am / 4u][am % 4u] = b.w;
    } else {
      var b = vec4<f32>(0.0);
      if (k0 + bk < kEnd && bnq < LDB4 - boff4) { b = vec4<f32>(B[(k0 + bk) * LDB4 + boff4 + bnq]); }
      Bs64[bk][li % 16u] = b;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let bv = Bs64[kk][tx];
      acc0 = fma(vec4<f32>(As64[kk][ty]), bv, acc0);
      acc1 = fma(vec4<f32>(As64[kk][ty + 16u]), bv, acc1);
      acc2 = fma(vec4<f32>(As64[kk][ty + 32u]), bv, acc2);
      acc3 = fma(vec4<f32>(As64[kk][ty + 48u]), bv, acc3);
    }
    workgroupBarrier();
  }
  let n = n0 + tx * 4u;
  store_q(m0 + ty, n, acc0);
  store_q(m0 + ty + 16u, n, acc1);
  store_q(m0 + ty + 32u, n, acc2);
  store_q(m0 + ty + 48u, n, acc3);
}

fn store_q(m: u32, n: u32, v: vec4<f32>) {
  store(m, n, v.x);
  store(m, n + 1u, v.y);
  store(m, n + 2u, v.z);
  store(m, n + 3u, v.w);
}

// Split-K: C (and the epilogue's outputs) from the sum of the ks partial products in S, one
// element an invocation; rows wg.y + 65535 wg.z.
@compute @workgroup_size(256)
fn splitk_sum(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let n = wg.x * 256u + li;
  let m = wg.y + wg.z * 65535u;
  if (n >= p.N || m >= p.M) { return; }
  let i = m * p.N + n;
  let mn = p.M * p.N;
  var v = 0.0;
  for (var z = 0u; z < p.ks; z++) { v += S[z * mn + i]; }
  store(m, n, v);
}

// One row (M = 1, as in generation with a KV cache): a matrix-vector product. Each workgroup makes
// 64 columns; its 256 threads are 16 column quads x 16 slices of K, summed in workgroup memory.
var<workgroup> part: array<array<vec4<f32>, 16>, 16>;   // [k slice][column quad]

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let cq = li % 16u;
  let ks = li / 16u;
  let LDB4 = p.LDB / 4u;
  let nq = wg.x * 16u + cq;
  let row = wg.y;
  let K4 = p.K / 4u;
  var acc = vec4<f32>(0.0);
  if (nq < LDB4) {
    // k runs over quads of x: thread slice ks takes quads ks, ks + 16, ...
    for (var kq = ks; kq < K4; kq += 16u) {
      let xv = A[row * K4 + kq];
      let k = kq * 4u;
      acc = fma(vec4<f32>(xv.x), vec4<f32>(B[k * LDB4 + nq]), acc);
      acc = fma(vec4<f32>(xv.y), vec4<f32>(B[(k + 1u) * LDB4 + nq]), acc);
      acc = fma(vec4<f32>(xv.z), vec4<f32>(B[(k + 2u) * LDB4 + nq]), acc);
      acc = fma(vec4<f32>(xv.w), vec4<f32>(B[(k + 3u) * LDB4 + nq]), acc);
    }
  }
  part[ks][cq] = acc;
  workgroupBarrier();
  if (ks == 0u) {
    var s = part[0][cq];
    for (var j = 1u; j < 16u; j++) { s += part[j][cq]; }
    store_q(row, nq * 4u, s);
  }
}

// The matrix-vector product for software adapters (lavapipe; see the linear_cpu kernels): each
// invocation one column quad over all of K, no workgroup memory or barrier. Quads past the end
// are clamped on load (their lanes store the last quad's values again).
@compute @workgroup_size(64)
fn matvec_cpu(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let LDB4 = p.LDB / 4u;
  let K4 = p.K / 4u;
  let nq = min(wg.x * 64u + li, LDB4 - 1u);
  let row = wg.y;
  var acc = vec4<f32>(0.0);
  for (var kq = 0u; kq < K4; kq++) {
    let k = kq * 4u * LDB4 + nq;
    let b0 = vec4<f32>(B[k]);
    let b1 = vec4<f32>(B[k + LDB4]);
    let b2 = vec4<f32>(B[k + 2u * LDB4]);
    let b3 = vec4<f32>(B[k + 3u * LDB4]);
    let xv = A[row * K4 + kq];
    acc = fma(vec4(xv.w), b3, fma(vec4(xv.z), b2, fma(vec4(xv.y), b1, fma(vec4(xv.x), b0, acc))));
  }
  store_q(row, nq * 4u, acc);
}

// The matrix-vector product for software adapters from a copy of the weight in a texture (see
// matvec_pack): lavapipe fetches texels with vector gathers, while a storage-buffer load there is
// a loop over the SIMD lanes with a branch and a bounds check per element (2.3-2.6x slower on the
// unembedding, bench/RESULTS.md). One output column an invocation, all of K; columns past the end
// are clamped on load (their lanes store the last column's value again).
@compute @workgroup_size(64)
fn matvec_tex(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let K4 = p.K / 4u;
  let n = min(wg.x * 64u + li, p.N - 1u);
  let x0 = i32(K4 * (n % p.per));
  let y = i32(n / p.per);
  let row = wg.y;
  var acc = vec4<f32>(0.0);
  for (var kq = 0u; kq < K4; kq++) {
    acc = fma(A[row * K4 + kq], textureLoad(BT, vec2<i32>(x0 + i32(kq), y), 0), acc);
  }
  store(row, n, (acc.x + acc.y) + (acc.z + acc.w));
}

// Packs the weight B [K, LDB] for matvec_tex into BTW [K / 4 per, ceil(LDB / per)]: texel
// (kq + K/4 (n % per), n / per) holds rows 4kq .. 4kq + 3 of column n, so that one column's K
// values lie side by side in one texture row (`per` columns a row, within the texture width
// limit). Texels past the last column are zero.
@compute @workgroup_size(64)
fn matvec_pack(@builtin(global_invocation_id) g: vec3u) {
  let K4 = p.K / 4u;
  if (g.x >= K4 * p.per) { return; }
  let n = g.y * p.per + g.x / K4;
  let k = (g.x % K4) * 4u;
  var v = vec4<f32>();
  if (n < p.LDB) {
    let LDB4 = p.LDB / 4u;
    let q = n / 4u;
    let j = n % 4u;
    v = vec4<f32>(f32(B[k * LDB4 + q][j]), f32(B[(k + 1u) * LDB4 + q][j]),
      f32(B[(k + 2u) * LDB4 + q][j]), f32(B[(k + 3u) * LDB4 + q][j]));
  }
  textureStore(BTW, vec2<i32>(i32(g.x), i32(g.y)), v);
}
