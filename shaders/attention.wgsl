// Attention helpers. Scores and pattern·V are batched strided matmuls (matmul.wgsl); this file
// holds the rotary position embedding.

// Uniform block P (bound as p): ROTARY_P in src/gpu/kernels/attention.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;   // cos [n_ctx, rot] then sin [n_ctx, rot]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// NeoX-style rotary (TransformerLens's rotary_adjacent_pairs = false): dims e < rot/2 pair with
// e + rot/2: out[e] = x[e] cos - x[e + rot/2] sin, out[e + rot/2] = x[e + rot/2] cos + x[e] sin.
@compute @workgroup_size(256)
fn rotary(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= p.n) { return; }
  let e = i % p.d_head;
  if (e >= p.rot) { out[i] = x[i]; return; }
  let token = i / (p.d_head * p.heads);
  let pos = token % p.pos + p.offset;
  let half = p.rot / 2u;
  let c = table[pos * p.rot + e];
  var s = table[p.n_ctx * p.rot + pos * p.rot + e];
  if (p.inverse != 0u) { s = -s; } // the transpose of the rotation, for gradients
  var partner: f32;
  if (e < half) { partner = -x[i + half]; } else { partner = x[i - half]; }
  out[i] = x[i] * c + partner * s;
}

// Rotary of a padded batch: token t of batch row b sits at position max(t + offset, starts[b]) -
// starts[b] (TransformerLens's offset position ids: positions count real tokens only).
@group(0) @binding(4) var<storage, read> starts: array<i32>;

@compute @workgroup_size(256)
fn rotary_rows(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= p.n) { return; }
  let e = i % p.d_head;
  if (e >= p.rot) { out[i] = x[i]; return; }
  let token = i / (p.d_head * p.heads);
  let start = u32(starts[token / p.pos]);
  let pos = min(max(token % p.pos + p.offset, start) - start, p.n_ctx - 1u);
  let half = p.rot / 2u;
  let c = table[pos * p.rot + e];
  var s = table[p.n_ctx * p.rot + pos * p.rot + e];
  if (p.inverse != 0u) { s = -s; }
  var partner: f32;
  if (e < half) { partner = -x[i + half]; } else { partner = x[i - half]; }
  out[i] = x[i] * c + partner * s;
}
