// SAE kernels: activations (ReLU, JumpReLU, gated) when the pre-activation was hooked, per-row
// top-k by radix select, compaction of active latents, sparse decode, and input normalisation.

// Uniform block P (bound as p): SAE_P in src/gpu/kernels/sae.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> idx: array<u32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> extra: array<f32>;

const WG: u32 = 256u;

fn row_id(wg: vec3u) -> u32 { return wg.x + wg.y * 65535u; }

// post = activation(pre): 1 relu, 2 jumprelu (aux = threshold[d_sae]), 3 gated (aux = gate pre).
@compute @workgroup_size(256)
fn act(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= p.rows * p.n) { return; }
  let v = x[i];
  var post = max(v, 0.0);
  if (p.mode == 2u && !(v > aux[i % p.n])) { post = 0.0; }
  if (p.mode == 3u && !(aux[i] > 0.0)) { post = 0.0; }
  out[i] = post;
}

// Order-preserving map of f32 bits to u32 (larger float -> larger key).
fn key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sel: array<u32, 4>;   // prefix, prefix mask, remaining k, count above

// Top-k per row by 4-pass radix select on the float keys: finds the k-th largest key, keeps every
// element above it and the first ties by index; ReLU on the kept values, 0 elsewhere.
@compute @workgroup_size(256)
fn topk(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  let row = row_id(wg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  if (t == 0u) { sel[0] = 0u; sel[1] = 0u; sel[2] = min(p.k, p.n); sel[3] = 0u; }
  workgroupBarrier();
  for (var ps = 0u; ps < 4u; ps++) {
    let shift = 24u - ps * 8u;
    atomicStore(&hist[t], 0u);
    workgroupBarrier();
    let prefix = sel[0];
    let pmask = sel[1];
    for (var i = t; i < p.n; i += WG) {
      let kk = key(x[base + i]);
      if ((kk & pmask) == prefix) { atomicAdd(&hist[(kk >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (t == 0u) {
      var remaining = sel[2];
      var b = 255i;
      loop {
        let c = atomicLoad(&hist[u32(b)]);
        if (c >= remaining || b == 0i) { break; }
        remaining -= c;
        sel[3] += c;
        b -= 1i;
      }
      sel[0] = prefix | (u32(b) << shift);
      sel[1] = pmask | (255u << shift);
      sel[2] = remaining;
    }
    workgroupBarrier();
  }
  let kth = sel[0];
  let ties = sel[2];   // how many elements equal to the k-th key to keep
  for (var i = t; i < p.n; i += WG) {
    let v = x[base + i];
    let kk = key(v);
    var o = 0.0;
    if (kk > kth) { o = max(v, 0.0); }
    out[base + i] = o;
  }
  workgroupBarrier();
  if (t == 0u) {
    var left = ties;
    for (var i = 0u; i < p.n && left > 0u; i++) {
      let v = x[base + i];
      if (key(v) == kth) { out[base + i] = max(v, 0.0); left -= 1u; }
    }
  }
}

var<workgroup> scan: array<u32, 256>;
var<workgroup> running: u32;

// Lists the non-zero latents of each row in index order: idx[row * (cap + 1)] = count, then up
// to cap indices; out[row * cap + j] = their values. Rows with more than cap are decoded densely.
@compute @workgroup_size(256)
fn compact(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  let row = row_id(wg);
  if (row >= p.rows) { return; }
  let cap = p.k;
  let base = row * p.n;
  if (t == 0u) { running = 0u; }
  workgroupBarrier();
  for (var c0 = 0u; c0 < p.n; c0 += WG) {
    let i = c0 + t;
    var v = 0.0;
    if (i < p.n) { v = x[base + i]; }
    let flag = select(0u, 1u, v != 0.0);
    scan[t] = flag;
    workgroupBarrier();
    for (var off = 1u; off < WG; off <<= 1u) {
      var add = 0u;
      if (t >= off) { add = scan[t - off]; }
      workgroupBarrier();
      scan[t] += add;
      workgroupBarrier();
    }
    let pos = running + scan[t] - flag;
    if (flag == 1u && pos < cap) {
      idx[row * (cap + 1u) + 1u + pos] = i;
      out[row * cap + pos] = v;
    }
    workgroupBarrier();
    if (t == WG - 1u) { running += scan[t]; }
    workgroupBarrier();
  }
  if (t == 0u) { idx[row * (cap + 1u)] = running; }
}

// compact for software adapters (lavapipe): one row per invocation, a serial scan instead of the
// workgroup prefix sum and its barriers (lane_row in reduce.wgsl).
@compute @workgroup_size(64)
fn compact_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = lane_row(wg, lid);
  if (row >= p.rows) { return; }
  let cap = p.k;
  let base = row * p.n;
  var count = 0u;
  for (var i = 0u; i < p.n; i++) {
    let v = x[base + i];
    if (v != 0.0) {
      if (count < cap) {
        idx[row * (cap + 1u) + 1u + count] = i;
        out[row * cap + count] = v;
      }
      count++;
    }
  }
  idx[row * (cap + 1u)] = count;
}

// recons[row, d] = b_dec[d] + sum over active j of acts[j] (* scale[j]) * W_dec[j, d].
// x = dense acts [rows, d_sae]; aux = compact values; idx = compact indices; w = W_dec [d_sae, d_in];
// out = recons [rows, d_in]; extra = b_dec [d_in] then the per-latent scale [d_sae].
@compute @workgroup_size(64)
fn decode(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  let row = row_id(wg);
  if (row >= p.rows) { return; }
  let cap = p.k;
  let d_in = p.n;
  let sc = d_in;
  let count = idx[row * (cap + 1u)];
  for (var d = t; d < d_in; d += 64u) {
    var s = 0.0;
    if (count <= cap) {
      for (var j = 0u; j < count; j++) {
        let lat = idx[row * (cap + 1u) + 1u + j];
        var a = aux[row * cap + j];
        if (p.scaled != 0u) { a = a * extra[sc + lat]; }
        s = fma(a, w[lat * d_in + d], s);
      }
    } else {
      for (var j = 0u; j < p.d_sae; j++) {
        var a = x[row * p.d_sae + j];
        if (a != 0.0) {
          if (p.scaled != 0u) { a = a * extra[sc + j]; }
          s = fma(a, w[j * d_in + d], s);
        }
      }
    }
    out[row * d_in + d] = s + extra[d];
  }
}



// Per-row statistics of x [rows, n]: out[row * 4 + 0..2] = mean, unbiased std, L2 norm.
@compute @workgroup_size(256)
fn row_stats(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  let row = row_id(wg);
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var s = 0.0;
  var sq = 0.0;
  for (var i = t; i < p.n; i += WG) { let v = x[base + i]; s += v; sq += v * v; }
  let mean = reduce_sum(s, t) / f32(p.n);
  let norm = sqrt(reduce_sum(sq, t));
  var c = 0.0;
  for (var i = t; i < p.n; i += WG) { let d = x[base + i] - mean; c += d * d; }
  let var_u = reduce_sum(c, t) / max(f32(p.n) - 1.0, 1.0);
  if (t == 0u) {
    out[row * 4u] = mean;
    out[row * 4u + 1u] = sqrt(var_u);
    out[row * 4u + 2u] = norm;
  }
}

// Applies SAELens's run-time normalisation with stats from row_stats (aux):
// 0 constant_norm_rescale in (x * sqrt(n) / norm), 1 its inverse (x * norm / sqrt(n)),
// 2 layer_norm in ((x - mean) / (std + eps)), 3 its inverse (x * std + mean).
@compute @workgroup_size(256)
fn row_norm(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= p.rows * p.n) { return; }
  let r = i / p.n;
  let mean = aux[r * 4u];
  let sd = aux[r * 4u + 1u];
  let norm = aux[r * 4u + 2u];
  let v = x[i];
  var o = v;
  switch p.mode {
    case 0u: { o = v * (sqrt(f32(p.n)) / norm); }
    case 1u: { o = v / (sqrt(f32(p.n)) / norm); }
    case 2u: { o = (v - mean) / (sd + p.eps); }
    case 3u: { o = v * sd + mean; }
    default: { o = v; }
  }
  out[i] = o;
}
