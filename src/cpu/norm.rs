//! Layer normalization over the last dimension (PyTorch's `nn.LayerNorm`).

use super::threads::for_each_chunk;

/// The affine parameters of a layer norm.
pub(crate) struct LayerNorm {
    pub weight: Vec<f32>, // (D,)
    pub bias: Vec<f32>,   // (D,)
}

/// `y (R, D) = (x - mean) / sqrt(var + eps) * weight + bias` per row of x (R, D), two-pass
/// statistics in f64 (a residual stream with a large mean keeps its variance's digits); rows on
/// all cores natively.
pub(crate) fn layer_norm(x: &[f32], ln: &LayerNorm, eps: f32) -> Vec<f32> {
    let d = ln.weight.len();
    let mut y = x.to_vec();
    if d == 0 {
        return y;
    }
    // About 64 KiB of rows per task.
    let rows = (16384 / d).max(1);
    for_each_chunk(&mut y, rows * d, |rows| {
        for row in rows.chunks_exact_mut(d) {
            let mean = sum_f64(row, |v| v as f64) / d as f64;
            let var = sum_f64(row, |v| (v as f64 - mean).powi(2)) / d as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for (v, (w, b)) in row.iter_mut().zip(ln.weight.iter().zip(&ln.bias)) {
                *v = (((*v as f64 - mean) * inv) as f32) * w + b;
            }
        }
    });
    y
}

/// `sum f(v)` over the row in eight interleaved partial sums: one chain of D dependent f64
/// adds (4 cycles each) was most of a layer norm's time. f64 sums of f32-sized terms are exact
/// far below f32's precision in any order.
#[inline(always)]
fn sum_f64(row: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = row.chunks_exact(8);
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += f(v);
    }
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    lanes.iter().sum()
}
