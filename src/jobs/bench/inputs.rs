//! The synthetic inputs every benchmark feeds its model: deterministic, so that runs compare.

use crate::error::Result;
use crate::io::random::RandomSource;
use crate::io::safetensors::Checkpoint;
use crate::io::source::read_all;
use crate::models::clip::config::ClipConfig;

/// The seed of the random weights.
const SEED: u64 = 0x5c1;

/// A model of geometry `preset` (`clip-h`, ...) with random weights, `layers` per tower.
pub(crate) async fn random_model(
    preset: &str,
    layers: Option<usize>,
) -> Result<(RandomSource, ClipConfig, Checkpoint)> {
    let src = RandomSource::new(preset, layers, SEED)?;
    let cfg = ClipConfig::from_json(&read_all(&src, "config.json", 1 << 20).await?)?;
    let ckpt = Checkpoint::open(&src).await?;
    Ok((src, cfg, ckpt))
}

/// `n` values in [-1, 1] in a short repeating ramp (period 255).
pub(crate) fn ramp(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 31 % 255) as f32 / 127.0) - 1.0)
        .collect()
}

/// `n` values in [-1, 1) spread over 1000 levels (a long, irregular pattern).
pub(crate) fn spread(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

/// Pixels of `b` images, (B, 3, S, S).
pub(crate) fn pixels(cfg: &ClipConfig, b: usize) -> Vec<f32> {
    let s = cfg.vision.image_size;
    ramp(b * 3 * s * s)
}

/// A prompt of `tokens` ids (at least 2): BOS, words that vary with `salt`, EOS.
pub(crate) fn prompt(tokens: usize, salt: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..tokens)
        .map(|i| 49406u32.min(320 + i as u32 * 101 + salt))
        .collect();
    ids[0] = 49406;
    ids[tokens - 1] = 49407;
    ids
}
