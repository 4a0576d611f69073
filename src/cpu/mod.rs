//! The CPU engine: plain f32 ops that know no model, each over row-major slices with its shape
//! in the doc. Natively the products run on the `gemm` crate and the rest on all cores (rayon);
//! in the browser on one thread with the packed SIMD128 product of `sgemm`.
//!
//! - `matmul`: weights in their stored precision (`Matrix`), `Linear`, `linear` and
//!   `linear_into` (an `Epilogue` as on the GPU: store, GELU, QuickGELU, residual add), `gemm_nt`;
//! - `norm`: `LayerNorm`, `layer_norm`;
//! - `attention`: multi-head scaled dot-product attention, `softmax_row`;
//! - `pointwise`: the residual `add`, `gelu`, `quick_gelu`;
//! - `sgemm`: the browser's packed product; `dot_avx512`: few rows natively on AVX-512;
//!   `threads`: the split over cores;
//! - `selftest` + `tests`: the checks against f64 references.

mod attention;
#[cfg(target_arch = "x86_64")]
mod dot_avx512;
mod matmul;
mod norm;
#[cfg(target_arch = "x86_64")]
mod packed_avx512;
mod pointwise;
#[cfg(any(test, feature = "selftest"))]
pub(crate) mod selftest;
#[cfg(any(test, feature = "selftest", target_arch = "wasm32"))]
pub(crate) mod sgemm;
#[cfg(test)]
mod tests;
mod threads;

pub(crate) use attention::attention;
#[cfg(feature = "selftest")] // the CPU profile of `models::clip::cpu_profile`
pub(crate) use attention::softmax_row;
pub(crate) use matmul::{gemm_nt, linear, linear_into, Epilogue, Linear, Matrix};
pub(crate) use norm::{layer_norm, LayerNorm};
