// The 8 x 8 register-block tile product shared by matmul.wgsl and attention.wgsl (the kernel
// table, src/gpu/kernels.rs, puts this file in front of each): one invocation of a 64-invocation
// workgroup accumulates an 8 x 8 block of a 64 x 64 output tile in sixteen vec4 (`Acc`, written
// out by hand: lavapipe and SwiftShader compile loops over private arrays to slow scratch
// memory), K stepping TILE_K at a time through two 16 x 64 f32 tiles in workgroup memory that
// the including file loads: a_tile[kk * 16 + g] holds rows 4g..4g+3 at k0 + kk, b_tile columns.

const TILE_K: u32 = 16u;

var<workgroup> a_tile: array<vec4<f32>, 256>; // (16 k, 16 x 4 rows)
var<workgroup> b_tile: array<vec4<f32>, 256>; // (16 k, 16 x 4 cols)

// The 8 x 8 register block of one invocation: row i, columns 0..3 (`ci0`) and 4..7 (`ci1`).
struct Acc {
    c00: vec4<f32>, c01: vec4<f32>,
    c10: vec4<f32>, c11: vec4<f32>,
    c20: vec4<f32>, c21: vec4<f32>,
    c30: vec4<f32>, c31: vec4<f32>,
    c40: vec4<f32>, c41: vec4<f32>,
    c50: vec4<f32>, c51: vec4<f32>,
    c60: vec4<f32>, c61: vec4<f32>,
    c70: vec4<f32>, c71: vec4<f32>,
}

// The rank-1 update of the 8 x 8 block at one k: rows a0, a1 of the left operand (8 rows),
// columns b0, b1 of the right one (8 columns).
fn update8x8(acc_in: Acc, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) -> Acc {
    var c = acc_in;
    c.c00 = fma(vec4<f32>(a0.x), b0, c.c00);
    c.c01 = fma(vec4<f32>(a0.x), b1, c.c01);
    c.c10 = fma(vec4<f32>(a0.y), b0, c.c10);
    c.c11 = fma(vec4<f32>(a0.y), b1, c.c11);
    c.c20 = fma(vec4<f32>(a0.z), b0, c.c20);
    c.c21 = fma(vec4<f32>(a0.z), b1, c.c21);
    c.c30 = fma(vec4<f32>(a0.w), b0, c.c30);
    c.c31 = fma(vec4<f32>(a0.w), b1, c.c31);
    c.c40 = fma(vec4<f32>(a1.x), b0, c.c40);
    c.c41 = fma(vec4<f32>(a1.x), b1, c.c41);
    c.c50 = fma(vec4<f32>(a1.y), b0, c.c50);
    c.c51 = fma(vec4<f32>(a1.y), b1, c.c51);
    c.c60 = fma(vec4<f32>(a1.z), b0, c.c60);
    c.c61 = fma(vec4<f32>(a1.z), b1, c.c61);
    c.c70 = fma(vec4<f32>(a1.w), b0, c.c70);
    c.c71 = fma(vec4<f32>(a1.w), b1, c.c71);
    return c;
}

// acc += a_tile^T b_tile over the 16 k of the tile: per k, 4 vec4 loads feed 64 FMAs.
fn tile_product(acc_in: Acc, tx: u32, ty: u32) -> Acc {
    var c = acc_in;
    for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
        let a0 = a_tile[kk * 16u + 2u * ty];
        let a1 = a_tile[kk * 16u + 2u * ty + 1u];
        c = update8x8(c, a0, a1, b_tile[kk * 16u + 2u * tx], b_tile[kk * 16u + 2u * tx + 1u]);
    }
    return c;
}

fn zero() -> Acc {
    let z = vec4<f32>(0.0);
    return Acc(z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
}
