// Next-token cross-entropy: loss[b, p] = logsumexp(logits[b, p, :]) - logits[b, p, tokens[b, p + 1]]
// for p < pos - 1, one workgroup per row; then the mean over all rows.
// Uniform block P (bound as p): LOSS_P in src/gpu/kernels/loss.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;



@compute @workgroup_size(64)
fn per_token(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wg.x + wg.y * 65535u;   // b * (pos - 1) + q
  let np = p.pos - 1u;
  if (row >= p.batch * np) { return; }
  let b = row / np;
  let q = row % np;
  let base = (b * p.pos + q) * p.vocab;
  let t = lid.x;
  var mx = bitcast<f32>(0xff800000u);
  for (var i = t; i < p.vocab; i += WG) { mx = max(mx, logits[base + i]); }
  mx = reduce_max(mx, t);
  var s = 0.0;
  for (var i = t; i < p.vocab; i += WG) { s += exp(logits[base + i] - mx); }
  s = reduce_sum(s, t);
  if (t == 0u) {
    let target_id = u32(ids[b * p.pos + q + 1u]);
    out[row] = log(s) + mx - logits[base + target_id];
  }
}

// per_token for software adapters: one row per invocation (see lane_row in reduce.wgsl), no
// workgroup memory or barriers.
@compute @workgroup_size(64)
fn per_token_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  let np = p.pos - 1u;
  if (row >= p.batch * np) { return; }
  let b = row / np;
  let q = row % np;
  let base = (b * p.pos + q) * p.vocab;
  var mx = bitcast<f32>(0xff800000u);
  for (var i = 0u; i < p.vocab; i++) { mx = max(mx, logits[base + i]); }
  var s = 0.0;
  for (var i = 0u; i < p.vocab; i++) { s += exp(logits[base + i] - mx); }
  let target_id = u32(ids[b * p.pos + q + 1u]);
  out[row] = log(s) + mx - logits[base + target_id];
}

// Mean of `logits` (reused binding) over n elements into out[0].
@compute @workgroup_size(64)
fn mean(@builtin(local_invocation_id) lid: vec3u) {
  let t = lid.x;
  var s = 0.0;
  for (var i = t; i < p.n; i += WG) { s += logits[i]; }
  s = reduce_sum(s, t);
  if (t == 0u) { out[0] = s / f32(p.n); }
}
