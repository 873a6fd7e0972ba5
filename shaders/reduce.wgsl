// Workgroup reductions shared by the row kernels (prepended to them by src/gpu/shaders.ts). Each
// kernel file sets WG, its workgroup size (a power of two, at most 256); every thread of the
// workgroup must call these together (they synchronise).

var<workgroup> red: array<f32, 256>;

// The `*_rows` entries (software adapters: one row per invocation, 64-wide workgroups on a grid
// folded at 65535): the row of this invocation.
fn lane_row(wg: vec3u, lid: vec3u) -> u32 { return (wg.x + wg.y * 65535u) * 64u + lid.x; }

fn reduce_sum(v: f32, t: u32) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] += red[t + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_max(v: f32, t: u32) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = max(red[t], red[t + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_min(v: f32, t: u32) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = min(red[t], red[t + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
