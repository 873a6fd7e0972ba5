// Row-wise normalisation, one workgroup per row, as TransformerLens's LayerNorm / LNPre / RMSNorm:
//   scale = sqrt(mean((x - mean)^2) + eps)        (LN, LNPre; no centering for RMS)
//   normalized = (x - mean) / scale * w + b        (w, b only for LN / RMS)
// The scale is its own dispatch so that a hook on hook_scale feeds the normalisation; `fused`
// does all in one when no hook is there.

// Uniform block P (bound as p): NORM_P in src/gpu/kernels/norm.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> scale_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> bvec: array<f32>;
// fused / fused_rows only: the scale per row and the normalised input (out is then * w (+ b)).
@group(0) @binding(6) var<storage, read_write> sc_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> n_out: array<f32>;

const WG: u32 = 64u;

// The workgroup kernels: one workgroup per row, thread t takes elements t, t + WG, ...
fn row_mean(base: u32, t: u32) -> f32 {
  var s = 0.0;
  for (var i = t; i < p.d; i += WG) { s += x[base + i]; }
  return reduce_sum(s, t) / f32(p.d);
}

// (mean or 0, scale) of the row at base.
fn row_stats(base: u32, t: u32) -> vec2<f32> {
  var mu = 0.0;
  if (p.center != 0u) { mu = row_mean(base, t); }
  var s = 0.0;
  for (var i = t; i < p.d; i += WG) { let c = x[base + i] - mu; s += c * c; }
  return vec2(mu, sqrt(reduce_sum(s, t) / f32(p.d) + p.eps));
}

// v (* w[i] if affine) (+ b[i] if has_bias).
fn weighted(i: u32, v: f32) -> f32 {
  var y = v;
  if (p.affine != 0u) { y = y * w[i]; }
  if (p.has_bias != 0u) { y = y + bvec[i]; }
  return y;
}

// Element i of the fused output: normalised to n_out, weighted to out (if there is a w or b).
fn emit_fused(base: u32, i: u32, mu: f32, sc: f32) {
  let v = (x[base + i] - mu) / sc;
  n_out[base + i] = v;
  if (p.affine != 0u || p.has_bias != 0u) { out[base + i] = weighted(i, v); }
}

@compute @workgroup_size(64)
fn scale(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let st = row_stats(row * p.d, lid.x);
  if (lid.x == 0u) { out[row] = st.y; }
}

@compute @workgroup_size(64)
fn apply(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  var mu = 0.0;
  if (p.center != 0u) { mu = row_mean(base, lid.x); }
  let sc = scale_in[row];
  for (var i = lid.x; i < p.d; i += WG) { out[base + i] = weighted(i, (x[base + i] - mu) / sc); }
}

// scale, apply and the weight in one pass, when no hook can change the scale or the normalised
// input in between: sc_out[row] = scale, n_out = normalised, out = n_out * w (+ b) if affine.
@compute @workgroup_size(64)
fn fused(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let st = row_stats(base, lid.x);
  if (lid.x == 0u) { sc_out[row] = st.y; }
  for (var i = lid.x; i < p.d; i += WG) { emit_fused(base, i, st.x, st.y); }
}

// Software adapters (lavapipe): one row per invocation, no workgroup memory or barriers (see
// softmax.wgsl; lane_row in reduce.wgsl).
fn row_mean_serial(base: u32) -> f32 {
  var s = 0.0;
  for (var i = 0u; i < p.d; i++) { s += x[base + i]; }
  return s / f32(p.d);
}

fn row_stats_serial(base: u32) -> vec2<f32> {
  var mu = 0.0;
  if (p.center != 0u) { mu = row_mean_serial(base); }
  var s = 0.0;
  for (var i = 0u; i < p.d; i++) { let c = x[base + i] - mu; s += c * c; }
  return vec2(mu, sqrt(s / f32(p.d) + p.eps));
}

@compute @workgroup_size(64)
fn scale_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  out[row] = row_stats_serial(row * p.d).y;
}

@compute @workgroup_size(64)
fn apply_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  let base = row * p.d;
  var mu = 0.0;
  if (p.center != 0u) { mu = row_mean_serial(base); }
  let sc = scale_in[row];
  for (var i = 0u; i < p.d; i++) { out[base + i] = weighted(i, (x[base + i] - mu) / sc); }
}

@compute @workgroup_size(64)
fn fused_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let st = row_stats_serial(base);
  sc_out[row] = st.y;
  for (var i = 0u; i < p.d; i++) { emit_fused(base, i, st.x, st.y); }
}
