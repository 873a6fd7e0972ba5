// Attention in one pass for when nothing needs the scores or the pattern (no hook can replace
// them, none is cached, no backward pass is recorded): z = softmax(alpha q·kᵀ, causal) · v without
// writing the [batch, head, query, key] scores or pattern. One workgroup of 64 threads per block
// of 16 queries of one (batch, head); key blocks of 16 go through workgroup memory with an online
// softmax (running max and sum per query). Layouts as TransformerLens's: q and z
// [batch, pos, head, d_head]; k and v [batch, key pos, kv head, d_head] with a batch stride of
// their own (a KV cache holds more positions); query head h reads kv head h / group. Queries sit
// at positions offset + i (a KV cache's new tokens); key j is masked where j > that position, and
// with a sliding window where that position - j >= window, and with mask_b > 0 also where the
// key mask M [batch, mask_b] is 0 (a pad); a query that sees no key (a left pad) gets z = 0, as
// TransformerLens's pattern of zeros. An optional soft cap on the scores comes first.
// Specialisation: E (d_head, a multiple of 4, at most 256).

// Uniform block P (bound as p): FLASH_P in src/gpu/kernels/attention.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read_write> Z: array<f32>;
@group(0) @binding(5) var<storage, read> M: array<i32>;

// c * tanh(v / c), without overflow for large |v|.
fn soft_cap(v: f32, c: f32) -> f32 {
  let e = exp(-2.0 * abs(v / c));
  return c * sign(v) * (1.0 - e) / (1.0 + e);
}

const BQ: u32 = 16u;
const BKEYS: u32 = 16u;
const EQ: u32 = E / 4u;

var<workgroup> Qs: array<f32, BQ * E>;
var<workgroup> Ks: array<f32, BKEYS * E>;
var<workgroup> Vs: array<f32, BKEYS * E>;
var<workgroup> S: array<f32, BQ * BKEYS>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  let q0 = wg.x * BQ;
  let b = wg.y / p.H;
  let h = wg.y % p.H;
  let qbase = b * p.q_b + h * E;
  let kbase = b * p.kv_b + (h / p.group) * E;
  for (var i = t; i < BQ * E; i += 64u) {
    let q = min(q0 + i / E, p.P - 1u);
    Qs[i] = Q[qbase + q * p.q_row + i % E];
  }
  // Thread t: query row qi of the block; keys c * 4 .. c * 4 + 3 of each key block for the scores;
  // output dims c, c + 4, c + 8, ... of its row.
  let qi = t / 4u;
  let c = t % 4u;
  let qpos = q0 + qi + p.offset;
  var m = -1e30;
  var l = 0.0;
  var acc: array<f32, EQ>;
  for (var i = 0u; i < EQ; i++) { acc[i] = 0.0; }
  let kend = min(p.Pk, q0 + BQ + p.offset);   // keys any query of the block may see
  for (var k0 = 0u; k0 < kend; k0 += BKEYS) {
    workgroupBarrier();   // the previous key block is no longer read
    for (var i = t; i < BKEYS * E; i += 64u) {
      let kk = min(k0 + i / E, p.Pk - 1u);
      let at = kbase + kk * p.kv_row + i % E;
      Ks[i] = K[at];
      Vs[i] = V[at];
    }
    workgroupBarrier();
    for (var j = 0u; j < 4u; j++) {
      let kj = c * 4u + j;
      var s = 0.0;
      for (var e = 0u; e < E; e++) { s = fma(Qs[qi * E + e], Ks[kj * E + e], s); }
      s = s * p.alpha;
      if (p.softcap > 0.0) { s = soft_cap(s, p.softcap); }
      let kpos = k0 + kj;
      if (kpos >= p.Pk || kpos > qpos || (p.window != 0u && qpos - kpos >= p.window)) {
        s = bitcast<f32>(0xff800000u);
      } else if (p.mask_b != 0u && M[b * p.mask_b + kpos] == 0) {
        s = bitcast<f32>(0xff800000u);
      }
      S[qi * BKEYS + kj] = s;
    }
    workgroupBarrier();
    var mb = m;
    for (var j = 0u; j < BKEYS; j++) { mb = max(mb, S[qi * BKEYS + j]); }
    let corr = exp(m - mb);
    l = l * corr;
    for (var i = 0u; i < EQ; i++) { acc[i] = acc[i] * corr; }
    for (var j = 0u; j < BKEYS; j++) {
      let pj = exp(S[qi * BKEYS + j] - mb);
      l += pj;
      for (var i = 0u; i < EQ; i++) { acc[i] = fma(pj, Vs[j * E + c + 4u * i], acc[i]); }
    }
    m = mb;
  }
  if (q0 + qi < p.P) {
    let zrow = qbase + (q0 + qi) * p.q_row;
    for (var i = 0u; i < EQ; i++) { Z[zrow + c + 4u * i] = select(0.0, acc[i] / l, l > 0.0); }
  }
}
