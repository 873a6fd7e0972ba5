// SAE training: the activation store's shuffled batch. Row m of the batch is row idx[off + m] of
// the store, times the normalisation scale (the indices are stored as f32, exact below 2^24 rows).

// The uniform block `P` (rows, d, off, scale) is declared in src/sae/train/kernels.ts (GATHER_P).

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> store: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<f32>;
@group(0) @binding(3) var<storage, read_write> batch: array<f32>;

@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let e = g.x + g.y * nw.x * 64u;
  if (e >= p.rows * p.d) { return; }
  let m = e / p.d;
  batch[e] = store[u32(idx[p.off + m]) * p.d + e % p.d] * p.scale;
}
