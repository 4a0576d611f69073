//! The GPU engine: it knows kernels and buffers, no model. `device.rs` opens a wgpu device
//! (adapter, limits, optional features, error mapping, buffers and readback); `kernels.rs` is
//! the kernel table (each compute pipeline's `shaders/` file, entry point and shared WGSL parts,
//! compiled once) and the kernel family chosen per device; `pass.rs` records kernel calls into
//! one command buffer; `buffers.rs` holds the weight buffers the kernels read. `tests.rs` checks
//! the kernels, `dev.rs` is the kernel-tuning harness.
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
//! packed pairs with `unpack2x16float`, which measured faster there than `vec4<f16>` reads.

mod buffers;
mod device;
mod kernels;
mod pass;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod dev;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

pub(crate) use buffers::{pack_rows, row_words, GpuLayerNorm, GpuLinear};
pub(crate) use device::Gpu;
#[cfg(any(test, feature = "selftest"))]
pub(crate) use kernels::KernelFamily;
pub use kernels::{shader_modules, ShaderFeatures};
pub(crate) use pass::{Epilogue, Pass};
