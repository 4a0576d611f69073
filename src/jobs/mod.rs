//! Work over a loaded model: the Science-T2I benchmark (`eval`), manifests of many images
//! (`batch`, sharded and merged) and the forward-pass benchmark (`bench`).

#[cfg(not(target_arch = "wasm32"))]
pub mod batch;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod eval;
