// The matmul epilogue shared by matmul.wgsl and matmul_direct.wgsl: the kernel table
// (src/gpu/kernels.rs) puts this file in front of each (tests/shaders.rs validates them so). It
// reads the including file's `p` (the uniform Params below), `bias` and `y` bindings.
//
// Per output: y = act(acc + bias) or y += acc + bias (the residual stream), bounds-checked.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    ldw: u32,       // row stride of W in its storage words (u32 pairs or f32)
    has_bias: u32,  // 1: add bias[n]
    act: u32,       // 0: none, 1: exact GELU (erf), 2: quick_gelu x * sigmoid(1.702 x)
    accumulate: u32,// 1: y += result (residual add into y)
    row0: u32,      // first row of the dispatch (the 16-row remainder kernels; 0 in direct)
}

// erf(x) by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7 in exact arithmetic, 6.1e-7 measured
// in f32 on [-10, 10]; tested against f64 erf on a dense grid): erfc(z) = t (a1 + t (a2 + ...))
// exp(-z^2), t = 1 / (1 + 0.3275911 z), z >= 0. Returned as erfc so that GELU of negative
// inputs does not lose its digits to 1 + erf cancellation.
fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return poly * exp(-z * z);
}

// GELU(v) = 0.5 v (1 + erf(v / sqrt 2)); 1 + erf(-z) = erfc(z).
fn gelu(v: f32) -> f32 {
    let z = abs(v) * 0.70710678118654752;
    let c = erfc_nonneg(z);
    let one_plus_erf = select(c, 2.0 - c, v >= 0.0);
    return 0.5 * v * one_plus_erf;
}

fn epilogue(row: u32, col: u32, acc: f32) {
    if (row >= p.m || col >= p.n) {
        return;
    }
    var v = acc;
    if (p.has_bias == 1u) {
        v = v + bias[col];
    }
    if (p.act == 1u) {
        v = gelu(v);
    } else if (p.act == 2u) {
        v = v / (1.0 + exp(-1.702 * v));
    }
    let i = row * p.n + col;
    if (p.accumulate == 1u) {
        v = v + y[i];
    }
    y[i] = v;
}

fn store4(row: u32, col: u32, acc: vec4<f32>) {
    epilogue(row, col, acc.x);
    epilogue(row, col + 1u, acc.y);
    epilogue(row, col + 2u, acc.z);
    epilogue(row, col + 3u, acc.w);
}
