// Multi-head self-attention core: ctx = softmax(q k^T / sqrt(Dh) [+ causal mask]) v, per head.
//
// q, k, v come side by side from the fused QKV projection, (B*T, 3D) with D = H * Dh; the
// context is written with the heads side by side, (B*T, D), ready for out_proj. Any head width
// works (CLIP-H: 80 and 64; the test models: 14, 15, 8).
//
// One 64-invocation workgroup per (query, head, batch): the scores of the query against all
// keys go to workgroup memory (T <= 1024), then a max-subtracted softmax with f32 tree
// reductions, then each invocation accumulates output channels d = lid, lid + 64, ... over keys.
// Attention is ~3% of CLIP-H's FLOPs (4 T^2 D vs 2 T D (4D + 2F) per layer), so this simple
// form costs little next to the matmuls.

struct Params {
    t: u32,        // tokens per sequence
    d: u32,        // model width D = H * Dh
    dh: u32,       // head width
    causal: u32,   // 1: query i sees keys 0..=i (text tower)
    scale: f32,    // Dh^-0.5, as transformers scales q
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;       // (B*T, 3D) f32: [q | k | v]
@group(0) @binding(2) var<storage, read_write> ctx: array<f32>; // (B*T, D) f32

const WG: u32 = 64u;
const MAX_T: u32 = 1024u; // 4 KiB of scores; 577 tokens (ViT at 336 px) fits.

var<workgroup> scores: array<f32, 1024>;
var<workgroup> red: array<f32, 64>;
var<workgroup> q_row: array<f32, 256>; // Dh <= 256

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] = red[lid] + red[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// Dispatch (T, H, B).
@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wg.x;
    let head = wg.y;
    let b = wg.z;
    let stride = 3u * p.d;
    let seq = b * p.t;
    let q_off = (seq + i) * stride + head * p.dh;
    let k_off = p.d + head * p.dh;
    let v_off = 2u * p.d + head * p.dh;
    var keys = p.t;
    if (p.causal == 1u) {
        keys = i + 1u;
    }
    for (var c = lid; c < p.dh; c = c + WG) {
        q_row[c] = qkv[q_off + c];
    }
    workgroupBarrier();
    // scores_j = (q . k_j) * scale
    var local_max = -3.4e38;
    for (var j = lid; j < keys; j = j + WG) {
        let kb = (seq + j) * stride + k_off;
        var s = 0.0;
        for (var c = 0u; c < p.dh; c = c + 1u) {
            s = fma(q_row[c], qkv[kb + c], s);
        }
        s = s * p.scale;
        scores[j] = s;
        local_max = max(local_max, s);
    }
    let m = reduce(lid, local_max, true);
    var local_sum = 0.0;
    for (var j = lid; j < keys; j = j + WG) {
        let e = exp(scores[j] - m);
        scores[j] = e;
        local_sum = local_sum + e;
    }
    let inv = 1.0 / reduce(lid, local_sum, false);
    // ctx_c = sum_j p_j v_jc
    let out_off = (seq + i) * p.d + head * p.dh;
    for (var c = lid; c < p.dh; c = c + WG) {
        var acc = 0.0;
        for (var j = 0u; j < keys; j = j + 1u) {
            acc = fma(scores[j], qkv[(seq + j) * stride + v_off + c], acc);
        }
        ctx[out_off + c] = acc * inv;
    }
}
