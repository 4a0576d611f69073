//! Work over a loaded model: the Science-T2I benchmark (`eval`), manifests of many images
//! (`batch`, sharded and merged), region maps of a score (`explain`) and the forward-pass
//! benchmark (`bench`).

#[cfg(not(target_arch = "wasm32"))]
pub mod batch;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod eval;
/// Region maps: the patch map and the occlusion map of a (prompt, image) score.
pub mod explain;
