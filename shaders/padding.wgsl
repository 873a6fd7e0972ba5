// Batches of different lengths: pad keys out of attention scores. (Positions that count real
// tokens only: attention.wgsl's rotary_rows and embed.wgsl's positions_rows.)
// Uniform block P (bound as p): MASK_P in src/gpu/kernels/padding.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> scores: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<i32>;

// Scores [batch, .., keys] in place: -inf where the key mask [batch, stride] is 0 (a pad), as
// TransformerLens's IGNORE.
@compute @workgroup_size(256)
fn mask_keys(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= p.n) { return; }
  let b = i / p.per_batch;
  let k = i % p.keys;
  if (mask[b * p.stride + k] == 0) { scores[i] = bitcast<f32>(0xff800000u); }
}
