// Next-token choice on the GPU, one workgroup per sequence, writing the chosen id straight into the
// token buffer that the next step's embedding reads: greedy (argmax, lowest index on ties) or
// sampling with temperature, top-k and top-p (nucleus) by threshold search, then an inverse-CDF
// draw with a uniform number from the host's seeded generator.

// Uniform block P (bound as p): SAMPLE_P in src/gpu/kernels/sample.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> seq: array<i32>;

const WG: u32 = 256u;
var<workgroup> rv: array<f32, 256>;
var<workgroup> ri: array<u32, 256>;
var<workgroup> flag: array<f32, 4>;




@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  let row = wg.x;
  if (row >= p.rows) { return; }
  let base = p.row_off + row * p.row_stride;
  let out_i = row * p.out_stride + p.out_off;

  if (p.greedy != 0u) {
    var best = bitcast<f32>(0xff800000u);
    var bi = 0xffffffffu;
    for (var i = t; i < p.vocab; i += WG) {
      let v = logits[base + i];
      if (v > best) { best = v; bi = i; }
    }
    rv[t] = best;
    ri[t] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (t < s) {
        let ov = rv[t + s];
        let oi = ri[t + s];
        if (ov > rv[t] || (ov == rv[t] && oi < ri[t])) { rv[t] = ov; ri[t] = oi; }
      }
      workgroupBarrier();
    }
    if (t == 0u) { seq[out_i] = i32(ri[0]); }
    return;
  }

  let inv_t = 1.0 / max(p.temp, 1e-6);
  var mx = bitcast<f32>(0xff800000u);
  var mn = bitcast<f32>(0x7f800000u);
  for (var i = t; i < p.vocab; i += WG) {
    let v = logits[base + i] * inv_t;
    mx = max(mx, v);
    mn = min(mn, v);
  }
  mx = reduce_max(mx, t);
  mn = reduce_min(mn, t);

  // Threshold: keep logits >= thr. Bisection on the value for top-k (count >= k) and top-p
  // (probability mass of strictly larger logits < p).
  var thr = mn;
  if (p.top_k > 0u && p.top_k < p.vocab) {
    var lo = mn;
    var hi = mx;
    for (var it = 0u; it < 40u; it++) {
      let mid = 0.5 * (lo + hi);
      var c = 0.0;
      for (var i = t; i < p.vocab; i += WG) { if (logits[base + i] * inv_t >= mid) { c += 1.0; } }
      c = reduce_sum(c, t);
      if (c >= f32(p.top_k)) { lo = mid; } else { hi = mid; }
    }
    thr = lo;
  }
  if (p.top_p < 1.0) {
    var z = 0.0;
    for (var i = t; i < p.vocab; i += WG) {
      let v = logits[base + i] * inv_t;
      if (v >= thr) { z += exp(v - mx); }
    }
    z = reduce_sum(z, t);
    var lo = thr;
    var hi = mx;
    for (var it = 0u; it < 40u; it++) {
      let mid = 0.5 * (lo + hi);
      var m = 0.0;
      for (var i = t; i < p.vocab; i += WG) {
        let v = logits[base + i] * inv_t;
        if (v > mid && v >= thr) { m += exp(v - mx); }
      }
      m = reduce_sum(m, t) / z;
      // The token at value `mid` is kept iff the mass above it is < top_p.
      if (m < p.top_p) { hi = mid; } else { lo = mid; }
    }
    thr = max(thr, lo);
    if (hi <= thr) { thr = hi; }
  }

  // Inverse-CDF draw over kept tokens in index order: contiguous chunks per thread.
  let chunk = (p.vocab + WG - 1u) / WG;
  let c0 = t * chunk;
  let c1 = min(c0 + chunk, p.vocab);
  var s = 0.0;
  for (var i = c0; i < c1; i++) {
    let v = logits[base + i] * inv_t;
    if (v >= thr) { s += exp(v - mx); }
  }
  rv[t] = s;
  workgroupBarrier();
  if (t == 0u) {
    var total = 0.0;
    for (var j = 0u; j < WG; j++) { total += rv[j]; }
    let goal = p.u * total;
    var acc = 0.0;
    var owner = WG - 1u;
    for (var j = 0u; j < WG; j++) {
      if (acc + rv[j] > goal && rv[j] > 0.0) { owner = j; break; }
      acc += rv[j];
    }
    flag[0] = f32(owner);
    flag[1] = goal - acc;
  }
  workgroupBarrier();
  if (t == u32(flag[0])) {
    var acc = 0.0;
    var pick = 0xffffffffu;
    var last = 0xffffffffu;
    for (var i = c0; i < c1; i++) {
      let v = logits[base + i] * inv_t;
      if (v >= thr) {
        last = i;
        acc += exp(v - mx);
        if (acc > flag[1]) { pick = i; break; }
      }
    }
    if (pick == 0xffffffffu) { pick = last; }
    seq[out_i] = i32(pick);
  }
}
