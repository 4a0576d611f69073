//! CLIP (`CLIPModel` of Hugging Face `transformers` 4.50.3, `modeling_clip.py`): SciScore,
//! PickScore_v1, CLIP-H.
//!
//! - `config`: `config.json` and `preprocessor_config.json`;
//! - `schema`: every tensor of the checkpoint, named and shaped once;
//! - `tokenizer`: `CLIPTokenizerFast`'s BPE; [`pool_position`]: where the text tower pools;
//! - `weights` + `cpu`: the f32 reference forward on the CPU engine's ops;
//! - `gpu_weights` + `gpu`: the forward on the GPU engine's kernels;
//! - `cpu_profile`: where a vision layer's time goes on the CPU path (the browser benchmark).

pub mod config;
pub(crate) mod cpu;
#[cfg(feature = "selftest")]
pub(crate) mod cpu_profile;
pub(crate) mod gpu;
pub(crate) mod gpu_weights;
pub(crate) mod schema;
pub mod tokenizer;
pub(crate) mod weights;

/// Where transformers pools the text tower: legacy configs (`eos_token_id == 2`) take
/// `argmax(input_ids)` (the highest id, which is EOS in CLIP's vocabulary); others the first
/// `eos_token_id`, or 0 when there is none (what `argmax` of an all-false mask gives).
pub(crate) fn pool_position(ids: &[u32], eos_token_id: i64) -> usize {
    if eos_token_id == 2 {
        let max = ids.iter().copied().max().unwrap_or(0);
        ids.iter().position(|&i| i == max).unwrap_or(0)
    } else {
        ids.iter()
            .position(|&i| i as i64 == eos_token_id)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::pool_position;

    #[test]
    fn pooling_follows_transformers() {
        assert_eq!(pool_position(&[49406, 320, 49407, 49407], 2), 2);
        assert_eq!(pool_position(&[49406, 320, 49407], 49407), 2);
        assert_eq!(pool_position(&[49406, 320], 49407), 0);
    }
}
