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

// The layout: `models/` one folder per model family (CLIP: config, tensor schema, tokenizer,
// CPU and GPU forward); `cpu/` and `gpu/` the engines' kernels; `io/` where weights come from;
// `preprocess/` images to pixels; `model` the one entry point that picks an engine; `score` the
// scoring math; `jobs/` eval, batch and bench over a model; `web/` the browser's face;
// `testing/` the checks shared by the native and the browser tests.
// `cli/` (with main.rs) is the binary's, not the library's: one file per subcommand.
mod cpu;
mod error;
mod gpu;
pub mod io;
pub mod jobs;
mod model;
pub mod models;
pub mod preprocess;
pub mod score;
pub mod stats;
#[cfg(any(test, feature = "selftest"))]
mod testing;
#[cfg(target_arch = "wasm32")]
mod web;

/// `initThreadPool(n)` for www/worker.js: starts the `threads` build's n rayon workers, which
/// share this instance's memory (a cross-origin isolated page only).
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use wasm_bindgen_rayon::init_thread_pool;

pub use error::{shown, Error, Result};
pub use model::{Backend, Encoded, ImageInput, ImageScore, Model, Scores};
pub use models::clip::config::{ClipConfig, PreprocessorConfig};
pub use models::clip::cpu::Trace;
pub use models::clip::tokenizer::Tokenizer;
pub use score::ScoreMatrix;

// The library's public paths from before the folders (`sciscore::batch`, `sciscore::config`, ...).
#[cfg(not(target_arch = "wasm32"))]
pub use io::convert;
#[cfg(not(target_arch = "wasm32"))]
pub use io::source::DirSource;
pub use io::source::{MemorySource, ModelSource};
pub use io::{random, source};
#[cfg(not(target_arch = "wasm32"))]
pub use jobs::{batch, bench};
pub use jobs::{eval, explain};
pub use models::clip::config;

/// Kernel and end-to-end GPU checks shared by the native and the browser tests.
#[cfg(feature = "selftest")]
#[doc(hidden)]
pub mod selftest {
    pub use crate::testing::*;
}
/// The kernels' WGSL as the GPU engine composes it for a device's features (shader validators).
#[doc(hidden)]
pub use gpu::{shader_modules, ShaderFeatures};
