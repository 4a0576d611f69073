//! The whole GPU forward of the fixture models against their transformers goldens.

use crate::io::safetensors::{read_f32_tensors, Checkpoint};
use crate::io::source::{read_all, ModelSource};
use crate::models::clip::config::ClipConfig;
use crate::models::clip::gpu::{GpuModel, GpuOptions};
use crate::stats::{cosine, max_abs};

/// f32 weights vs transformers f32: the CPU reference's contract (tests/common EMBED_COS_F32).
const EMBED_COS_F32: f64 = 0.99999;
/// Score = 100 cos: the f32 contract of tests/common (SCORE_ABS_F32).
const SCORE_ABS_F32: f64 = 0.01;
/// f16 weights: each weight rounded to 11 significant bits (relative 2^-12 = 2.4e-4) moves an
/// embedding by ~1e-4 relative, i.e. cos 1 - 1e-8 per layer-ish; 0.9995 leaves room for depth.
const EMBED_COS_F16: f64 = 0.9995;
/// f16 weights: |score difference| (score = exp(logit_scale) cos, ~100 cos).
pub(crate) const SCORE_ABS_F16: f64 = 0.1;

/// The goldens of one fixture model (tests/fixtures/goldens): `<model>.json`,
/// `<model>.safetensors`, and the safetensors holding its `pixel_values.<image>` (bf16 shares
/// tiny224's preprocessor, so its own goldens leave the pixels out).
pub struct Goldens<'a> {
    pub json: &'a [u8],
    pub tensors: &'a [u8],
    pub pixels: &'a [u8],
}

/// The GPU forward of fixture model `model` (read from `src`) against its transformers
/// goldens: embeddings by cosine, scores, pairwise decisions. Panics on a broken contract;
/// returns the figures.
pub async fn end_to_end(
    model: &str,
    src: &dyn ModelSource,
    goldens: &Goldens<'_>,
    f32_weights: bool,
) -> String {
    let cfg = ClipConfig::from_json(&read_all(src, "config.json", 1 << 20).await.unwrap()).unwrap();
    let ckpt = Checkpoint::open(src).await.unwrap();
    let gm = GpuModel::load(&cfg, &ckpt, src, GpuOptions { f32_weights }, &|_, _| {})
        .await
        .unwrap();
    let g: serde_json::Value = serde_json::from_slice(goldens.json).unwrap();
    let p = gm.cfg.projection_dim;
    let ids: Vec<Vec<u32>> = g["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let names: Vec<String> = g["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let golden_pixels = read_f32_tensors("pixels", goldens.pixels).unwrap();
    let pixels: Vec<f32> = names
        .iter()
        .flat_map(|n| {
            golden_pixels[&format!("pixel_values.{n}")]
                .1
                .iter()
                .copied()
        })
        .collect();
    // All prompts in one (padded) pass, all images in one batch.
    let text = gm.text_features(&ids).await.unwrap();
    let image = gm.image_features(&pixels, names.len()).await.unwrap();
    let golden = read_f32_tensors(model, goldens.tensors).unwrap();
    let (want_t, want_v) = (&golden["text_embeds"].1, &golden["image_embeds"].1);
    let cos_min = if f32_weights {
        EMBED_COS_F32
    } else {
        EMBED_COS_F16
    };
    let score_max = if f32_weights {
        SCORE_ABS_F32
    } else {
        SCORE_ABS_F16
    };
    let (mut ct, mut cv, mut mabs) = (1.0f64, 1.0f64, 0.0f64);
    for (i, t) in text.iter().enumerate() {
        let w = &want_t[i * p..][..p];
        let c = cosine(t, w);
        ct = ct.min(c);
        mabs = mabs.max(max_abs(t, w).0);
        assert!(
            c >= cos_min,
            "{model} f32_weights={f32_weights}: text_embeds[{i}] cos {c}"
        );
    }
    let imgs: Vec<Vec<f32>> = image.chunks_exact(p).map(<[f32]>::to_vec).collect();
    for (i, v) in imgs.iter().enumerate() {
        let w = &want_v[i * p..][..p];
        let c = cosine(v, w);
        cv = cv.min(c);
        mabs = mabs.max(max_abs(v, w).0);
        assert!(
            c >= cos_min,
            "{model} f32_weights={f32_weights}: image_embeds[{i}] ({}) cos {c}",
            names[i]
        );
    }
    let ls = g["logit_scale"].as_f64().unwrap() as f32;
    let mut sd = 0.0f64;
    for (pi, t) in text.iter().enumerate() {
        let s = crate::score::scores(t, &imgs, ls);
        for (i, &si) in s.iter().enumerate() {
            let want = g["scores"][pi][i].as_f64().unwrap();
            let d = (si as f64 - want).abs();
            sd = sd.max(d);
            assert!(
                d <= score_max,
                "{model} f32_weights={f32_weights}: score[{pi}][{i}] {si} vs {want}"
            );
        }
    }
    for pair in g["pairs"].as_array().unwrap() {
        let pi = pair["prompt"].as_u64().unwrap() as usize;
        let idx: Vec<usize> = pair["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let s = crate::score::scores(&text[pi], &[imgs[idx[0]].clone(), imgs[idx[1]].clone()], ls);
        let want: Vec<f64> = pair["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(
            s[0] > s[1],
            want[0] > want[1],
            "{model} f32_weights={f32_weights}: pairwise decision for {pair}"
        );
    }
    format!(
        "{model} {} weights: min cos text {ct:.7} image {cv:.7}, max |embed diff| {mabs:.3e}, max |score diff| {sd:.4}, gpu bytes {}",
        if f32_weights { "f32" } else { "f16" },
        gm.gpu_bytes()
    )
}
