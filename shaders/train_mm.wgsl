// SAE training: the one matrix product the trainer needs, with strided operands so that every
// transpose of the forward and backward pass (x·W_enc, acts·W_dec, g·W_decᵀ, xᵀ·g, actsᵀ·g) is the
// same kernel: C[m, n] = (acc ? C[m, n] : 0) + Σ_k A(m, k) B(k, n) (+ bias[n]), where
// A(m, k) = a[aoff + m am + k ak] and B(k, n) = b[boff + k bk + n bn]. One output per invocation.

struct P {
  M: u32, N: u32, K: u32, acc: u32,
  aoff: u32, am: u32, ak: u32, boff: u32,
  bk: u32, bn: u32, coff: u32, biasoff: u32,
  hasbias: u32, _a: u32, _b: u32, _c: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

@compute @workgroup_size(8, 8)
fn mm(@builtin(global_invocation_id) g: vec3u) {
  let n = g.x;
  let m = g.y + g.z * 65535u * 8u;
  if (m >= p.M || n >= p.N) { return; }
  var s = 0.0;
  var ai = p.aoff + m * p.am;
  var bi = p.boff + n * p.bn;
  for (var k = 0u; k < p.K; k++) {
    s += a[ai] * b[bi];
    ai += p.ak;
    bi += p.bk;
  }
  if (p.hasbias != 0u) { s += bias[p.biasoff + n]; }
  let ci = p.coff + m * p.N + n;
  if (p.acc != 0u) { s += c[ci]; }
  c[ci] = s;
}

// Batch gather (the activation store's shuffle): row m of the batch is row idx[m] of the store,
// times the normalisation scale: c[coff + m N + n] = a[aoff + idx[boff + m] N + n] · scale, with
// the indices stored as f32 (exact below 2^24 rows) and the scale's f32 bits in `_a`.
@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let e = g.x + g.y * nw.x * 64u;
  if (e >= p.M * p.N) { return; }
  let m = e / p.N;
  let n = e % p.N;
  let src = u32(b[p.boff + m]);
  c[p.coff + e] = a[p.aoff + src * p.N + n] * bitcast<f32>(p._a);
}
