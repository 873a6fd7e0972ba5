// Fast dense layer: C[M, N] = A[M, K] · B[K, N] + bias[N], row-major and contiguous, with fused
// epilogues: D = act(C) (MLP pre -> post) or D = R + C (residual add), so the hook value C and
// the next value D come from one pass over the tile.
// 128x128 output tile per workgroup of 256 threads, each an 8x8 register block read as vec4 from
// workgroup memory (two 4-wide groups 64 apart, conflict-free); K in steps of 8; vec4 loads from
// global memory. Bounds are checked only when loading tiles and storing results, never in the
// inner loop. Requires K % 4 == 0 and B's row stride (LDB) % 4 == 0 (the host pads B's columns).
// Specialisation (prepended consts): ACT (0 none, else the activation code of elementwise.wgsl,
// written to D), RESID (D = R + C).

struct P { M: u32, N: u32, K: u32, LDB: u32, has_bias: u32, _a: u32, _b: u32, _c: u32 }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> D: array<f32>;
@group(0) @binding(6) var<storage, read> R: array<f32>;

const BM: u32 = 128u;
const BN: u32 = 128u;
const BK: u32 = 8u;

var<workgroup> As: array<vec4<f32>, 256>;  // [k][m / 4]: BK x BM
var<workgroup> Bs: array<vec4<f32>, 256>;  // [k][n / 4]: BK x BN

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn erf_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}

fn tanh_(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

fn act(x: f32) -> f32 {
  switch ACT {
    case 1u: { return 0.5 * x * (1.0 + tanh_(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))); }
    case 2u: { return 0.5 * x * (1.0 + erf_(x * 0.7071067811865476)); }
    case 3u: { return max(x, 0.0); }
    case 4u: { return x / (1.0 + exp(-x)); }
    case 5u: { return 0.5 * x * (1.0 + tanh_(x * 0.7978845608 * (1.0 + 0.044715 * x * x))); }
    case 6u: { return x / (1.0 + exp(-1.702 * x)); }
    default: { return x; }
  }
}

fn store(m: u32, n: u32, v: f32) {
  if (m >= p.M || n >= p.N) { return; }
  let i = m * p.N + n;
  var c = v;
  if (p.has_bias != 0u) { c += bias[n]; }
  C[i] = c;
  if (ACT != 0u) { D[i] = act(c); }
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
  let K4 = p.K / 4u;
  let LDB4 = p.LDB / 4u;
  // Tile loads: A 128x8 as 256 vec4 along K (row li / 2, k quad li % 2); B 8x128 as 256 vec4
  // along N (k row li / 32, n quad li % 32).
  let a_row = m0 + li / 2u;
  let a_kq = li % 2u;
  let b_k = li / 32u;
  let b_nq = n0 / 4u + li % 32u;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    var a = vec4<f32>(0.0);
    let kq = k0 / 4u + a_kq;
    if (a_row < p.M && kq < K4) { a = A[a_row * K4 + kq]; }
    let mq = (li / 2u) / 4u;
    let mc = (li / 2u) % 4u;
    let kb = a_kq * 4u;
    As[(kb + 0u) * 32u + mq][mc] = a.x;
    As[(kb + 1u) * 32u + mq][mc] = a.y;
    As[(kb + 2u) * 32u + mq][mc] = a.z;
    As[(kb + 3u) * 32u + mq][mc] = a.w;
    var b = vec4<f32>(0.0);
    let bk = k0 + b_k;
    if (bk < p.K && b_nq < LDB4) { b = B[bk * LDB4 + b_nq]; }
    Bs[b_k * 32u + li % 32u] = b;
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
  // Rows: ty*4 + r (r < 4) and 64 + ty*4 + (r - 4); columns: tx*4 + c and 64 + tx*4 + c.
  for (var r = 0u; r < 8u; r++) {
    let m = m0 + select(ty * 4u + r, 64u + ty * 4u + r - 4u, r >= 4u);
    let lo = acc[2u * r];
    let hi = acc[2u * r + 1u];
    let n = n0 + tx * 4u;
    store(m, n, lo.x);
    store(m, n + 1u, lo.y);
    store(m, n + 2u, lo.z);
    store(m, n + 3u, lo.w);
    store(m, n + 64u, hi.x);
    store(m, n + 65u, hi.y);
    store(m, n + 66u, hi.z);
    store(m, n + 67u, hi.w);
  }
}
