// Elementwise kernels. Index space is 2D-folded so tensors above 65535*256 elements fit one dispatch.

// Uniform block P (bound as p): ELEMENTWISE_P in src/gpu/kernels/elementwise.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read> c: array<f32>;

fn idx(g: vec3u, nw: vec3u) -> u32 {
  return g.x + g.y * nw.x * 256u;
}

@compute @workgroup_size(256)
fn binary(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(g, nw);
  if (i >= p.n) { return; }
  let x = a[i];
  // Same shape: no modulo (a vector integer division is a scalar loop on a software adapter).
  var y: f32;
  if (p.m == p.n) { y = b[i]; } else { y = b[i % p.m]; }
  var r = x;
  switch p.op {
    case 0u: { r = x + y; }
    case 1u: { r = x - y; }
    case 2u: { r = x * y; }
    default: { r = x; }
  }
  out[i] = r;
}

@compute @workgroup_size(256)
fn affine(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(g, nw);
  if (i >= p.n) { return; }
  out[i] = a[i] * p.s + p.t;
}

// out = a, except elements whose index along `dim` is marked in `mask` become p.s.
@compute @workgroup_size(256)
fn fill_at(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(g, nw);
  if (i >= p.n) { return; }
  let j = (i / p.inner) % p.dimn;
  if (mask[j] != 0u) { out[i] = p.s; } else { out[i] = a[i]; }
}

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(g, nw);
  if (i >= p.n) { return; }
  out[i] = activation(a[i], p.op);
}

// Gated MLP: out = act(a) * b
@compute @workgroup_size(256)
fn gated(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(g, nw);
  if (i >= p.n) { return; }
  out[i] = activation(a[i], p.op) * b[i];
}

// out = a * b[i % m] + c[i % m]: a norm's weight and bias after hook_normalized.
@compute @workgroup_size(256)
fn scale_shift(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(g, nw);
  if (i >= p.n) { return; }
  out[i] = a[i] * b[i % p.m] + c[i % p.m];
}

// A KV cache write: rows [0, pos) of batch b of a (keys) and c (values), both [batch, pos, inner],
// to rows m + [0, pos) of batch b of out and out2 (the caches, [batch, dimn, inner]; m the offset).
// Grid: x = column groups of 256, y = positions, z = batch (no integer division). One dispatch in
// the open compute pass where two buffer copies per batch row would end it.
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;

@compute @workgroup_size(256)
fn kv_write(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let col = g.x;
  if (col >= p.inner) { return; }
  let src = (g.z * nw.y + g.y) * p.inner + col;
  let dst = (g.z * p.dimn + p.m + g.y) * p.inner + col;
  out[dst] = a[src];
  out2[dst] = c[src];
}

// Soft cap: out = s * tanh(a / s); -inf (a masked score) stays -inf.
@compute @workgroup_size(256)
fn softcap(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(g, nw);
  if (i >= p.n) { return; }
  let x = a[i];
  out[i] = select(p.s * tanh_(x / p.s), x, x == bitcast<f32>(0xff800000u));
}

// Its gradient from its output b: out = a * (1 - (b / s)^2); 0 where b is -inf (masked).
@compute @workgroup_size(256)
fn softcap_grad(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(g, nw);
  if (i >= p.n) { return; }
  let t = b[i] / p.s;
  out[i] = select(a[i] * (1.0 - t * t), 0.0, b[i] == bitcast<f32>(0xff800000u));
}
