//! The GPU engine: a wgpu device, the compute pipelines of `shaders/*.wgsl` (created once), and
//! a recorder that turns kernel calls into one command buffer.
//!
//! Native (Vulkan / Metal / DX12) and wasm32 (WebGPU) share every line here: the only waits are
//! `map_async` callbacks delivered through a oneshot channel, which native drives with
//! `device.poll` (a no-op wait in the browser, where the event loop delivers them).
//!
//! Weights live on the GPU as f16 pairs packed in `u32` (f32 optional); activations and every
//! accumulation are f32. No optional feature is required. Used when the adapter has them:
//! `timestamp-query` (the benchmark's per-kernel times), `subgroups` (the reductions of layer
//! norm and softmax, `shaders/reduce_subgroups.wgsl`; natively only, as wgpu 30 does not offer
//! it on the web) and `shader-f16` (the tiled matmul's W tile holds the f16 weights as f16 in
//! workgroup memory, `shaders/wtile_f16.wgsl`: half the tile's memory and load bytes, the same
//! f32 products bit for bit). The kernels for CPU adapters (`matmul_direct.wgsl`) keep reading
//! packed pairs with `unpack2x16float`: reading them as `vec4<f16>` measured 14-20% slower on
//! llvmpipe (257x1280x5120: 9.5-9.6 against 10.9-11.2 GFLOP/s, 16 x 8 blocks, identical output).

#[cfg(all(test, not(target_arch = "wasm32")))]
mod dev;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

mod buffers;
mod device;
mod kernels;
mod pass;

pub(crate) use buffers::{pack_rows, row_words, GpuLayerNorm, GpuLinear};
pub(crate) use device::Gpu;
#[cfg(any(test, feature = "selftest"))]
pub(crate) use kernels::KernelFamily;
pub use kernels::{shader_modules, ShaderFeatures};
pub(crate) use pass::{Epilogue, Pass};
