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
// 8 x 8 register block, K stepping 16 at a time through workgroup memory: tile8x8.wgsl, which
// the host puts in front of this file (as it does for matmul.wgsl).
// Adapters that run on the CPU get `attn_scores_direct` / `attn_context_direct` instead (at the
// end of the file): smaller blocks read straight from memory, faster there for the reason
// matmul_direct.wgsl gives.

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

// The 8 x 8 block at (row, col) of the scores / the context, bounds-checked. Two functions, not
// one with a flag: a kernel's bindings are those its code references, and the scores kernels
// must not bind ctx, nor the context kernels the scores as read_write.
fn store_scores(z: u32, row: u32, col: u32, acc: Acc) {
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

fn store_ctx(z: u32, row: u32, col: u32, acc: Acc) {
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
    store_scores(z, row, col, acc);
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
    store_ctx(z, row, col, acc);
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

// ---------------------------------------------------------------------------------------------
// The same two products for adapters that run on the CPU (lavapipe, SwiftShader), like
// matmul_direct.wgsl: no workgroup memory, no barriers, operands read straight from qkv and the
// probabilities. A workgroup of 8 invocations covers 16 rows x 32 columns, each invocation an
// 8 x 8 block (rb = lid / 4 picks the rows, cb = lid % 4 the columns): at T = 257 and Dh = 80
// that computes 272 x 288 scores and 272 x 96 context values, against 320 x 320 and 320 x 128
// with the 64 x 64 tiles. Rows and columns past the end read the last one (finite) and are not
// stored, so any T and Dh work.

// Acc (block row r) += a[r] * (b_lo, b_hi).
fn rank1(c_in: Acc, a0: f32, a1: f32, a2: f32, a3: f32, a4: f32, a5: f32, a6: f32, a7: f32, lo: vec4<f32>, hi: vec4<f32>) -> Acc {
    var c = c_in;
    c.c00 = fma(vec4<f32>(a0), lo, c.c00);
    c.c01 = fma(vec4<f32>(a0), hi, c.c01);
    c.c10 = fma(vec4<f32>(a1), lo, c.c10);
    c.c11 = fma(vec4<f32>(a1), hi, c.c11);
    c.c20 = fma(vec4<f32>(a2), lo, c.c20);
    c.c21 = fma(vec4<f32>(a2), hi, c.c21);
    c.c30 = fma(vec4<f32>(a3), lo, c.c30);
    c.c31 = fma(vec4<f32>(a3), hi, c.c31);
    c.c40 = fma(vec4<f32>(a4), lo, c.c40);
    c.c41 = fma(vec4<f32>(a4), hi, c.c41);
    c.c50 = fma(vec4<f32>(a5), lo, c.c50);
    c.c51 = fma(vec4<f32>(a5), hi, c.c51);
    c.c60 = fma(vec4<f32>(a6), lo, c.c60);
    c.c61 = fma(vec4<f32>(a6), hi, c.c61);
    c.c70 = fma(vec4<f32>(a7), lo, c.c70);
    c.c71 = fma(vec4<f32>(a7), hi, c.c71);
    return c;
}

// Offset in qkv of token `tok` (clamped to the sequence) of sequence z / heads, part `part`
// (0 q, 1 k, 2 v), at the first channel of head z % heads.
fn head_row(z: u32, tok: u32, part: u32) -> u32 {
    return ((z / p.heads) * p.t + min(tok, p.t - 1u)) * 3u * p.d + part * p.d + (z % p.heads) * p.dh;
}

// s = scale * q k^T. Dispatch (ceil(T / 32), ceil(T / 16), B * H).
@compute @workgroup_size(8)
fn attn_scores_direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wg.z;
    let i0 = wg.y * 16u + 8u * (lid / 4u);
    let j0 = wg.x * 32u + 8u * (lid % 4u);
    if (i0 >= p.t || j0 >= p.t || (p.causal == 1u && j0 > i0 + 7u)) {
        return; // outside, or wholly above the diagonal: attn_softmax writes the masked zeros
    }
    let q0 = head_row(z, i0, 0u);
    let q1 = head_row(z, i0 + 1u, 0u);
    let q2 = head_row(z, i0 + 2u, 0u);
    let q3 = head_row(z, i0 + 3u, 0u);
    let q4 = head_row(z, i0 + 4u, 0u);
    let q5 = head_row(z, i0 + 5u, 0u);
    let q6 = head_row(z, i0 + 6u, 0u);
    let q7 = head_row(z, i0 + 7u, 0u);
    let k0 = head_row(z, j0, 1u);
    let k1 = head_row(z, j0 + 1u, 1u);
    let k2 = head_row(z, j0 + 2u, 1u);
    let k3 = head_row(z, j0 + 3u, 1u);
    let k4 = head_row(z, j0 + 4u, 1u);
    let k5 = head_row(z, j0 + 5u, 1u);
    let k6 = head_row(z, j0 + 6u, 1u);
    let k7 = head_row(z, j0 + 7u, 1u);
    var acc = zero();
    for (var c = 0u; c < p.dh; c = c + 1u) {
        let lo = vec4<f32>(qkv[k0 + c], qkv[k1 + c], qkv[k2 + c], qkv[k3 + c]);
        let hi = vec4<f32>(qkv[k4 + c], qkv[k5 + c], qkv[k6 + c], qkv[k7 + c]);
        acc = rank1(acc, qkv[q0 + c], qkv[q1 + c], qkv[q2 + c], qkv[q3 + c], qkv[q4 + c], qkv[q5 + c], qkv[q6 + c], qkv[q7 + c], lo, hi);
    }
    store_scores(z, i0, j0, acc);
}

// ctx = p v. Dispatch (ceil(Dh / 32), ceil(T / 16), B * H).
@compute @workgroup_size(8)
fn attn_context_direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wg.z;
    let i0 = wg.y * 16u + 8u * (lid / 4u);
    let c0 = wg.x * 32u + 8u * (lid % 4u);
    if (i0 >= p.t || c0 >= p.dh) {
        return;
    }
    // Causal rows i0..i0+7 have zero probabilities past key i0 + 7.
    let keys = select(p.t, min(p.t, i0 + 8u), p.causal == 1u);
    let last_i = p.t - 1u;
    let p0 = (z * p.t + min(i0, last_i)) * p.t;
    let p1 = (z * p.t + min(i0 + 1u, last_i)) * p.t;
    let p2 = (z * p.t + min(i0 + 2u, last_i)) * p.t;
    let p3 = (z * p.t + min(i0 + 3u, last_i)) * p.t;
    let p4 = (z * p.t + min(i0 + 4u, last_i)) * p.t;
    let p5 = (z * p.t + min(i0 + 5u, last_i)) * p.t;
    let p6 = (z * p.t + min(i0 + 6u, last_i)) * p.t;
    let p7 = (z * p.t + min(i0 + 7u, last_i)) * p.t;
    let last_c = p.dh - 1u;
    let e0 = min(c0, last_c);
    let e1 = min(c0 + 1u, last_c);
    let e2 = min(c0 + 2u, last_c);
    let e3 = min(c0 + 3u, last_c);
    let e4 = min(c0 + 4u, last_c);
    let e5 = min(c0 + 5u, last_c);
    let e6 = min(c0 + 6u, last_c);
    let e7 = min(c0 + 7u, last_c);
    // v of key j starts at v0 + j * 3D (j < T: no clamp).
    let v0 = head_row(z, 0u, 2u);
    var acc = zero();
    for (var j = 0u; j < keys; j = j + 1u) {
        let v = v0 + j * 3u * p.d;
        let lo = vec4<f32>(qkv[v + e0], qkv[v + e1], qkv[v + e2], qkv[v + e3]);
        let hi = vec4<f32>(qkv[v + e4], qkv[v + e5], qkv[v + e6], qkv[v + e7]);
        acc = rank1(acc, probs[p0 + j], probs[p1 + j], probs[p2 + j], probs[p3 + j], probs[p4 + j], probs[p5 + j], probs[p6 + j], probs[p7 + j], lo, hi);
    }
    store_ctx(z, i0, c0, acc);
}
