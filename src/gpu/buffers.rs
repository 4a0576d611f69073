//! The weight buffers the kernels read: a Linear layer's matrix (f16 pairs packed in `u32`, or
//! f32) with its bias, and a LayerNorm's vectors.
//!
//! Matrix layout: PyTorch's (out, in) row-major. f16: pairs packed in `u32`, row stride
//! ceil(in / 2) words with a zero pad half when `in` is odd (shaders/matmul.wgsl `ldw`).

// Only tests and the native benchmark build buffers from host values.
#[cfg(any(test, feature = "selftest", not(target_arch = "wasm32")))]
use {super::device::Gpu, crate::error::Result};

/// `y = x W^T + b` on the GPU.
pub(crate) struct GpuLinear {
    pub weight: wgpu::Buffer,       // (out, ldw) f16 pairs in u32, or f32
    pub bias: Option<wgpu::Buffer>, // (out,) f32
    pub out_features: usize,
    pub in_features: usize,
    /// Row stride of `weight` in its storage words.
    pub ldw: usize,
    pub f16: bool,
}

/// `y = (x - mean) / sqrt(var + eps) * weight + bias` over rows on the GPU.
pub(crate) struct GpuLayerNorm {
    pub weight: wgpu::Buffer, // (D,) f32
    pub bias: wgpu::Buffer,   // (D,) f32
}

/// Converts one row-chunk of f32 values, `rows` x `cols`, to the storage words of a matrix.
pub(crate) fn pack_rows(vals: &[f32], cols: usize, f16: bool) -> Vec<u32> {
    if !f16 {
        return vals.iter().map(|v| v.to_bits()).collect();
    }
    let ld = cols.div_ceil(2);
    let mut out = Vec::with_capacity(vals.len() / cols.max(1) * ld);
    for row in vals.chunks_exact(cols) {
        for pair in row.chunks(2) {
            let lo = half::f16::from_f32(pair[0]).to_bits() as u32;
            let hi = pair
                .get(1)
                .map_or(0, |&v| half::f16::from_f32(v).to_bits() as u32);
            out.push(lo | (hi << 16));
        }
    }
    out
}

/// Row stride in storage words of a matrix with `cols` columns.
pub(crate) fn row_words(cols: usize, f16: bool) -> usize {
    if f16 {
        cols.div_ceil(2)
    } else {
        cols
    }
}

impl GpuLinear {
    /// From host f32 values (tests, the native benchmark): weight (out, in), bias (out,).
    #[cfg(any(test, feature = "selftest", not(target_arch = "wasm32")))]
    pub fn from_f32(
        gpu: &Gpu,
        w: &[f32],
        bias: Option<&[f32]>,
        out_f: usize,
        in_f: usize,
        f16: bool,
    ) -> Result<GpuLinear> {
        let ldw = row_words(in_f, f16);
        let weight = gpu.upload("linear", bytemuck::cast_slice(&pack_rows(w, in_f, f16)))?;
        let bias = bias
            .map(|b| gpu.upload("bias", bytemuck::cast_slice(b)))
            .transpose()?;
        Ok(GpuLinear {
            weight,
            bias,
            out_features: out_f,
            in_features: in_f,
            ldw,
            f16,
        })
    }

    /// Bytes of GPU memory held.
    pub(crate) fn bytes(&self) -> u64 {
        self.weight.size() + self.bias.as_ref().map_or(0, |b| b.size())
    }
}

impl GpuLayerNorm {
    /// From host f32 values (tests).
    #[cfg(any(test, feature = "selftest"))]
    pub fn from_f32(gpu: &Gpu, w: &[f32], b: &[f32]) -> Result<GpuLayerNorm> {
        Ok(GpuLayerNorm {
            weight: gpu.upload("ln.weight", bytemuck::cast_slice(w))?,
            bias: gpu.upload("ln.bias", bytemuck::cast_slice(b))?,
        })
    }
}
