//! sciscore: scientific-accuracy scores for generated images with SciScore (Science-T2I,
//! CVPR 2025) and other CLIP reward models in the Hugging Face layout (PickScore, CLIP-H), computed locally.
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
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
mod cpu;
mod error;
mod gpu;
mod model;
pub mod preprocess;
mod safetensors;
mod schema;
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
pub use error::{shown, Error, Result};
pub use model::{Backend, Encoded, ImageInput, ImageScore, Model};
pub use score::ScoreMatrix;
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
pub mod random;
