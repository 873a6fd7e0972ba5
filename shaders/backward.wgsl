// Backward kernels for gradients at hook points (no weight gradients): activation derivatives,
// softmax, norms, the next-token loss, and masks of SAE activations.

// Uniform block P (bound as p): BACKWARD_P in src/gpu/kernels/backward.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;       // incoming gradient
@group(0) @binding(2) var<storage, read> x: array<f32>;       // saved forward value
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;       // second saved value
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;
@group(0) @binding(6) var<storage, read> ids: array<i32>;
@group(0) @binding(7) var<storage, read> z: array<f32>;       // third saved value

const WG: u32 = 64u;
fn idx(gid: vec3u, nw: vec3u) -> u32 { return gid.x + gid.y * nw.x * 256u; }

// out = g * act'(x)
@compute @workgroup_size(256)
fn act_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(gid, nw);
  if (i >= p.n) { return; }
  out[i] = g[i] * activation_deriv(x[i], p.mode);
}

// Gated MLP post = act(x) * y: out = g * y * act'(x) (to x), out2 = g * act(x) (to y).
@compute @workgroup_size(256)
fn gated_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(gid, nw);
  if (i >= p.n) { return; }
  out[i] = g[i] * y[i] * activation_deriv(x[i], p.mode);
  out2[i] = g[i] * activation(x[i], p.mode);
}

// out = g where x (a saved activation) is non-zero, times scale[i % n] if mode 1 (y = scale).
@compute @workgroup_size(256)
fn mask_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = idx(gid, nw);
  if (i >= p.rows * p.n) { return; }
  var v = select(0.0, g[i], x[i] != 0.0);
  if (p.mode == 1u) { v = v * y[i % p.n]; }
  out[i] = v;
}



fn row_of(wg: vec3u) -> u32 { return wg.x + wg.y * 65535u; }

// Softmax rows: x = the pattern; out = x * (g - sum(g * x)).
@compute @workgroup_size(64)
fn softmax_grad(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = row_of(wg);
  if (row >= p.rows) { return; }
  let t = lid.x;
  let b = row * p.n;
  var s = 0.0;
  for (var i = t; i < p.n; i += WG) { s += g[b + i] * x[b + i]; }
  s = reduce_sum(s, t);
  for (var i = t; i < p.n; i += WG) { out[b + i] = x[b + i] * (g[b + i] - s); }
}

// Normalised = (x - mean) / scale (center) or x / scale: out = dL/dx through the normalisation
// with the scale held fixed; out2[row] = dL/dscale. y = the scale per row.
@compute @workgroup_size(64)
fn norm_apply_grad(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = row_of(wg);
  if (row >= p.rows) { return; }
  let t = lid.x;
  let b = row * p.n;
  let sc = y[row];
  var mg = 0.0;
  var mx = 0.0;
  for (var i = t; i < p.n; i += WG) { mg += g[b + i]; mx += x[b + i]; }
  mg = reduce_sum(mg, t) / f32(p.n);
  mx = reduce_sum(mx, t) / f32(p.n);
  if (p.center == 0u) { mg = 0.0; mx = 0.0; }
  var gs = 0.0;
  for (var i = t; i < p.n; i += WG) {
    out[b + i] = (g[b + i] - mg) / sc;
    gs += g[b + i] * (x[b + i] - mx);
  }
  gs = reduce_sum(gs, t);
  if (t == 0u) { out2[row] = -gs / (sc * sc); }
}

// scale = sqrt(mean((x - mean)^2) + eps) (center) or sqrt(mean(x^2) + eps): out = g_scale * (x - mean) / (n * scale).
// g = the scale's gradient per row, y = the scale per row.
@compute @workgroup_size(64)
fn norm_scale_grad(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = row_of(wg);
  if (row >= p.rows) { return; }
  let t = lid.x;
  let b = row * p.n;
  var mx = 0.0;
  for (var i = t; i < p.n; i += WG) { mx += x[b + i]; }
  mx = reduce_sum(mx, t) / f32(p.n);
  if (p.center == 0u) { mx = 0.0; }
  let k = g[row] / (f32(p.n) * y[row]);
  for (var i = t; i < p.n; i += WG) { out[b + i] = k * (x[b + i] - mx); }
}

// Software adapters (lavapipe): the three row kernels above with one row per invocation and no
// workgroup memory or barriers (see softmax.wgsl; lane_row in reduce.wgsl).
@compute @workgroup_size(64)
fn softmax_grad_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  let b = row * p.n;
  var s = 0.0;
  for (var i = 0u; i < p.n; i++) { s += g[b + i] * x[b + i]; }
  for (var i = 0u; i < p.n; i++) { out[b + i] = x[b + i] * (g[b + i] - s); }
}

@compute @workgroup_size(64)
fn norm_apply_grad_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  let b = row * p.n;
  let sc = y[row];
  var mg = 0.0;
  var mx = 0.0;
  if (p.center != 0u) {
    for (var i = 0u; i < p.n; i++) { mg += g[b + i]; mx += x[b + i]; }
    mg = mg / f32(p.n);
    mx = mx / f32(p.n);
  }
  var gs = 0.0;
  for (var i = 0u; i < p.n; i++) {
    out[b + i] = (g[b + i] - mg) / sc;
    gs += g[b + i] * (x[b + i] - mx);
  }
  out2[row] = -gs / (sc * sc);
}

@compute @workgroup_size(64)
fn norm_scale_grad_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  let b = row * p.n;
  var mx = 0.0;
  if (p.center != 0u) {
    for (var i = 0u; i < p.n; i++) { mx += x[b + i]; }
    mx = mx / f32(p.n);
  }
  let k = g[row] / (f32(p.n) * y[row]);
  for (var i = 0u; i < p.n; i++) { out[b + i] = k * (x[b + i] - mx); }
}

// Mean next-token loss: rows b * pos + q; out = (softmax(x) - onehot(next token)) * scale for
// q < pos - 1, 0 on the last position. tok_stride = pos, count = vocab... n = vocab.
@compute @workgroup_size(64)
fn loss_grad(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = row_of(wg);
  if (row >= p.rows) { return; }
  let t = lid.x;
  let b = row * p.n;
  let q = row % p.tok_stride;
  if (q + 1u >= p.tok_stride) {
    for (var i = t; i < p.n; i += WG) { out[b + i] = 0.0; }
    return;
  }
  var mx = bitcast<f32>(0xff800000u);
  for (var i = t; i < p.n; i += WG) { mx = max(mx, x[b + i]); }
  mx = reduce_max(mx, t);
  var z = 0.0;
  for (var i = t; i < p.n; i += WG) { z += exp(x[b + i] - mx); }
  z = reduce_sum(z, t);
  let next_id = u32(ids[row + 1u]);
  for (var i = t; i < p.n; i += WG) {
    var v = exp(x[b + i] - mx) / z;
    if (i == next_id) { v -= 1.0; }
    out[b + i] = v * p.scale;
  }
}

// loss_grad for software adapters: one row per invocation (see lane_row in reduce.wgsl).
@compute @workgroup_size(64)
fn loss_grad_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  let b = row * p.n;
  let q = row % p.tok_stride;
  if (q + 1u >= p.tok_stride) {
    for (var i = 0u; i < p.n; i++) { out[b + i] = 0.0; }
    return;
  }
  var mx = bitcast<f32>(0xff800000u);
  for (var i = 0u; i < p.n; i++) { mx = max(mx, x[b + i]); }
  var z = 0.0;
  for (var i = 0u; i < p.n; i++) { z += exp(x[b + i] - mx); }
  let next_id = u32(ids[row + 1u]);
  for (var i = 0u; i < p.n; i++) {
    var v = exp(x[b + i] - mx) / z;
    if (i == next_id) { v -= 1.0; }
    out[b + i] = v * p.scale;
  }
}

// SAELens's run-time input normalisation, backward (stats per row: mean, unbiased std, L2 norm;
// scale = eps). mode 0: constant_norm_rescale, normed = x * sqrt(n) / |x|; mode 2: layer_norm,
// normed = (x - mean) / (std + eps). g = dL/dnormed, x = the SAE input, y = stats: out = dL/dx.
@compute @workgroup_size(64)
fn rownorm_in_grad(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = row_of(wg);
  if (row >= p.rows) { return; }
  let t = lid.x;
  let b = row * p.n;
  let n = f32(p.n);
  let mean = y[row * 4u];
  let sd = y[row * 4u + 1u];
  let norm = y[row * 4u + 2u];
  if (p.mode == 0u) {
    var d = 0.0;
    for (var i = t; i < p.n; i += WG) { d += x[b + i] * g[b + i]; }
    d = reduce_sum(d, t);
    let k = sqrt(n) / norm;
    for (var i = t; i < p.n; i += WG) { out[b + i] = k * (g[b + i] - x[b + i] * d / (norm * norm)); }
    return;
  }
  var sg = 0.0;
  var d = 0.0;
  for (var i = t; i < p.n; i += WG) { sg += g[b + i]; d += g[b + i] * (x[b + i] - mean); }
  sg = reduce_sum(sg, t);
  d = reduce_sum(d, t);
  let den = sd + p.scale;
  for (var i = t; i < p.n; i += WG) {
    let xc = x[b + i] - mean;
    out[b + i] = (g[b + i] - sg / n) / den - d / (den * den) * xc / ((n - 1.0) * sd);
  }
}

// The matching denormalisation of the reconstruction, backward. mode 1: out = r * |x| / sqrt(n);
// mode 3: out = r * std + mean. g = dL/dout, x = r, y = stats, z = the SAE input:
// out = dL/dr, out2 = the contribution to dL/dx through the statistics.
@compute @workgroup_size(64)
fn rownorm_out_grad(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = row_of(wg);
  if (row >= p.rows) { return; }
  let t = lid.x;
  let b = row * p.n;
  let n = f32(p.n);
  let mean = y[row * 4u];
  let sd = y[row * 4u + 1u];
  let norm = y[row * 4u + 2u];
  var gr = 0.0;
  var sg = 0.0;
  for (var i = t; i < p.n; i += WG) { gr += g[b + i] * x[b + i]; sg += g[b + i]; }
  gr = reduce_sum(gr, t);
  sg = reduce_sum(sg, t);
  for (var i = t; i < p.n; i += WG) {
    if (p.mode == 1u) {
      out[b + i] = g[b + i] * norm / sqrt(n);
      out2[b + i] = gr / sqrt(n) * z[b + i] / norm;
    } else {
      out[b + i] = g[b + i] * sd;
      out2[b + i] = gr * (z[b + i] - mean) / ((n - 1.0) * sd) + sg / n;
    }
  }
}
