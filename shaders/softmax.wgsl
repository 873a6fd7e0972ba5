// Row softmax, one workgroup per row; -inf entries (the causal mask) get probability 0.
struct P { rows: u32, n: u32, _a: u32, _b: u32 }

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
  var sum = 0.0;
  for (var i = t; i < p.n; i += WG) { sum += exp(x[base + i] - mx); }
  sum = reduce_sum(sum, t);
  for (var i = t; i < p.n; i += WG) { out[base + i] = exp(x[base + i] - mx) / sum; }
}
