//! Layer normalization over the last dimension (PyTorch's `nn.LayerNorm`).

/// The affine parameters of a layer norm.
pub(crate) struct LayerNorm {
    pub weight: Vec<f32>, // (D,)
    pub bias: Vec<f32>,   // (D,)
}

/// `y (R, D) = (x - mean) / sqrt(var + eps) * weight + bias` per row of x (R, D), two-pass
/// statistics in f64 (a residual stream with a large mean keeps its variance's digits).
pub(crate) fn layer_norm(x: &[f32], ln: &LayerNorm, eps: f32) -> Vec<f32> {
    let d = ln.weight.len();
    let mut y = vec![0.0f32; x.len()];
    for (row, out) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for i in 0..d {
            out[i] = (((row[i] as f64 - mean) * inv) as f32) * ln.weight[i] + ln.bias[i];
        }
    }
    y
}
