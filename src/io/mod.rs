//! Where weights come from: byte-range sources (a folder, browser files, HTTP ranges), the
//! safetensors reader, the random-weights source of the benchmarks, and the f16 converter.

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod random;
pub(crate) mod safetensors;
pub mod source;

pub use safetensors::{read_f32_tensors, F32Tensors};
