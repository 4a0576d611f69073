// Multi-head self-attention core: ctx = softmax(q k^T / sqrt(Dh) [+ causal mask]) v, per head,
// in three steps per (batch, head):
//   attn_scores:  s (T, T) = scale * q (T, Dh) . k (T, Dh)^T        tiled like matmul.wgsl
//   attn_softmax: p = softmax(s) per row, max-subtracted; causal rows see keys 0..=i only
//   attn_context: ctx (T, Dh) = p (T, T) . v (T, Dh)                 tiled like matmul.wgsl
// q, k, v come side by side from the fused QKV projection, (B*T, 3D) with D = H * Dh; the
// context is written with the heads side by side, (B*T, D), ready for out_proj. Any head width
// works (CLIP-H: 80 and 64; the test models: 14, 15): tiles are bounds-checked.
//
// Why not one fused (flash) kernel: on lavapipe a kernel's cost follows its memory loads per
// FMA, and a fused kernel with a runtime head width cannot keep its accumulators in registers;
// the two products reuse matmul.wgsl's 8 x 8 register blocks and the (B*H, T, T) scores cost
// 4.2 MB per image at T = 257.
//
// Tiles: one 64-invocation workgroup computes a 64 x 64 tile of the product, each invocation an
// 8 x 8 register block, K stepping 16 at a time through workgroup memory (see matmul.wgsl).

struct Params {
    t: u32,       // tokens per sequence
    d: u32,       // model width D = H * Dh
    dh: u32,      // head width
    heads: u32,   // H
    causal: u32,  // 1: query i sees keys 0..=i (text tower)
    scale: f32,   // Dh^-0.5, as transformers scales q
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;          // (B*T, 3D) f32: [q | k | v]
@group(0) @binding(2) var<storage, read_write> scores: array<f32>; // (B*H, T, T) f32
@group(0) @binding(3) var<storage, read> probs: array<f32>;        // (B*H, T, T) f32 (= scores)
@group(0) @binding(4) var<storage, read_write> ctx: array<f32>;    // (B*T, D) f32

const TILE_K: u32 = 16u;

var<workgroup> a_tile: array<vec4<f32>, 256>; // (16 k, 16 x 4 rows)
var<workgroup> b_tile: array<vec4<f32>, 256>; // (16 k, 16 x 4 cols)

// Element (row, k) of the left operand and (col, k) of the right one, zero outside the product.
// scores: left = q (rows i, k = channel), right = k (cols j, k = channel).
// context: left = p (rows i, k = key j), right = v^T (cols = channel, k = key j).
fn q_at(z: u32, i: u32, c: u32) -> f32 {
    if (i < p.t && c < p.dh) {
        return qkv[((z / p.heads) * p.t + i) * 3u * p.d + (z % p.heads) * p.dh + c];
    }
    return 0.0;
}

fn k_at(z: u32, j: u32, c: u32) -> f32 {
    if (j < p.t && c < p.dh) {
        return qkv[((z / p.heads) * p.t + j) * 3u * p.d + p.d + (z % p.heads) * p.dh + c];
    }
    return 0.0;
}

fn p_at(z: u32, i: u32, j: u32) -> f32 {
    if (i < p.t && j < p.t) {
        return probs[(z * p.t + i) * p.t + j];
    }
    return 0.0;
}

fn v_at(z: u32, c: u32, j: u32) -> f32 {
    if (c < p.dh && j < p.t) {
        return qkv[((z / p.heads) * p.t + j) * 3u * p.d + 2u * p.d + (z % p.heads) * p.dh + c];
    }
    return 0.0;
}

// Invocation (kk = lid % 16, q = lid / 16) loads rows (cols) 16q..16q+15 at k0 + kk: q and k.
fn load_scores(lid: u32, z: u32, m0: u32, n0: u32, k0: u32) {
    let kk = lid % TILE_K;
    let q = lid / TILE_K;
    let k = k0 + kk;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let g = 4u * q + j;
        let r = m0 + 4u * g;
        a_tile[kk * 16u + g] = vec4<f32>(q_at(z, r, k), q_at(z, r + 1u, k), q_at(z, r + 2u, k), q_at(z, r + 3u, k));
        let c = n0 + 4u * g;
        b_tile[kk * 16u + g] = vec4<f32>(k_at(z, c, k), k_at(z, c + 1u, k), k_at(z, c + 2u, k), k_at(z, c + 3u, k));
    }
}

// The same for p and v^T.
fn load_context(lid: u32, z: u32, m0: u32, n0: u32, k0: u32) {
    let kk = lid % TILE_K;
    let q = lid / TILE_K;
    let k = k0 + kk;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let g = 4u * q + j;
        let r = m0 + 4u * g;
        a_tile[kk * 16u + g] = vec4<f32>(p_at(z, r, k), p_at(z, r + 1u, k), p_at(z, r + 2u, k), p_at(z, r + 3u, k));
        let c = n0 + 4u * g;
        b_tile[kk * 16u + g] = vec4<f32>(v_at(z, c, k), v_at(z, c + 1u, k), v_at(z, c + 2u, k), v_at(z, c + 3u, k));
    }
}

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

fn tile_product(acc_in: Acc, tx: u32, ty: u32) -> Acc {
    var c = acc_in;
    for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
        let a0 = a_tile[kk * 16u + 2u * ty];
        let a1 = a_tile[kk * 16u + 2u * ty + 1u];
        let b0 = b_tile[kk * 16u + 2u * tx];
        let b1 = b_tile[kk * 16u + 2u * tx + 1u];
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
    }
    return c;
}

fn zero() -> Acc {
    let z = vec4<f32>(0.0);
    return Acc(z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
}

// Row i of an invocation's 8 x 8 block (the store loop is not hot: it runs once per tile).
struct Row8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn block_row(c: Acc, i: u32) -> Row8 {
    switch i {
        case 0u: { return Row8(c.c00, c.c01); }
        case 1u: { return Row8(c.c10, c.c11); }
        case 2u: { return Row8(c.c20, c.c21); }
        case 3u: { return Row8(c.c30, c.c31); }
        case 4u: { return Row8(c.c40, c.c41); }
        case 5u: { return Row8(c.c50, c.c51); }
        case 6u: { return Row8(c.c60, c.c61); }
        default: { return Row8(c.c70, c.c71); }
    }
}

fn put_score(z: u32, i: u32, j: u32, v: f32) {
    if (i < p.t && j < p.t) {
        scores[(z * p.t + i) * p.t + j] = v * p.scale;
    }
}

fn put_ctx(z: u32, i: u32, c: u32, v: f32) {
    if (i < p.t && c < p.dh) {
        ctx[((z / p.heads) * p.t + i) * p.d + (z % p.heads) * p.dh + c] = v;
    }
}

// s = scale * q k^T. Dispatch (ceil(T / 64), ceil(T / 64), B * H).
@compute @workgroup_size(64)
fn attn_scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (p.causal == 1u && wg.x > wg.y) {
        return; // wholly above the diagonal: masked, attn_softmax writes these zeros
    }
    let z = wg.z;
    let m0 = wg.y * 64u;
    let n0 = wg.x * 64u;
    var acc = zero();
    for (var k0 = 0u; k0 < p.dh; k0 = k0 + TILE_K) {
        load_scores(lid, z, m0, n0, k0);
        workgroupBarrier();
        acc = tile_product(acc, lid % 8u, lid / 8u);
        workgroupBarrier();
    }
    let row = m0 + 8u * (lid / 8u);
    let col = n0 + 8u * (lid % 8u);
    for (var i = 0u; i < 8u; i = i + 1u) {
        let r = block_row(acc, i);
        put_score(z, row + i, col, r.lo.x);
        put_score(z, row + i, col + 1u, r.lo.y);
        put_score(z, row + i, col + 2u, r.lo.z);
        put_score(z, row + i, col + 3u, r.lo.w);
        put_score(z, row + i, col + 4u, r.hi.x);
        put_score(z, row + i, col + 5u, r.hi.y);
        put_score(z, row + i, col + 6u, r.hi.z);
        put_score(z, row + i, col + 7u, r.hi.w);
    }
}

// ctx = p v. Dispatch (ceil(Dh / 64), ceil(T / 64), B * H).
@compute @workgroup_size(64)
fn attn_context(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Causal rows m0..m0+63 have zero probabilities past key m0 + 63.
    let keys = select(p.t, min(p.t, wg.y * 64u + 64u), p.causal == 1u);
    let z = wg.z;
    let m0 = wg.y * 64u;
    let n0 = wg.x * 64u;
    var acc = zero();
    for (var k0 = 0u; k0 < keys; k0 = k0 + TILE_K) {
        load_context(lid, z, m0, n0, k0);
        workgroupBarrier();
        acc = tile_product(acc, lid % 8u, lid / 8u);
        workgroupBarrier();
    }
    let row = m0 + 8u * (lid / 8u);
    let col = n0 + 8u * (lid % 8u);
    for (var i = 0u; i < 8u; i = i + 1u) {
        let r = block_row(acc, i);
        put_ctx(z, row + i, col, r.lo.x);
        put_ctx(z, row + i, col + 1u, r.lo.y);
        put_ctx(z, row + i, col + 2u, r.lo.z);
        put_ctx(z, row + i, col + 3u, r.lo.w);
        put_ctx(z, row + i, col + 4u, r.hi.x);
        put_ctx(z, row + i, col + 5u, r.hi.y);
        put_ctx(z, row + i, col + 6u, r.hi.z);
        put_ctx(z, row + i, col + 7u, r.hi.w);
    }
}

// The softmax's workgroup size; its reductions come from reduce.wgsl or reduce_subgroups.wgsl,
// which the host puts in front of this file.
const WG: u32 = 64u;

// p[z, i] = softmax(s[z, i, 0..keys]) in place, zero past the causal horizon.
// Dispatch (T, B * H).
@compute @workgroup_size(64)
fn attn_softmax(@builtin(workgroup_id) wg: vec3<u32>, l: Lanes) {
    let lid = l.lid;
    let i = wg.x;
    let base = (wg.y * p.t + i) * p.t;
    var keys = p.t;
    if (p.causal == 1u) {
        keys = i + 1u;
    }
    var m = -3.4e38;
    for (var j = lid; j < keys; j = j + WG) {
        m = max(m, scores[base + j]);
    }
    m = reduce_max(l, m);
    var sum = 0.0;
    for (var j = lid; j < keys; j = j + WG) {
        let e = exp(scores[base + j] - m);
        scores[base + j] = e;
        sum = sum + e;
    }
    let inv = 1.0 / reduce_sum(l, sum);
    for (var j = lid; j < p.t; j = j + WG) {
        if (j < keys) {
            scores[base + j] = scores[base + j] * inv;
        } else {
            scores[base + j] = 0.0;
        }
    }
}
