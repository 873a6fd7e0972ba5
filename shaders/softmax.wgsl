// Row softmax, one workgroup per row; -inf entries (the causal mask) get probability 0, and a row
// of -inf only (a left pad's query, every key masked) gets zeros, as TransformerLens's pattern.
// Uniform block P (bound as p): SOFTMAX_P in src/gpu/kernels/softmax.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let t = lid.x;
  let base = row * p.n;
  var mx = bitcast<f32>(0xff800000u);
  for (var i = t; i < p.n; i += WG) { mx = max(mx, x[base + i]); }
  mx = reduce_max(mx, t);
  mx = select(mx, 0.0, mx == bitcast<f32>(0xff800000u));
  var sum = 0.0;
  for (var i = t; i < p.n; i += WG) { sum += exp(x[base + i] - mx); }
  sum = reduce_sum(sum, t);
  for (var i = t; i < p.n; i += WG) {
    out[base + i] = select(0.0, exp(x[base + i] - mx) / sum, sum > 0.0);
  }
}

// Software adapters (lavapipe): one row per invocation, no workgroup memory or barriers. There an
// invocation is one lane of a CPU SIMD register and each barrier a coroutine switch, so a
// workgroup per row spends its time synchronising (lane_row in reduce.wgsl).
@compute @workgroup_size(64)
fn main_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var mx = bitcast<f32>(0xff800000u);
  for (var i = 0u; i < p.n; i++) { mx = max(mx, x[base + i]); }
  mx = select(mx, 0.0, mx == bitcast<f32>(0xff800000u));
  var sum = 0.0;
  for (var i = 0u; i < p.n; i++) { sum += exp(x[base + i] - mx); }
  for (var i = 0u; i < p.n; i++) {
    out[base + i] = select(0.0, exp(x[base + i] - mx) / sum, sum > 0.0);
  }
}
