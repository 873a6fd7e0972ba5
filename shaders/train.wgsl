// SAE training step kernels (SAELens 6.18's TrainingSAE.training_forward_pass, its backward pass,
// clip_grad_norm_(1.0) and torch's Adam), for the four architectures: 0 standard (L1 weighted by
// decoder norms), 1 top-k (optionally rescaled by decoder norms, auxiliary loss on dead latents),
// 2 JumpReLU (log-threshold learnt by the rectangle-kernel straight-through estimator, L0 "step"
// loss), 3 gated (gate/magnitude paths, L1 and auxiliary reconstruction through the gate).
//
// Buffers (see src/sae/train/kernels.ts for the layout):
//   th    parameters, flat (offsets in P); gr their gradients; m, v Adam's moments
//   bd    [B, D] blocks: x, c = x - b_dec, out, rec (aux reconstruction), g_out, g_rec
//   bs    [B, S] blocks: h (x·W_enc, no bias), pre (hidden_pre), acts, eff (what multiplies W_dec),
//         aeff (auxiliary path's latents), gA = g_out·W_decᵀ, gR = g_rec·W_decᵀ, G (grad of h)
//   lat   [S] blocks: ‖W_dec[j]‖, grad of that norm, Σ_i G[i, j], steps since fired, fire count
//   sm    small: [0] dead latents this step, [1] gradient norm, [2] aux scale; [8..16) schedule
//         (lr step size, coefficient, √(1 − β2^t)); [16, 16 + D) per-dim variance of x;
//         then [B, 4] per-row (mse, aux, sparsity, l0); then the metrics ring (NM per slot)

// The uniform block `P` is declared by name in src/sae/train/kernels.ts (TRAIN_P): sizes B, D, S,
// arch, k, flags, the parameters' offsets in th (oWe, oBe, oWd, oBd, oX1, oX2), N parameters in
// all, the metrics slot, and the constants bw, aux_coef, eps, b1, b2.

const NM: u32 = 10u; // metrics per step: overall, mse, sparsity, aux, l0, ev, dead, grad norm, lr, coeff
const SCHED: u32 = 8u;
const VAR: u32 = 16u;

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> th: array<f32>;
@group(0) @binding(2) var<storage, read_write> gr: array<f32>;
@group(0) @binding(3) var<storage, read_write> bd: array<f32>;
@group(0) @binding(4) var<storage, read_write> bs: array<f32>;
@group(0) @binding(5) var<storage, read_write> lat: array<f32>;
@group(0) @binding(6) var<storage, read_write> sm: array<f32>;
@group(0) @binding(7) var<storage, read_write> am: array<f32>;
@group(0) @binding(8) var<storage, read_write> av: array<f32>;

fn gid(g: vec3u, nw: vec3u) -> u32 { return g.x + g.y * nw.x * 64u; }
fn rows_off() -> u32 { return VAR + p.D; }

// c = x - b_dec (SAELens's process_sae_in with apply_b_dec_to_input).
@compute @workgroup_size(64)
fn center(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let e = gid(g, nw);
  let n = p.B * p.D;
  if (e >= n) { return; }
  var v = bd[e];
  if (p.apply_bdec != 0u) { v -= th[p.oBd + e % p.D]; }
  bd[n + e] = v;
}

// ‖W_dec[j]‖ for every latent.
@compute @workgroup_size(64)
fn dec_norms(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let j = gid(g, nw);
  if (j >= p.S) { return; }
  var s = 0.0;
  for (var d = 0u; d < p.D; d++) {
    let w = th[p.oWd + j * p.D + d];
    s += w * w;
  }
  lat[j] = sqrt(s);
}

// Order-preserving map of f32 bits to u32 (larger float -> larger key).
fn key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn is_dead(j: u32) -> bool { return lat[3u * p.S + j] > f32(p.window); }

// The k-th largest key of pre's row (among the dead latents only when dead_only), by binary
// search on the key bits: the largest T with at least k keys >= T.
fn kth_key(r0: u32, k: u32, dead_only: bool) -> u32 {
  let pre = p.B * p.S + r0;
  var t = 0u;
  for (var bit = 31i; bit >= 0i; bit--) {
    let cand = t | (1u << u32(bit));
    var cnt = 0u;
    for (var j = 0u; j < p.S; j++) {
      if (dead_only && !is_dead(j)) { continue; }
      if (key(bs[pre + j]) >= cand) { cnt++; }
    }
    if (cnt >= k) { t = cand; }
  }
  return t;
}

// How many keys of the row are above t (dead latents only when dead_only).
fn count_above(r0: u32, t: u32, dead_only: bool) -> u32 {
  let pre = p.B * p.S + r0;
  var cnt = 0u;
  for (var j = 0u; j < p.S; j++) {
    if (dead_only && !is_dead(j)) { continue; }
    if (key(bs[pre + j]) > t) { cnt++; }
  }
  return cnt;
}

// Forward activation, one row per invocation: pre (hidden_pre), acts (feature_acts), eff, aeff,
// and the row's sparsity-loss and L0 terms.
@compute @workgroup_size(64)
fn act_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = gid(g, nw);
  if (i >= p.B) { return; }
  let S = p.S;
  let BS = p.B * S;
  let r0 = i * S;
  var nd = 0u;
  for (var j = 0u; j < S; j++) { if (is_dead(j)) { nd++; } }
  var sp = 0.0;
  var l0 = 0.0;
  if (p.arch == 1u) {
    for (var j = 0u; j < S; j++) {
      var hv = bs[r0 + j] + th[p.oBe + j];
      if (p.rescale != 0u) { hv *= lat[j]; }
      bs[BS + r0 + j] = hv;
    }
    let kk = min(p.k, S);
    let t = kth_key(r0, kk, false);
    var ties = kk - count_above(r0, t, false);
    for (var j = 0u; j < S; j++) {
      let hv = bs[BS + r0 + j];
      let kv = key(hv);
      var take = kv > t;
      if (kv == t && ties > 0u) { take = true; ties--; }
      let a = select(0.0, max(hv, 0.0), take);
      bs[2u * BS + r0 + j] = a;
      bs[3u * BS + r0 + j] = select(a, a / lat[j], p.rescale != 0u);
      bs[4u * BS + r0 + j] = 0.0;
      if (a != 0.0) { l0 += 1.0; }
    }
    // The auxiliary top-k over dead latents: k_aux = min(d_in / 2, dead), values unrectified.
    let kbase = p.D / 2u;
    if (nd > 0u && kbase > 0u) {
      let ka = min(kbase, nd);
      let ta = kth_key(r0, ka, true);
      var tiesa = ka - count_above(r0, ta, true);
      for (var j = 0u; j < S; j++) {
        if (!is_dead(j)) { continue; }
        let hv = bs[BS + r0 + j];
        let kv = key(hv);
        var take = kv > ta;
        if (kv == ta && tiesa > 0u) { take = true; tiesa--; }
        if (take) { bs[4u * BS + r0 + j] = select(hv, hv / lat[j], p.rescale != 0u); }
      }
    }
    if (i == 0u) { sm[2] = select(0.0, min(f32(nd) / f32(max(kbase, 1u)), 1.0), nd > 0u); }
  } else {
    for (var j = 0u; j < S; j++) {
      let hv = bs[r0 + j];
      var pre = hv + th[p.oBe + j];
      var a = max(pre, 0.0);
      var ae = 0.0;
      if (p.arch == 0u) {
        sp += abs(a * lat[j]);
      } else if (p.arch == 2u) {
        let thr = exp(th[p.oX1 + j]);
        let on = pre > thr;
        a = select(0.0, pre, on);
        sp += select(0.0, 1.0, on);
      } else {
        let gate = pre; // h + b_gate
        pre = hv * exp(th[p.oX1 + j]) + th[p.oX2 + j];
        a = select(0.0, max(pre, 0.0), gate > 0.0);
        ae = max(gate, 0.0);
        sp += ae * lat[j];
      }
      bs[BS + r0 + j] = pre;
      bs[2u * BS + r0 + j] = a;
      bs[3u * BS + r0 + j] = a;
      bs[4u * BS + r0 + j] = ae;
      if (a != 0.0) { l0 += 1.0; }
    }
  }
  if (i == 0u) { sm[0] = f32(nd); }
  let ro = rows_off() + i * 4u;
  sm[ro + 2u] = sp;
  sm[ro + 3u] = l0;
}

// Gradients at the reconstructions, one row per invocation: g_out = 2 (out - x) / B, and for the
// auxiliary reconstruction g_rec = 2 s (rec - target) / B (top-k: target the detached residual
// x - out, s = aux coefficient x scale; gated: target x, s = 1); the row's squared errors.
@compute @workgroup_size(64)
fn out_grad(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = gid(g, nw);
  if (i >= p.B) { return; }
  let n = p.B * p.D;
  let fb = f32(p.B);
  var s = 0.0;
  if (p.arch == 1u) { s = p.aux_coef * sm[2]; }
  if (p.arch == 3u) { s = 1.0; }
  var mse = 0.0;
  var aux = 0.0;
  for (var d = 0u; d < p.D; d++) {
    let e = i * p.D + d;
    let x = bd[e];
    let o = bd[2u * n + e];
    mse += (o - x) * (o - x);
    bd[4u * n + e] = 2.0 * (o - x) / fb;
    var gre = 0.0;
    if (p.arch == 1u || p.arch == 3u) {
      let tgt = select(x, x - o, p.arch == 1u);
      let diff = bd[3u * n + e] - tgt;
      aux += diff * diff;
      gre = 2.0 * s * diff / fb;
    }
    bd[5u * n + e] = gre;
  }
  let ro = rows_off() + i * 4u;
  sm[ro] = mse;
  sm[ro + 1u] = aux;
}

// Backward through the activation, one latent (column) per invocation: G = grad of h, the
// latent's bias/threshold/gate gradients, the grad of ‖W_dec[j]‖, Σ_i G, and dead-latent counts.
@compute @workgroup_size(64)
fn act_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let j = gid(g, nw);
  if (j >= p.S) { return; }
  let S = p.S;
  let BS = p.B * S;
  let cb = sm[SCHED + 1u] / f32(p.B); // coefficient / B
  let nrm = lat[j];
  var gb = 0.0;  // b_enc (b_gate)
  var gx1 = 0.0; // log_threshold (jumprelu), r_mag (gated)
  var gx2 = 0.0; // b_mag (gated)
  var gn = 0.0;
  var colg = 0.0;
  var fired = 0.0;
  var thr = 0.0;
  var er = 0.0;
  if (p.arch == 2u) { thr = exp(th[p.oX1 + j]); }
  if (p.arch == 3u) { er = exp(th[p.oX1 + j]); }
  for (var i = 0u; i < p.B; i++) {
    let e = i * S + j;
    let hv = bs[e];
    let pre = bs[BS + e];
    let a = bs[2u * BS + e];
    let ga = bs[5u * BS + e];
    var G = 0.0;
    if (a != 0.0) { fired += 1.0; }
    if (p.arch == 0u) {
      if (pre > 0.0) { G = ga + cb * nrm; }
      gn += cb * a;
    } else if (p.arch == 1u) {
      let ae = bs[4u * BS + e];
      let gR = bs[6u * BS + e];
      var gh = 0.0;
      if (p.rescale != 0u) {
        if (a > 0.0) { gh = ga / nrm; }
        if (ae != 0.0) { gh += gR / nrm; }
        gn -= (ga * a + gR * ae * nrm) / (nrm * nrm);
        gn += gh * (hv + th[p.oBe + j]);
        G = gh * nrm;
      } else {
        if (a > 0.0) { gh = ga; }
        if (ae != 0.0) { gh += gR; }
        G = gh;
      }
    } else if (p.arch == 2u) {
      if (pre > thr) { G = ga; }
      let u = (pre - thr) / p.bw;
      if (u > -0.5 && u < 0.5) { gx1 += -(thr / p.bw) * ga - cb / p.bw; }
    } else {
      let gate = hv + th[p.oBe + j];
      let gR = bs[6u * BS + e];
      var gm = 0.0;
      if (gate > 0.0 && pre > 0.0) { gm = ga; }
      var gg = 0.0;
      if (gate > 0.0) { gg = gR + cb * nrm; gn += cb * gate; }
      gb += gg;
      gx2 += gm;
      gx1 += gm * hv * er;
      G = gm * er + gg;
    }
    bs[7u * BS + e] = G;
    colg += G;
  }
  if (p.arch != 3u) { gb = colg; }
  if (p.arch == 2u) { gx1 *= thr; }
  gr[p.oBe + j] = gb;
  if (p.arch == 2u || p.arch == 3u) { gr[p.oX1 + j] = gx1; }
  if (p.arch == 3u) { gr[p.oX2 + j] = gx2; }
  lat[S + j] = gn;
  lat[2u * S + j] = colg;
  let since = lat[3u * S + j];
  lat[3u * S + j] = select(since + 1.0, 0.0, fired > 0.0);
  lat[4u * S + j] += fired;
}

// b_dec's gradient (one input dim per invocation): Σ_i (g_out + g_rec) - Σ_j (Σ_i G[i, j])
// W_enc[d, j] (through c = x - b_dec); and the variance of x along d for explained variance.
@compute @workgroup_size(64)
fn bdec_grad(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let d = gid(g, nw);
  if (d >= p.D) { return; }
  let n = p.B * p.D;
  var s = 0.0;
  var mean = 0.0;
  for (var i = 0u; i < p.B; i++) {
    let e = i * p.D + d;
    s += bd[4u * n + e] + bd[5u * n + e];
    mean += bd[e];
  }
  if (p.apply_bdec != 0u) {
    var t = 0.0;
    for (var j = 0u; j < p.S; j++) { t += lat[2u * p.S + j] * th[p.oWe + d * p.S + j]; }
    s -= t;
  }
  gr[p.oBd + d] = s;
  mean /= f32(p.B);
  var var_ = 0.0;
  for (var i = 0u; i < p.B; i++) {
    let v = bd[i * p.D + d] - mean;
    var_ += v * v;
  }
  sm[VAR + d] = var_;
}

// W_dec's gradient through its row norms: += g_n[j] W_dec[j] / ‖W_dec[j]‖.
@compute @workgroup_size(64)
fn wdec_norm_grad(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let e = gid(g, nw);
  if (e >= p.S * p.D) { return; }
  let j = e / p.D;
  gr[p.oWd + e] += lat[p.S + j] * th[p.oWd + e] / lat[j];
}

var<workgroup> red: array<f32, 64>;

// The total gradient norm (clip_grad_norm_), one workgroup.
@compute @workgroup_size(64)
fn grad_norm(@builtin(local_invocation_index) t: u32) {
  var s = 0.0;
  for (var e = t; e < p.N; e += 64u) { s += gr[e] * gr[e]; }
  red[t] = s;
  workgroupBarrier();
  for (var w = 32u; w > 0u; w >>= 1u) {
    if (t < w) { red[t] += red[t + w]; }
    workgroupBarrier();
  }
  if (t == 0u) { sm[1] = sqrt(red[0]); }
}

// Gradient clipping at norm 1 and torch's Adam step (bias-corrected, eps outside the root).
@compute @workgroup_size(64)
fn adam(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let e = gid(g, nw);
  if (e >= p.N) { return; }
  let clip = min(1.0 / (sm[1] + 1e-6), 1.0);
  let gv = gr[e] * clip;
  let m = p.b1 * am[e] + (1.0 - p.b1) * gv;
  let v = p.b2 * av[e] + (1.0 - p.b2) * gv * gv;
  am[e] = m;
  av[e] = v;
  th[e] -= sm[SCHED] * m / (sqrt(v) / sm[SCHED + 2u] + p.eps);
}

// The step's logged metrics into slot `slot` of the ring (one invocation).
@compute @workgroup_size(1)
fn metrics() {
  let fb = f32(p.B);
  var mse = 0.0;
  var aux = 0.0;
  var sp = 0.0;
  var l0 = 0.0;
  let ro = rows_off();
  for (var i = 0u; i < p.B; i++) {
    mse += sm[ro + i * 4u];
    aux += sm[ro + i * 4u + 1u];
    sp += sm[ro + i * 4u + 2u];
    l0 += sm[ro + i * 4u + 3u];
  }
  var tv = 0.0;
  for (var d = 0u; d < p.D; d++) { tv += sm[VAR + d]; }
  let coeff = sm[SCHED + 1u];
  mse /= fb;
  var spl = 0.0;
  var auxl = 0.0;
  if (p.arch == 0u || p.arch == 2u || p.arch == 3u) { spl = coeff * sp / fb; }
  if (p.arch == 1u) { auxl = p.aux_coef * sm[2] * aux / fb; }
  if (p.arch == 3u) { auxl = aux / fb; }
  let o = ro + p.B * 4u + p.slot * NM;
  sm[o] = mse + spl + auxl;
  sm[o + 1u] = mse;
  sm[o + 2u] = spl;
  sm[o + 3u] = auxl;
  sm[o + 4u] = l0 / fb;
  sm[o + 5u] = 1.0 - mse / (tv / fb);
  sm[o + 6u] = sm[0];
  sm[o + 7u] = sm[1];
  sm[o + 8u] = sm[SCHED + 3u];
  sm[o + 9u] = coeff;
}
