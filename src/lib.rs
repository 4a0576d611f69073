//! sciscore: scientific-accuracy scores for generated images with SciScore (Science-T2I,
//! CVPR 2025) and other CLIP-family reward models (PickScore, HPSv2, CLIP-H), computed locally.
//!
//! ```no_run
//! # async fn demo() -> sciscore::Result<()> {
//! let src = sciscore::DirSource::new("models/SciScore")?;
//! let model = sciscore::Model::load(&src, sciscore::Backend::Cpu).await?;
//! let png = std::fs::read("a.png").unwrap();
//! let scores = model.score("an ice cube melting in the sun", &[sciscore::ImageInput { name: "a.png", bytes: &png }]).await?;
//! # Ok(()) }
//! ```

pub mod config;
mod cpu;
mod error;
mod gpu;
mod model;
pub mod preprocess;
mod safetensors;
pub mod score;
#[cfg(any(test, feature = "selftest", target_arch = "wasm32"))]
mod sgemm;
pub mod source;
mod tokenizer;
#[cfg(target_arch = "wasm32")]
mod web;
mod weights;

pub use config::{ClipConfig, PreprocessorConfig};
pub use cpu::Trace;
pub use error::{Error, Result};
pub use model::{Backend, ImageInput, ImageScore, Model};
#[cfg(not(target_arch = "wasm32"))]
pub use source::DirSource;
pub use source::{MemorySource, ModelSource};
pub use tokenizer::Tokenizer;
#[cfg(not(target_arch = "wasm32"))]
pub mod batch;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod eval;
/// Kernel and end-to-end GPU checks shared by the native and the browser tests.
#[cfg(feature = "selftest")]
#[doc(hidden)]
pub use gpu::selftest;
/// The kernels' WGSL as the GPU engine composes it for a device's features (shader validators).
#[doc(hidden)]
pub use gpu::{shader_modules, ShaderFeatures};
/// Region maps: the patch map and the occlusion map of a (prompt, image) score.
pub mod explain;
pub mod random;
