// LayerNorm over the last dimension: y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta.
//
// One 256-invocation workgroup per row. Two passes over the row (mean, then the mean of squared
// deviations) with f32 workgroup reductions (reduce.wgsl or reduce_subgroups.wgsl, which the
// host puts in front of this file): the two-pass form avoids the cancellation of
// E[x^2] - E[x]^2 on rows with a large mean (CLIP's residual stream has them).

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // (R, D) f32
@group(0) @binding(2) var<storage, read> gamma: array<f32>;    // (D,) f32
@group(0) @binding(3) var<storage, read> beta: array<f32>;     // (D,) f32
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (R, D) f32

const WG: u32 = 256u;

// Dispatch (R, 1, 1); rows past 65535 are not needed (B * T stays far below).
@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, l: Lanes) {
    let lid = l.lid;
    let row = wg.x;
    let base = row * p.d;
    var s = 0.0;
    for (var c = lid; c < p.d; c = c + WG) {
        s = s + x[base + c];
    }
    let mean = reduce_sum(l, s) / f32(p.d);
    var q = 0.0;
    for (var c = lid; c < p.d; c = c + WG) {
        let dv = x[base + c] - mean;
        q = q + dv * dv;
    }
    let variance = reduce_sum(l, q) / f32(p.d);
    let inv = inverseSqrt(variance + p.eps);
    for (var c = lid; c < p.d; c = c + WG) {
        y[base + c] = (x[base + c] - mean) * inv * gamma[c] + beta[c];
    }
}
