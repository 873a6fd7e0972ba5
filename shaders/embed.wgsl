// Row gathers: token embeddings (row = token id) and learned positions (row = pos + offset).
// Specialisation: WT, the table's element type (f32, or f16 with `shader-f16`, read as f32).
// Uniform block P (bound as p): EMBED_P in src/gpu/kernels/embed.ts, which prepends it.

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> table: array<WT>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn tokens(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x + wg.y * 65535u;
  if (t >= p.tokens) { return; }
  let id = u32(clamp(ids[t], 0, i32(p.vocab) - 1));
  for (var i = lid.x; i < p.d; i += 64u) { out[t * p.d + i] = f32(table[id * p.d + i]); }
}

@compute @workgroup_size(64)
fn positions(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x + wg.y * 65535u;
  if (t >= p.tokens) { return; }
  let row = t % p.pos + p.pos_off;
  for (var i = lid.x; i < p.d; i += 64u) { out[t * p.d + i] = f32(table[row * p.d + i]); }
}

// Learned positions of a padded batch: token t of row b takes row max(t + pos_off, start_b) -
// start_b, `ids` holding each row's first real position (TransformerLens's offset position ids).
@compute @workgroup_size(64)
fn positions_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x + wg.y * 65535u;
  if (t >= p.tokens) { return; }
  let start = u32(ids[t / p.pos]);
  let row = min(max(t % p.pos + p.pos_off, start) - start, p.vocab - 1u);
  for (var i = lid.x; i < p.d; i += 64u) { out[t * p.d + i] = f32(table[row * p.d + i]); }
}
