//! The CPU engine's kernels, which know no model: the packed SIMD matrix product.

#[cfg(any(test, feature = "selftest", target_arch = "wasm32"))]
pub(crate) mod sgemm;
