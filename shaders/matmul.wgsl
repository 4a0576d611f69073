// y (M, N) = x (M, K) . W^T (+ bias) (+ activation | + y), the Linear layer of every block.
//
// W is stored as PyTorch does, (N, K) row-major: `matmul_f16` reads it as f16 pairs packed in u32
// (row stride `ldw` = ceil(K / 2) words; the pad half of an odd K is zero), `matmul_f32` as f32
// (row stride `ldw` = K). Products and accumulation are f32 either way.
//
// Tiling: one 64-invocation workgroup computes a 64 x 64 tile of y; each invocation an 8 x 8
// register block (sixteen vec4 accumulators written out by hand, no private arrays: lavapipe and
// SwiftShader compile loops over private arrays to slow scratch memory). K advances 16 at a time
// through two 16 x 64 tiles in workgroup memory (at most 2 x 4 KiB, well under the 16 KiB
// default).
// Why 8 x 8 and not 4 x 4 per invocation: software adapters pay per workgroup-memory load, and
// here 4 vec4 loads feed 64 FMAs against 2 per 16 with 4 x 4; discrete GPUs keep 64 threads x 64
// accumulators in registers comfortably.
// Rows and columns past M / N and k past K are bounds-checked, so no shape needs padding.
//
// The `_rows16` entry points compute 16 x 64 tiles (16 invocations, the same 8 x 8 blocks) from
// row `row0` on: the host covers the last M % 64 rows with them when that remainder is at most
// 48, so 77-token text computes 80 rows instead of 128 and 257-token vision 272 instead of 320.
//
// The kernel table (src/gpu/kernels.rs) puts three parts in front of this file: tile8x8.wgsl (the register
// block, the f32 tiles and their product), matmul_epilogue.wgsl (Params, erf GELU, quick_gelu,
// bias, residual) and the f16 kernels' W-tile type `WTile16`:
// wtile_f16.wgsl on devices with `shader-f16` (the tile holds the f16 weights as f16: half the
// workgroup memory and tile-load bytes, exactly the same products) and wtile_f32.wgsl otherwise.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // (M, K) f32
@group(0) @binding(2) var<storage, read> w16: array<u32>;      // (N, ldw) f16 pairs
@group(0) @binding(3) var<storage, read> w32: array<f32>;      // (N, ldw) f32
@group(0) @binding(4) var<storage, read> bias: array<f32>;     // (N,) f32 (unused unless has_bias)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;  // (M, N) f32

// a_tile and b_tile (tile8x8.wgsl) hold x and, for f32 weights, W; f16 weights go through
// b16_tile, laid out as b_tile (WTile16: vec4<f16> or vec4<f32>, see above).
var<workgroup> b16_tile: array<WTile16, 256>; // (16 k, 16 x 4 cols)

fn x_at(row: u32, col: u32) -> f32 {
    if (row < p.m && col < p.k) {
        return x[row * p.k + col];
    }
    return 0.0;
}

// The x tile: invocation (kk = lid % 16, q = lid / 16) loads rows 16q..16q+15 at column k0 + kk.
fn load_a(lid: u32, m0: u32, k0: u32) {
    let kk = lid % TILE_K;
    let q = lid / TILE_K;
    let col = k0 + kk;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let g = 4u * q + j;
        let row = m0 + 4u * g;
        a_tile[kk * 16u + g] = vec4<f32>(x_at(row, col), x_at(row + 1u, col), x_at(row + 2u, col), x_at(row + 3u, col));
    }
}

// The packed pair (k, k + 1) of W row n, zero past N (the pad half of an odd K is stored as 0).
fn w16_pair(n: u32, pair: u32) -> WPair16 {
    if (n < p.n && 2u * pair < p.k) {
        return unpack_pair16(w16[n * p.ldw + pair]);
    }
    return WPair16();
}

// The f16 W tile: invocation (pr = lid % 8, q = lid / 8) loads columns 8q..8q+7 at
// k0 + 2 pr and k0 + 2 pr + 1.
fn load_b16(lid: u32, n0: u32, k0: u32) {
    let pr = lid % 8u;
    let q = lid / 8u;
    let pair = k0 / 2u + pr;
    for (var j = 0u; j < 2u; j = j + 1u) {
        let g = 2u * q + j;
        let n = n0 + 4u * g;
        let w0 = w16_pair(n, pair);
        let w1 = w16_pair(n + 1u, pair);
        let w2 = w16_pair(n + 2u, pair);
        let w3 = w16_pair(n + 3u, pair);
        b16_tile[(2u * pr) * 16u + g] = WTile16(w0.x, w1.x, w2.x, w3.x);
        b16_tile[(2u * pr + 1u) * 16u + g] = WTile16(w0.y, w1.y, w2.y, w3.y);
    }
}

fn w32_at(n: u32, col: u32) -> f32 {
    if (n < p.n && col < p.k) {
        return w32[n * p.ldw + col];
    }
    return 0.0;
}

// The f32 W tile: invocation (kk = lid % 16, q = lid / 16) loads columns 16q..16q+15 at k0 + kk.
fn load_b32(lid: u32, n0: u32, k0: u32) {
    let kk = lid % TILE_K;
    let q = lid / TILE_K;
    let col = k0 + kk;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let g = 4u * q + j;
        let n = n0 + 4u * g;
        b_tile[kk * 16u + g] = vec4<f32>(w32_at(n, col), w32_at(n + 1u, col), w32_at(n + 2u, col), w32_at(n + 3u, col));
    }
}

// tile_product over b16_tile, each W vector widened to f32 as it is read (an identity without
// shader-f16).
fn tile_product16(acc_in: Acc, tx: u32, ty: u32) -> Acc {
    var c = acc_in;
    for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
        let a0 = a_tile[kk * 16u + 2u * ty];
        let a1 = a_tile[kk * 16u + 2u * ty + 1u];
        let b0 = vec4<f32>(b16_tile[kk * 16u + 2u * tx]);
        let b1 = vec4<f32>(b16_tile[kk * 16u + 2u * tx + 1u]);
        c = update8x8(c, a0, a1, b0, b1);
    }
    return c;
}

fn finish(c: Acc, m0: u32, n0: u32, tx: u32, ty: u32) {
    let row = m0 + 8u * ty;
    let col = n0 + 8u * tx;
    store4(row, col, c.c00);
    store4(row, col + 4u, c.c01);
    store4(row + 1u, col, c.c10);
    store4(row + 1u, col + 4u, c.c11);
    store4(row + 2u, col, c.c20);
    store4(row + 2u, col + 4u, c.c21);
    store4(row + 3u, col, c.c30);
    store4(row + 3u, col + 4u, c.c31);
    store4(row + 4u, col, c.c40);
    store4(row + 4u, col + 4u, c.c41);
    store4(row + 5u, col, c.c50);
    store4(row + 5u, col + 4u, c.c51);
    store4(row + 6u, col, c.c60);
    store4(row + 6u, col + 4u, c.c61);
    store4(row + 7u, col, c.c70);
    store4(row + 7u, col + 4u, c.c71);
}


// Dispatch (ceil(N / 64), ceil((M - row0) / 64), 1).
@compute @workgroup_size(64)
fn matmul_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = p.row0 + wg.y * 64u;
    let n0 = wg.x * 64u;
    let tx = lid % 8u;
    let ty = lid / 8u;
    var acc = zero();
    for (var k0 = 0u; k0 < p.k; k0 = k0 + TILE_K) {
        load_a(lid, m0, k0);
        load_b16(lid, n0, k0);
        workgroupBarrier();
        acc = tile_product16(acc, tx, ty);
        workgroupBarrier();
    }
    finish(acc, m0, n0, tx, ty);
}

@compute @workgroup_size(64)
fn matmul_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = p.row0 + wg.y * 64u;
    let n0 = wg.x * 64u;
    let tx = lid % 8u;
    let ty = lid / 8u;
    var acc = zero();
    for (var k0 = 0u; k0 < p.k; k0 = k0 + TILE_K) {
        load_a(lid, m0, k0);
        load_b32(lid, n0, k0);
        workgroupBarrier();
        acc = tile_product(acc, tx, ty);
        workgroupBarrier();
    }
    finish(acc, m0, n0, tx, ty);
}

// 16 x 64 tiles from row0: dispatch (ceil(N / 64), ceil((M - row0) / 16), 1). Invocation lid
// loads the x tile's 16 rows at k0 + lid (load_a's q = 0) and four quarters of the W tile; the
// register blocks are rows 8 ty..8 ty + 7 (ty = 0, 1) of the tile.
@compute @workgroup_size(16)
fn matmul_f16_rows16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = p.row0 + wg.y * 16u;
    let n0 = wg.x * 64u;
    let tx = lid % 8u;
    let ty = lid / 8u;
    var acc = zero();
    for (var k0 = 0u; k0 < p.k; k0 = k0 + TILE_K) {
        load_a(lid, m0, k0);
        load_b16(lid, n0, k0);
        load_b16(lid + 16u, n0, k0);
        load_b16(lid + 32u, n0, k0);
        load_b16(lid + 48u, n0, k0);
        workgroupBarrier();
        acc = tile_product16(acc, tx, ty);
        workgroupBarrier();
    }
    finish(acc, m0, n0, tx, ty);
}

@compute @workgroup_size(16)
fn matmul_f32_rows16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = p.row0 + wg.y * 16u;
    let n0 = wg.x * 64u;
    let tx = lid % 8u;
    let ty = lid / 8u;
    var acc = zero();
    for (var k0 = 0u; k0 < p.k; k0 = k0 + TILE_K) {
        load_a(lid, m0, k0);
        load_b32(lid, n0, k0);
        load_b32(lid + 16u, n0, k0);
        load_b32(lid + 32u, n0, k0);
        load_b32(lid + 48u, n0, k0);
        workgroupBarrier();
        acc = tile_product(acc, tx, ty);
        workgroupBarrier();
    }
    finish(acc, m0, n0, tx, ty);
}
