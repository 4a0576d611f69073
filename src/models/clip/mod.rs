//! CLIP (`CLIPModel` of Hugging Face `transformers` 4.50.3, `modeling_clip.py`): SciScore,
//! PickScore_v1, CLIP-H.
//!
//! - `config`: `config.json` and `preprocessor_config.json`;
//! - `schema`: every tensor of the checkpoint, named and shaped once;
//! - `tokenizer`: `CLIPTokenizerFast`'s BPE;
//! - `weights` + `cpu`: the f32 reference forward on the CPU;
//! - `gpu_weights` + `gpu`: the forward on the GPU engine's kernels.

pub mod config;
pub(crate) mod cpu;
pub(crate) mod gpu;
pub(crate) mod gpu_weights;
pub(crate) mod schema;
pub mod tokenizer;
pub(crate) mod weights;
