// y (M, N) = x (M, K) . W^T (+ bias) (+ activation | + y) for adapters that run on the CPU
// (lavapipe, SwiftShader: `wgpu::DeviceType::Cpu`), the same contract as matmul.wgsl.
//
// No workgroup memory and no barriers: on these adapters the tiled kernel's barriers and
// workgroup-memory traffic cost more than re-reading x and W through the CPU's caches. A
// workgroup of 8 invocations computes a 16 x 64 strip of y, each invocation a 16 x 8 register
// block (32 vec4 accumulators, no private arrays), reading 8 k per step as vec4 loads: four
// f16 pairs of each of its 8 W rows (`matmul_direct_f16`, K % 8 == 0) or 4 f32
// (`matmul_direct_f32`, K % 4 == 0, 4 k per step). Strips of 16 rows waste at most 15 rows (257
// tokens: 272 computed). 16 x 8 blocks rather than 8 x 8, because each widened W value then
// serves 16 rows.
// The host picks matmul.wgsl for other K and for GPUs, where the tiled kernel is the design.
// A file of its own because x and W are bound here as vec4 arrays and there as scalars. The
// epilogue (Params, erf GELU, quick_gelu, bias, residual) is matmul_epilogue.wgsl, which the
// host puts in front of this file.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // (M, K / 4)
@group(0) @binding(2) var<storage, read> w16: array<vec4<u32>>;     // (N, ldw / 4): 8 f16 each
@group(0) @binding(3) var<storage, read> w32: array<vec4<f32>>;     // (N, ldw / 4)
@group(0) @binding(4) var<storage, read> bias: array<f32>;          // (N,) (unused unless has_bias)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;       // (M, N)

// The 16 x 8 register block of one invocation: row r, columns 0..3 (`c{r}_0`) and 4..7
// (`c{r}_1`).
struct Acc {
    c0_0: vec4<f32>, c0_1: vec4<f32>,
    c1_0: vec4<f32>, c1_1: vec4<f32>,
    c2_0: vec4<f32>, c2_1: vec4<f32>,
    c3_0: vec4<f32>, c3_1: vec4<f32>,
    c4_0: vec4<f32>, c4_1: vec4<f32>,
    c5_0: vec4<f32>, c5_1: vec4<f32>,
    c6_0: vec4<f32>, c6_1: vec4<f32>,
    c7_0: vec4<f32>, c7_1: vec4<f32>,
    c8_0: vec4<f32>, c8_1: vec4<f32>,
    c9_0: vec4<f32>, c9_1: vec4<f32>,
    c10_0: vec4<f32>, c10_1: vec4<f32>,
    c11_0: vec4<f32>, c11_1: vec4<f32>,
    c12_0: vec4<f32>, c12_1: vec4<f32>,
    c13_0: vec4<f32>, c13_1: vec4<f32>,
    c14_0: vec4<f32>, c14_1: vec4<f32>,
    c15_0: vec4<f32>, c15_1: vec4<f32>,
}

fn zero() -> Acc {
    let z = vec4<f32>(0.0);
    return Acc(z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
}

fn finish(c: Acc, m0: u32, col: u32) {
    store4(m0, col, c.c0_0);
    store4(m0, col + 4u, c.c0_1);
    store4(m0 + 1u, col, c.c1_0);
    store4(m0 + 1u, col + 4u, c.c1_1);
    store4(m0 + 2u, col, c.c2_0);
    store4(m0 + 2u, col + 4u, c.c2_1);
    store4(m0 + 3u, col, c.c3_0);
    store4(m0 + 3u, col + 4u, c.c3_1);
    store4(m0 + 4u, col, c.c4_0);
    store4(m0 + 4u, col + 4u, c.c4_1);
    store4(m0 + 5u, col, c.c5_0);
    store4(m0 + 5u, col + 4u, c.c5_1);
    store4(m0 + 6u, col, c.c6_0);
    store4(m0 + 6u, col + 4u, c.c6_1);
    store4(m0 + 7u, col, c.c7_0);
    store4(m0 + 7u, col + 4u, c.c7_1);
    store4(m0 + 8u, col, c.c8_0);
    store4(m0 + 8u, col + 4u, c.c8_1);
    store4(m0 + 9u, col, c.c9_0);
    store4(m0 + 9u, col + 4u, c.c9_1);
    store4(m0 + 10u, col, c.c10_0);
    store4(m0 + 10u, col + 4u, c.c10_1);
    store4(m0 + 11u, col, c.c11_0);
    store4(m0 + 11u, col + 4u, c.c11_1);
    store4(m0 + 12u, col, c.c12_0);
    store4(m0 + 12u, col + 4u, c.c12_1);
    store4(m0 + 13u, col, c.c13_0);
    store4(m0 + 13u, col + 4u, c.c13_1);
    store4(m0 + 14u, col, c.c14_0);
    store4(m0 + 14u, col + 4u, c.c14_1);
    store4(m0 + 15u, col, c.c15_0);
    store4(m0 + 15u, col + 4u, c.c15_1);
}

// Dispatch (ceil(N / 64), ceil(M / 16), 1); K % 8 == 0.
@compute @workgroup_size(8)
fn matmul_direct_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = p.row0 + wg.y * 16u;
    let col = wg.x * 64u + 8u * lid;
    // Rows and columns past M / N read the last one (finite) and are not stored.
    let last_r = p.m - 1u;
    let last_n = p.n - 1u;
    let k4 = p.k / 4u;
    let l4 = p.ldw / 4u;
    let r0 = min(m0 + 0u, last_r) * k4;
    let r1 = min(m0 + 1u, last_r) * k4;
    let r2 = min(m0 + 2u, last_r) * k4;
    let r3 = min(m0 + 3u, last_r) * k4;
    let r4 = min(m0 + 4u, last_r) * k4;
    let r5 = min(m0 + 5u, last_r) * k4;
    let r6 = min(m0 + 6u, last_r) * k4;
    let r7 = min(m0 + 7u, last_r) * k4;
    let r8 = min(m0 + 8u, last_r) * k4;
    let r9 = min(m0 + 9u, last_r) * k4;
    let r10 = min(m0 + 10u, last_r) * k4;
    let r11 = min(m0 + 11u, last_r) * k4;
    let r12 = min(m0 + 12u, last_r) * k4;
    let r13 = min(m0 + 13u, last_r) * k4;
    let r14 = min(m0 + 14u, last_r) * k4;
    let r15 = min(m0 + 15u, last_r) * k4;
    let wr0 = min(col + 0u, last_n) * l4;
    let wr1 = min(col + 1u, last_n) * l4;
    let wr2 = min(col + 2u, last_n) * l4;
    let wr3 = min(col + 3u, last_n) * l4;
    let wr4 = min(col + 4u, last_n) * l4;
    let wr5 = min(col + 5u, last_n) * l4;
    let wr6 = min(col + 6u, last_n) * l4;
    let wr7 = min(col + 7u, last_n) * l4;
    var c = zero();
    for (var q = 0u; q < l4; q = q + 1u) {
        let u0 = w16[wr0 + q];
        let u1 = w16[wr1 + q];
        let u2 = w16[wr2 + q];
        let u3 = w16[wr3 + q];
        let u4 = w16[wr4 + q];
        let u5 = w16[wr5 + q];
        let u6 = w16[wr6 + q];
        let u7 = w16[wr7 + q];
        // h{col}{word}: the pair (k 2 word, 2 word + 1) of W row col + {col}.
        let h00 = unpack2x16float(u0.x); let h01 = unpack2x16float(u0.y); let h02 = unpack2x16float(u0.z); let h03 = unpack2x16float(u0.w);
        let h10 = unpack2x16float(u1.x); let h11 = unpack2x16float(u1.y); let h12 = unpack2x16float(u1.z); let h13 = unpack2x16float(u1.w);
        let h20 = unpack2x16float(u2.x); let h21 = unpack2x16float(u2.y); let h22 = unpack2x16float(u2.z); let h23 = unpack2x16float(u2.w);
        let h30 = unpack2x16float(u3.x); let h31 = unpack2x16float(u3.y); let h32 = unpack2x16float(u3.z); let h33 = unpack2x16float(u3.w);
        let h40 = unpack2x16float(u4.x); let h41 = unpack2x16float(u4.y); let h42 = unpack2x16float(u4.z); let h43 = unpack2x16float(u4.w);
        let h50 = unpack2x16float(u5.x); let h51 = unpack2x16float(u5.y); let h52 = unpack2x16float(u5.z); let h53 = unpack2x16float(u5.w);
        let h60 = unpack2x16float(u6.x); let h61 = unpack2x16float(u6.y); let h62 = unpack2x16float(u6.z); let h63 = unpack2x16float(u6.w);
        let h70 = unpack2x16float(u7.x); let h71 = unpack2x16float(u7.y); let h72 = unpack2x16float(u7.z); let h73 = unpack2x16float(u7.w);
        // b{k}{half}: W at k of columns 0..3 / 4..7 of the block.
        let b00 = vec4<f32>(h00.x, h10.x, h20.x, h30.x);
        let b01 = vec4<f32>(h40.x, h50.x, h60.x, h70.x);
        let b10 = vec4<f32>(h00.y, h10.y, h20.y, h30.y);
        let b11 = vec4<f32>(h40.y, h50.y, h60.y, h70.y);
        let b20 = vec4<f32>(h01.x, h11.x, h21.x, h31.x);
        let b21 = vec4<f32>(h41.x, h51.x, h61.x, h71.x);
        let b30 = vec4<f32>(h01.y, h11.y, h21.y, h31.y);
        let b31 = vec4<f32>(h41.y, h51.y, h61.y, h71.y);
        let b40 = vec4<f32>(h02.x, h12.x, h22.x, h32.x);
        let b41 = vec4<f32>(h42.x, h52.x, h62.x, h72.x);
        let b50 = vec4<f32>(h02.y, h12.y, h22.y, h32.y);
        let b51 = vec4<f32>(h42.y, h52.y, h62.y, h72.y);
        let b60 = vec4<f32>(h03.x, h13.x, h23.x, h33.x);
        let b61 = vec4<f32>(h43.x, h53.x, h63.x, h73.x);
        let b70 = vec4<f32>(h03.y, h13.y, h23.y, h33.y);
        let b71 = vec4<f32>(h43.y, h53.y, h63.y, h73.y);
        let xa0 = x[r0 + 2u * q];
        let xb0 = x[r0 + 2u * q + 1u];
        c.c0_0 = c.c0_0 + xa0.x * b00 + xa0.y * b10 + xa0.z * b20 + xa0.w * b30 + xb0.x * b40 + xb0.y * b50 + xb0.z * b60 + xb0.w * b70;
        c.c0_1 = c.c0_1 + xa0.x * b01 + xa0.y * b11 + xa0.z * b21 + xa0.w * b31 + xb0.x * b41 + xb0.y * b51 + xb0.z * b61 + xb0.w * b71;
        let xa1 = x[r1 + 2u * q];
        let xb1 = x[r1 + 2u * q + 1u];
        c.c1_0 = c.c1_0 + xa1.x * b00 + xa1.y * b10 + xa1.z * b20 + xa1.w * b30 + xb1.x * b40 + xb1.y * b50 + xb1.z * b60 + xb1.w * b70;
        c.c1_1 = c.c1_1 + xa1.x * b01 + xa1.y * b11 + xa1.z * b21 + xa1.w * b31 + xb1.x * b41 + xb1.y * b51 + xb1.z * b61 + xb1.w * b71;
        let xa2 = x[r2 + 2u * q];
        let xb2 = x[r2 + 2u * q + 1u];
        c.c2_0 = c.c2_0 + xa2.x * b00 + xa2.y * b10 + xa2.z * b20 + xa2.w * b30 + xb2.x * b40 + xb2.y * b50 + xb2.z * b60 + xb2.w * b70;
        c.c2_1 = c.c2_1 + xa2.x * b01 + xa2.y * b11 + xa2.z * b21 + xa2.w * b31 + xb2.x * b41 + xb2.y * b51 + xb2.z * b61 + xb2.w * b71;
        let xa3 = x[r3 + 2u * q];
        let xb3 = x[r3 + 2u * q + 1u];
        c.c3_0 = c.c3_0 + xa3.x * b00 + xa3.y * b10 + xa3.z * b20 + xa3.w * b30 + xb3.x * b40 + xb3.y * b50 + xb3.z * b60 + xb3.w * b70;
        c.c3_1 = c.c3_1 + xa3.x * b01 + xa3.y * b11 + xa3.z * b21 + xa3.w * b31 + xb3.x * b41 + xb3.y * b51 + xb3.z * b61 + xb3.w * b71;
        let xa4 = x[r4 + 2u * q];
        let xb4 = x[r4 + 2u * q + 1u];
        c.c4_0 = c.c4_0 + xa4.x * b00 + xa4.y * b10 + xa4.z * b20 + xa4.w * b30 + xb4.x * b40 + xb4.y * b50 + xb4.z * b60 + xb4.w * b70;
        c.c4_1 = c.c4_1 + xa4.x * b01 + xa4.y * b11 + xa4.z * b21 + xa4.w * b31 + xb4.x * b41 + xb4.y * b51 + xb4.z * b61 + xb4.w * b71;
        let xa5 = x[r5 + 2u * q];
        let xb5 = x[r5 + 2u * q + 1u];
        c.c5_0 = c.c5_0 + xa5.x * b00 + xa5.y * b10 + xa5.z * b20 + xa5.w * b30 + xb5.x * b40 + xb5.y * b50 + xb5.z * b60 + xb5.w * b70;
        c.c5_1 = c.c5_1 + xa5.x * b01 + xa5.y * b11 + xa5.z * b21 + xa5.w * b31 + xb5.x * b41 + xb5.y * b51 + xb5.z * b61 + xb5.w * b71;
        let xa6 = x[r6 + 2u * q];
        let xb6 = x[r6 + 2u * q + 1u];
        c.c6_0 = c.c6_0 + xa6.x * b00 + xa6.y * b10 + xa6.z * b20 + xa6.w * b30 + xb6.x * b40 + xb6.y * b50 + xb6.z * b60 + xb6.w * b70;
        c.c6_1 = c.c6_1 + xa6.x * b01 + xa6.y * b11 + xa6.z * b21 + xa6.w * b31 + xb6.x * b41 + xb6.y * b51 + xb6.z * b61 + xb6.w * b71;
        let xa7 = x[r7 + 2u * q];
        let xb7 = x[r7 + 2u * q + 1u];
        c.c7_0 = c.c7_0 + xa7.x * b00 + xa7.y * b10 + xa7.z * b20 + xa7.w * b30 + xb7.x * b40 + xb7.y * b50 + xb7.z * b60 + xb7.w * b70;
        c.c7_1 = c.c7_1 + xa7.x * b01 + xa7.y * b11 + xa7.z * b21 + xa7.w * b31 + xb7.x * b41 + xb7.y * b51 + xb7.z * b61 + xb7.w * b71;
        let xa8 = x[r8 + 2u * q];
        let xb8 = x[r8 + 2u * q + 1u];
        c.c8_0 = c.c8_0 + xa8.x * b00 + xa8.y * b10 + xa8.z * b20 + xa8.w * b30 + xb8.x * b40 + xb8.y * b50 + xb8.z * b60 + xb8.w * b70;
        c.c8_1 = c.c8_1 + xa8.x * b01 + xa8.y * b11 + xa8.z * b21 + xa8.w * b31 + xb8.x * b41 + xb8.y * b51 + xb8.z * b61 + xb8.w * b71;
        let xa9 = x[r9 + 2u * q];
        let xb9 = x[r9 + 2u * q + 1u];
        c.c9_0 = c.c9_0 + xa9.x * b00 + xa9.y * b10 + xa9.z * b20 + xa9.w * b30 + xb9.x * b40 + xb9.y * b50 + xb9.z * b60 + xb9.w * b70;
        c.c9_1 = c.c9_1 + xa9.x * b01 + xa9.y * b11 + xa9.z * b21 + xa9.w * b31 + xb9.x * b41 + xb9.y * b51 + xb9.z * b61 + xb9.w * b71;
        let xa10 = x[r10 + 2u * q];
        let xb10 = x[r10 + 2u * q + 1u];
        c.c10_0 = c.c10_0 + xa10.x * b00 + xa10.y * b10 + xa10.z * b20 + xa10.w * b30 + xb10.x * b40 + xb10.y * b50 + xb10.z * b60 + xb10.w * b70;
        c.c10_1 = c.c10_1 + xa10.x * b01 + xa10.y * b11 + xa10.z * b21 + xa10.w * b31 + xb10.x * b41 + xb10.y * b51 + xb10.z * b61 + xb10.w * b71;
        let xa11 = x[r11 + 2u * q];
        let xb11 = x[r11 + 2u * q + 1u];
        c.c11_0 = c.c11_0 + xa11.x * b00 + xa11.y * b10 + xa11.z * b20 + xa11.w * b30 + xb11.x * b40 + xb11.y * b50 + xb11.z * b60 + xb11.w * b70;
        c.c11_1 = c.c11_1 + xa11.x * b01 + xa11.y * b11 + xa11.z * b21 + xa11.w * b31 + xb11.x * b41 + xb11.y * b51 + xb11.z * b61 + xb11.w * b71;
        let xa12 = x[r12 + 2u * q];
        let xb12 = x[r12 + 2u * q + 1u];
        c.c12_0 = c.c12_0 + xa12.x * b00 + xa12.y * b10 + xa12.z * b20 + xa12.w * b30 + xb12.x * b40 + xb12.y * b50 + xb12.z * b60 + xb12.w * b70;
        c.c12_1 = c.c12_1 + xa12.x * b01 + xa12.y * b11 + xa12.z * b21 + xa12.w * b31 + xb12.x * b41 + xb12.y * b51 + xb12.z * b61 + xb12.w * b71;
        let xa13 = x[r13 + 2u * q];
        let xb13 = x[r13 + 2u * q + 1u];
        c.c13_0 = c.c13_0 + xa13.x * b00 + xa13.y * b10 + xa13.z * b20 + xa13.w * b30 + xb13.x * b40 + xb13.y * b50 + xb13.z * b60 + xb13.w * b70;
        c.c13_1 = c.c13_1 + xa13.x * b01 + xa13.y * b11 + xa13.z * b21 + xa13.w * b31 + xb13.x * b41 + xb13.y * b51 + xb13.z * b61 + xb13.w * b71;
        let xa14 = x[r14 + 2u * q];
        let xb14 = x[r14 + 2u * q + 1u];
        c.c14_0 = c.c14_0 + xa14.x * b00 + xa14.y * b10 + xa14.z * b20 + xa14.w * b30 + xb14.x * b40 + xb14.y * b50 + xb14.z * b60 + xb14.w * b70;
        c.c14_1 = c.c14_1 + xa14.x * b01 + xa14.y * b11 + xa14.z * b21 + xa14.w * b31 + xb14.x * b41 + xb14.y * b51 + xb14.z * b61 + xb14.w * b71;
        let xa15 = x[r15 + 2u * q];
        let xb15 = x[r15 + 2u * q + 1u];
        c.c15_0 = c.c15_0 + xa15.x * b00 + xa15.y * b10 + xa15.z * b20 + xa15.w * b30 + xb15.x * b40 + xb15.y * b50 + xb15.z * b60 + xb15.w * b70;
        c.c15_1 = c.c15_1 + xa15.x * b01 + xa15.y * b11 + xa15.z * b21 + xa15.w * b31 + xb15.x * b41 + xb15.y * b51 + xb15.z * b61 + xb15.w * b71;
    }
    finish(c, m0, col);
}

// Dispatch (ceil(N / 64), ceil(M / 16), 1); K % 4 == 0.
@compute @workgroup_size(8)
fn matmul_direct_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = p.row0 + wg.y * 16u;
    let col = wg.x * 64u + 8u * lid;
    // Rows and columns past M / N read the last one (finite) and are not stored.
    let last_r = p.m - 1u;
    let last_n = p.n - 1u;
    let k4 = p.k / 4u;
    let l4 = p.ldw / 4u;
    let r0 = min(m0 + 0u, last_r) * k4;
    let r1 = min(m0 + 1u, last_r) * k4;
    let r2 = min(m0 + 2u, last_r) * k4;
    let r3 = min(m0 + 3u, last_r) * k4;
    let r4 = min(m0 + 4u, last_r) * k4;
    let r5 = min(m0 + 5u, last_r) * k4;
    let r6 = min(m0 + 6u, last_r) * k4;
    let r7 = min(m0 + 7u, last_r) * k4;
    let r8 = min(m0 + 8u, last_r) * k4;
    let r9 = min(m0 + 9u, last_r) * k4;
    let r10 = min(m0 + 10u, last_r) * k4;
    let r11 = min(m0 + 11u, last_r) * k4;
    let r12 = min(m0 + 12u, last_r) * k4;
    let r13 = min(m0 + 13u, last_r) * k4;
    let r14 = min(m0 + 14u, last_r) * k4;
    let r15 = min(m0 + 15u, last_r) * k4;
    let wr0 = min(col + 0u, last_n) * l4;
    let wr1 = min(col + 1u, last_n) * l4;
    let wr2 = min(col + 2u, last_n) * l4;
    let wr3 = min(col + 3u, last_n) * l4;
    let wr4 = min(col + 4u, last_n) * l4;
    let wr5 = min(col + 5u, last_n) * l4;
    let wr6 = min(col + 6u, last_n) * l4;
    let wr7 = min(col + 7u, last_n) * l4;
    var c = zero();
    for (var q = 0u; q < l4; q = q + 1u) {
        let u0 = w32[wr0 + q];
        let u1 = w32[wr1 + q];
        let u2 = w32[wr2 + q];
        let u3 = w32[wr3 + q];
        let u4 = w32[wr4 + q];
        let u5 = w32[wr5 + q];
        let u6 = w32[wr6 + q];
        let u7 = w32[wr7 + q];
        // b{k}{half}: W at k of columns 0..3 / 4..7 of the block.
        let b00 = vec4<f32>(u0.x, u1.x, u2.x, u3.x);
        let b01 = vec4<f32>(u4.x, u5.x, u6.x, u7.x);
        let b10 = vec4<f32>(u0.y, u1.y, u2.y, u3.y);
        let b11 = vec4<f32>(u4.y, u5.y, u6.y, u7.y);
        let b20 = vec4<f32>(u0.z, u1.z, u2.z, u3.z);
        let b21 = vec4<f32>(u4.z, u5.z, u6.z, u7.z);
        let b30 = vec4<f32>(u0.w, u1.w, u2.w, u3.w);
        let b31 = vec4<f32>(u4.w, u5.w, u6.w, u7.w);
        let xa0 = x[r0 + q];
        c.c0_0 = c.c0_0 + xa0.x * b00 + xa0.y * b10 + xa0.z * b20 + xa0.w * b30;
        c.c0_1 = c.c0_1 + xa0.x * b01 + xa0.y * b11 + xa0.z * b21 + xa0.w * b31;
        let xa1 = x[r1 + q];
        c.c1_0 = c.c1_0 + xa1.x * b00 + xa1.y * b10 + xa1.z * b20 + xa1.w * b30;
        c.c1_1 = c.c1_1 + xa1.x * b01 + xa1.y * b11 + xa1.z * b21 + xa1.w * b31;
        let xa2 = x[r2 + q];
        c.c2_0 = c.c2_0 + xa2.x * b00 + xa2.y * b10 + xa2.z * b20 + xa2.w * b30;
        c.c2_1 = c.c2_1 + xa2.x * b01 + xa2.y * b11 + xa2.z * b21 + xa2.w * b31;
        let xa3 = x[r3 + q];
        c.c3_0 = c.c3_0 + xa3.x * b00 + xa3.y * b10 + xa3.z * b20 + xa3.w * b30;
        c.c3_1 = c.c3_1 + xa3.x * b01 + xa3.y * b11 + xa3.z * b21 + xa3.w * b31;
        let xa4 = x[r4 + q];
        c.c4_0 = c.c4_0 + xa4.x * b00 + xa4.y * b10 + xa4.z * b20 + xa4.w * b30;
        c.c4_1 = c.c4_1 + xa4.x * b01 + xa4.y * b11 + xa4.z * b21 + xa4.w * b31;
        let xa5 = x[r5 + q];
        c.c5_0 = c.c5_0 + xa5.x * b00 + xa5.y * b10 + xa5.z * b20 + xa5.w * b30;
        c.c5_1 = c.c5_1 + xa5.x * b01 + xa5.y * b11 + xa5.z * b21 + xa5.w * b31;
        let xa6 = x[r6 + q];
        c.c6_0 = c.c6_0 + xa6.x * b00 + xa6.y * b10 + xa6.z * b20 + xa6.w * b30;
        c.c6_1 = c.c6_1 + xa6.x * b01 + xa6.y * b11 + xa6.z * b21 + xa6.w * b31;
        let xa7 = x[r7 + q];
        c.c7_0 = c.c7_0 + xa7.x * b00 + xa7.y * b10 + xa7.z * b20 + xa7.w * b30;
        c.c7_1 = c.c7_1 + xa7.x * b01 + xa7.y * b11 + xa7.z * b21 + xa7.w * b31;
        let xa8 = x[r8 + q];
        c.c8_0 = c.c8_0 + xa8.x * b00 + xa8.y * b10 + xa8.z * b20 + xa8.w * b30;
        c.c8_1 = c.c8_1 + xa8.x * b01 + xa8.y * b11 + xa8.z * b21 + xa8.w * b31;
        let xa9 = x[r9 + q];
        c.c9_0 = c.c9_0 + xa9.x * b00 + xa9.y * b10 + xa9.z * b20 + xa9.w * b30;
        c.c9_1 = c.c9_1 + xa9.x * b01 + xa9.y * b11 + xa9.z * b21 + xa9.w * b31;
        let xa10 = x[r10 + q];
        c.c10_0 = c.c10_0 + xa10.x * b00 + xa10.y * b10 + xa10.z * b20 + xa10.w * b30;
        c.c10_1 = c.c10_1 + xa10.x * b01 + xa10.y * b11 + xa10.z * b21 + xa10.w * b31;
        let xa11 = x[r11 + q];
        c.c11_0 = c.c11_0 + xa11.x * b00 + xa11.y * b10 + xa11.z * b20 + xa11.w * b30;
        c.c11_1 = c.c11_1 + xa11.x * b01 + xa11.y * b11 + xa11.z * b21 + xa11.w * b31;
        let xa12 = x[r12 + q];
        c.c12_0 = c.c12_0 + xa12.x * b00 + xa12.y * b10 + xa12.z * b20 + xa12.w * b30;
        c.c12_1 = c.c12_1 + xa12.x * b01 + xa12.y * b11 + xa12.z * b21 + xa12.w * b31;
        let xa13 = x[r13 + q];
        c.c13_0 = c.c13_0 + xa13.x * b00 + xa13.y * b10 + xa13.z * b20 + xa13.w * b30;
        c.c13_1 = c.c13_1 + xa13.x * b01 + xa13.y * b11 + xa13.z * b21 + xa13.w * b31;
        let xa14 = x[r14 + q];
        c.c14_0 = c.c14_0 + xa14.x * b00 + xa14.y * b10 + xa14.z * b20 + xa14.w * b30;
        c.c14_1 = c.c14_1 + xa14.x * b01 + xa14.y * b11 + xa14.z * b21 + xa14.w * b31;
        let xa15 = x[r15 + q];
        c.c15_0 = c.c15_0 + xa15.x * b00 + xa15.y * b10 + xa15.z * b20 + xa15.w * b30;
        c.c15_1 = c.c15_1 + xa15.x * b01 + xa15.y * b11 + xa15.z * b21 + xa15.w * b31;
    }
    finish(c, m0, col);
}
