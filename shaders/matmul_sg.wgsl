// Software adapters whose subgroups are 8 lanes (lavapipe on a 256-bit SIMD CPU): the entries of
// matmul.wgsl's general strided product (appended to that file, whose bindings, uniform block and
// epilogues they use) with fewer buffer loads per multiply-add than its _cpu variants. A workgroup
// is one subgroup and makes a 16-row x 64-column tile: lane l takes columns l, l + 8, .., l + 56
// of all 16 rows, so each lane loads only its own 8 elements of B per k, and the 16 elements of A
// are loaded two a lane (rows l and l + 8) and handed round with subgroupBroadcast (a register
// shuffle on a CPU): 10 loads per 128 multiply-adds where main_cpu takes 16 per 64. Rows and
// columns past the end are clamped on load and skipped on store. Needs the "subgroups" feature.
var<private> sgb: array<vec4<f32>, 32>;   // [row r][column group h] = sgb[2 r + h]; group h, lane
                                          // l: columns l + 32 h + 8 j, j = 0..3

fn block_product_sg(wg: vec3u, l: u32) {
  let a_base = a_start(wg.z);
  let b_base = b_start(wg.z);
  let m0 = wg.y * 16u;
  let n0 = wg.x * 64u + l;
  let lm = max(p.M, 1u) - 1u;
  let ln = max(p.N, 1u) - 1u;
  let ra0 = a_base + min(m0 + l, lm) * p.a_m;
  let ra1 = a_base + min(m0 + 8u + l, lm) * p.a_m;
  let c0 = b_base + min(n0 + 0u, ln) * p.b_n;
  let c1 = b_base + min(n0 + 8u, ln) * p.b_n;
  let c2 = b_base + min(n0 + 16u, ln) * p.b_n;
  let c3 = b_base + min(n0 + 24u, ln) * p.b_n;
  let c4 = b_base + min(n0 + 32u, ln) * p.b_n;
  let c5 = b_base + min(n0 + 40u, ln) * p.b_n;
  let c6 = b_base + min(n0 + 48u, ln) * p.b_n;
  let c7 = b_base + min(n0 + 56u, ln) * p.b_n;
  var s0_0 = vec4<f32>(0.0); var s0_1 = vec4<f32>(0.0); var s1_0 = vec4<f32>(0.0); var s1_1 = vec4<f32>(0.0);
  var s2_0 = vec4<f32>(0.0); var s2_1 = vec4<f32>(0.0); var s3_0 = vec4<f32>(0.0); var s3_1 = vec4<f32>(0.0);
  var s4_0 = vec4<f32>(0.0); var s4_1 = vec4<f32>(0.0); var s5_0 = vec4<f32>(0.0); var s5_1 = vec4<f32>(0.0);
  var s6_0 = vec4<f32>(0.0); var s6_1 = vec4<f32>(0.0); var s7_0 = vec4<f32>(0.0); var s7_1 = vec4<f32>(0.0);
  var s8_0 = vec4<f32>(0.0); var s8_1 = vec4<f32>(0.0); var s9_0 = vec4<f32>(0.0); var s9_1 = vec4<f32>(0.0);
  var s10_0 = vec4<f32>(0.0); var s10_1 = vec4<f32>(0.0); var s11_0 = vec4<f32>(0.0); var s11_1 = vec4<f32>(0.0);
  var s12_0 = vec4<f32>(0.0); var s12_1 = vec4<f32>(0.0); var s13_0 = vec4<f32>(0.0); var s13_1 = vec4<f32>(0.0);
  var s14_0 = vec4<f32>(0.0); var s14_1 = vec4<f32>(0.0); var s15_0 = vec4<f32>(0.0); var s15_1 = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k++) {
    let ka = k * p.a_k;
    let kb = k * p.b_k;
    let u0 = vec4<f32>(B[c0 + kb], B[c1 + kb], B[c2 + kb], B[c3 + kb]);
    let u1 = vec4<f32>(B[c4 + kb], B[c5 + kb], B[c6 + kb], B[c7 + kb]);
    let x0 = A[ra0 + ka];
    let x1 = A[ra1 + ka];
    let a0 = vec4<f32>(subgroupBroadcast(x0, 0u)); let a1 = vec4<f32>(subgroupBroadcast(x0, 1u));
    let a2 = vec4<f32>(subgroupBroadcast(x0, 2u)); let a3 = vec4<f32>(subgroupBroadcast(x0, 3u));
    let a4 = vec4<f32>(subgroupBroadcast(x0, 4u)); let a5 = vec4<f32>(subgroupBroadcast(x0, 5u));
    let a6 = vec4<f32>(subgroupBroadcast(x0, 6u)); let a7 = vec4<f32>(subgroupBroadcast(x0, 7u));
    let a8 = vec4<f32>(subgroupBroadcast(x1, 0u)); let a9 = vec4<f32>(subgroupBroadcast(x1, 1u));
    let a10 = vec4<f32>(subgroupBroadcast(x1, 2u)); let a11 = vec4<f32>(subgroupBroadcast(x1, 3u));
    let a12 = vec4<f32>(subgroupBroadcast(x1, 4u)); let a13 = vec4<f32>(subgroupBroadcast(x1, 5u));
    let a14 = vec4<f32>(subgroupBroadcast(x1, 6u)); let a15 = vec4<f32>(subgroupBroadcast(x1, 7u));
    s0_0 = fma(a0, u0, s0_0); s0_1 = fma(a0, u1, s0_1);
    s1_0 = fma(a1, u0, s1_0); s1_1 = fma(a1, u1, s1_1);
    s2_0 = fma(a2, u0, s2_0); s2_1 = fma(a2, u1, s2_1);
    s3_0 = fma(a3, u0, s3_0); s3_1 = fma(a3, u1, s3_1);
    s4_0 = fma(a4, u0, s4_0); s4_1 = fma(a4, u1, s4_1);
    s5_0 = fma(a5, u0, s5_0); s5_1 = fma(a5, u1, s5_1);
    s6_0 = fma(a6, u0, s6_0); s6_1 = fma(a6, u1, s6_1);
    s7_0 = fma(a7, u0, s7_0); s7_1 = fma(a7, u1, s7_1);
    s8_0 = fma(a8, u0, s8_0); s8_1 = fma(a8, u1, s8_1);
    s9_0 = fma(a9, u0, s9_0); s9_1 = fma(a9, u1, s9_1);
    s10_0 = fma(a10, u0, s10_0); s10_1 = fma(a10, u1, s10_1);
    s11_0 = fma(a11, u0, s11_0); s11_1 = fma(a11, u1, s11_1);
    s12_0 = fma(a12, u0, s12_0); s12_1 = fma(a12, u1, s12_1);
    s13_0 = fma(a13, u0, s13_0); s13_1 = fma(a13, u1, s13_1);
    s14_0 = fma(a14, u0, s14_0); s14_1 = fma(a14, u1, s14_1);
    s15_0 = fma(a15, u0, s15_0); s15_1 = fma(a15, u1, s15_1);
  }
  sgb[0] = s0_0; sgb[1] = s0_1; sgb[2] = s1_0; sgb[3] = s1_1;
  sgb[4] = s2_0; sgb[5] = s2_1; sgb[6] = s3_0; sgb[7] = s3_1;
  sgb[8] = s4_0; sgb[9] = s4_1; sgb[10] = s5_0; sgb[11] = s5_1;
  sgb[12] = s6_0; sgb[13] = s6_1; sgb[14] = s7_0; sgb[15] = s7_1;
  sgb[16] = s8_0; sgb[17] = s8_1; sgb[18] = s9_0; sgb[19] = s9_1;
  sgb[20] = s10_0; sgb[21] = s10_1; sgb[22] = s11_0; sgb[23] = s11_1;
  sgb[24] = s12_0; sgb[25] = s12_1; sgb[26] = s13_0; sgb[27] = s13_1;
  sgb[28] = s14_0; sgb[29] = s14_1; sgb[30] = s15_0; sgb[31] = s15_1;
}

@compute @workgroup_size(8)
fn main_sg(@builtin(workgroup_id) wg: vec3u, @builtin(subgroup_invocation_id) l: u32) {
  block_product_sg(wg, l);
  let b2 = wg.z % p.NB2;
  let c_base = c_start(wg.z);
  for (var i = 0u; i < 32u; i++) {
    let m = wg.y * 16u + i / 2u;
    let n = wg.x * 64u + l + 32u * (i % 2u);
    let v = sgb[i];
    epilogue_one(b2, c_base, m, n, v.x);
    epilogue_one(b2, c_base, m, n + 8u, v.y);
    epilogue_one(b2, c_base, m, n + 16u, v.z);
    epilogue_one(b2, c_base, m, n + 24u, v.w);
  }
}

@compute @workgroup_size(8)
fn encode_sg(@builtin(workgroup_id) wg: vec3u, @builtin(subgroup_invocation_id) l: u32) {
  block_product_sg(wg, l);
  for (var i = 0u; i < 32u; i++) {
    let m = wg.y * 16u + i / 2u;
    let n = wg.x * 64u + l + 32u * (i % 2u);
    let v = sgb[i];
    encode_one(m, n, v.x);
    encode_one(m, n + 8u, v.y);
    encode_one(m, n + 16u, v.z);
    encode_one(m, n + 24u, v.w);
  }
}
