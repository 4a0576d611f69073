//! One folder per model family. A family holds its config, the schema of its checkpoint's
//! tensors, its tokenizer and its forward pass on each engine.

pub mod clip;
