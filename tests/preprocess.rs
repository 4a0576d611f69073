//! Preprocessing parity with transformers 4.50.3's slow `CLIPImageProcessor` (Pillow 11.1.0).
//!
//! Goldens: `tests/fixtures/goldens/<model>.safetensors`, F32 `pixel_values.<image>` of shape
//! (3, H, W), written by `scripts/make_fixtures.py` from `Image.open(path)` and the model's
//! `preprocessor_config.json`. Both sides are mapped back to u8 levels,
//! `round((v * std + mean) / rescale_factor)`, and compared level by level.

use sciscore::config::PreprocessorConfig;
use sciscore::preprocess::{decode_rgb, image_to_pixels, MAX_PIXELS};
use sciscore::Error;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// At least this fraction of the values must be at the same u8 level as the golden. Resizing and
/// normalisation are bit-exact ports; what remains is JPEG / lossy WebP decoding (zune-jpeg and
/// image-webp instead of libjpeg-turbo and libwebp), which can be a level off in a few pixels.
const MIN_EQUAL_FRACTION: f64 = 0.999;
/// No value may be more than this many u8 levels away from the golden.
const MAX_LEVEL_DIFF: i32 = 1;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// F32 tensors of a safetensors file: name -> (shape, values). Self-contained on purpose: the
/// check must not depend on the library's own safetensors code.
fn read_safetensors_f32(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header is JSON");
    let data = &bytes[8 + n..];
    let mut out = HashMap::new();
    for (name, info) in header {
        if name == "__metadata__" || info["dtype"] != "F32" {
            continue;
        }
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let off = info["data_offsets"].as_array().unwrap();
        let (a, b) = (off[0].as_u64().unwrap() as usize, off[1].as_u64().unwrap() as usize);
        let values = data[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(name, (shape, values));
    }
    out
}

fn image_names() -> Vec<String> {
    let json = std::fs::read(fixtures().join("images.json")).expect("tests/fixtures/images.json");
    let list: Vec<Value> = serde_json::from_slice(&json).unwrap();
    list.iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

fn load_config(model: &str) -> PreprocessorConfig {
    let path = fixtures().join("models").join(model).join("preprocessor_config.json");
    PreprocessorConfig::from_json(&std::fs::read(path).unwrap()).unwrap()
}

/// Parity of one (model, image) pair.
struct Parity {
    equal: f64,
    max_level: i32,
    max_float: f32,
    /// (c, y, x, ours, theirs) of the largest level difference.
    worst: Option<(usize, usize, usize, f32, f32)>,
}

fn compare(ours: &[f32], theirs: &[f32], (h, w): (usize, usize), cfg: &PreprocessorConfig) -> Parity {
    let level = |v: f32, c: usize| {
        let (mean, std) = (cfg.image_mean[c] as f64, cfg.image_std[c] as f64);
        let x = if cfg.do_normalize { v as f64 * std + mean } else { v as f64 };
        let x = if cfg.do_rescale { x / cfg.rescale_factor } else { x };
        x.round() as i32
    };
    let mut p = Parity { equal: 0.0, max_level: 0, max_float: 0.0, worst: None };
    let mut equal = 0usize;
    for (i, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
        let (c, y, x) = (i / (h * w), i / w % h, i % w);
        let d = (level(a, c) - level(b, c)).abs();
        equal += (d == 0) as usize;
        p.max_float = p.max_float.max((a - b).abs());
        if d > p.max_level || p.worst.is_none() && d > 0 {
            p.max_level = d;
            p.worst = Some((c, y, x, a, b));
        }
    }
    p.equal = equal as f64 / ours.len() as f64;
    p
}

#[test]
fn pixel_values_match_transformers_goldens() {
    let mut failures = Vec::new();
    for model in ["tiny224", "odd", "bf16"] {
        let cfg = load_config(model);
        let goldens = read_safetensors_f32(&fixtures().join(format!("goldens/{model}.safetensors")));
        for name in image_names() {
            let bytes = std::fs::read(fixtures().join("images").join(&name)).unwrap();
            let ours = image_to_pixels(&name, &bytes, &cfg)
                .unwrap_or_else(|e| panic!("{model}/{name}: {e}"));
            let (shape, theirs) = &goldens[&format!("pixel_values.{name}")];
            assert_eq!(shape, &[3, cfg.crop_size.0, cfg.crop_size.1], "{model}/{name} golden shape");
            assert_eq!(ours.len(), theirs.len(), "{model}/{name}: length");
            let p = compare(&ours, theirs, cfg.crop_size, &cfg);
            println!(
                "{model:8} {name:18} equal {:8.4}%  max level diff {}  max |diff| {:.3e}",
                100.0 * p.equal,
                p.max_level,
                p.max_float
            );
            if p.equal < MIN_EQUAL_FRACTION || p.max_level > MAX_LEVEL_DIFF {
                let (c, y, x, a, b) = p.worst.unwrap();
                failures.push(format!(
                    "{model}/{name}: {:.4}% equal, max level diff {} at (c={c}, y={y}, x={x}): \
                     ours {a} theirs {b}",
                    100.0 * p.equal,
                    p.max_level
                ));
            }
        }
    }
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}
