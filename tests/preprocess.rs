//! Preprocessing parity with transformers 4.50.3's slow `CLIPImageProcessor` (Pillow 13.0.0).
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
        let (a, b) = (
            off[0].as_u64().unwrap() as usize,
            off[1].as_u64().unwrap() as usize,
        );
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
    list.iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn load_config(model: &str) -> PreprocessorConfig {
    let path = fixtures()
        .join("models")
        .join(model)
        .join("preprocessor_config.json");
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

fn compare(
    ours: &[f32],
    theirs: &[f32],
    (h, w): (usize, usize),
    cfg: &PreprocessorConfig,
) -> Parity {
    let level = |v: f32, c: usize| {
        let (mean, std) = (cfg.image_mean[c] as f64, cfg.image_std[c] as f64);
        let x = if cfg.do_normalize {
            v as f64 * std + mean
        } else {
            v as f64
        };
        let x = if cfg.do_rescale {
            x / cfg.rescale_factor
        } else {
            x
        };
        x.round() as i32
    };
    let mut p = Parity {
        equal: 0.0,
        max_level: 0,
        max_float: 0.0,
        worst: None,
    };
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
    for model in ["tiny224", "odd"] {
        let cfg = load_config(model);
        let goldens =
            read_safetensors_f32(&fixtures().join(format!("goldens/{model}.safetensors")));
        for name in image_names() {
            let bytes = std::fs::read(fixtures().join("images").join(&name)).unwrap();
            let ours = image_to_pixels(&name, &bytes, &cfg)
                .unwrap_or_else(|e| panic!("{model}/{name}: {e}"));
            let (shape, theirs) = &goldens[&format!("pixel_values.{name}")];
            assert_eq!(
                shape,
                &[3, cfg.crop_size.0, cfg.crop_size.1],
                "{model}/{name} golden shape"
            );
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
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: a clear `Error::Image` or `Error::Limits`, never a panic.
// ---------------------------------------------------------------------------------------------

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("images").join(name)).unwrap()
}

fn image_error(name: &str, bytes: &[u8]) -> String {
    match decode_rgb(name, bytes) {
        Err(e @ Error::Image { .. }) => e.to_string(),
        other => panic!(
            "{name}: expected Error::Image, got {:?}",
            other.map(|i| i.dimensions())
        ),
    }
}

fn assert_pixel_limit(name: &str, bytes: &[u8], pixels: u64) {
    match decode_rgb(name, bytes) {
        Err(Error::Limits {
            needed, available, ..
        }) => {
            assert_eq!((needed, available), (pixels, MAX_PIXELS), "{name}");
        }
        other => panic!(
            "{name}: expected Error::Limits, got {:?}",
            other.map(|i| i.dimensions())
        ),
    }
}

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                crc >> 1 ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend(kind);
    c.extend(data);
    c.extend(crc32(&[&kind[..], data].concat()).to_be_bytes());
    c
}

/// A PNG whose IHDR claims `w` x `h` RGB pixels, with a tiny IDAT that cannot hold them.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = [w.to_be_bytes(), h.to_be_bytes()].concat();
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter method, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// A 24-bit BMP header (BITMAPINFOHEADER) claiming `w` x `h`, without pixel data.
fn bmp_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut b = b"BM".to_vec();
    b.extend(54u32.to_le_bytes()); // file size (a lie)
    b.extend([0; 4]);
    b.extend(54u32.to_le_bytes()); // pixel data offset
    b.extend(40u32.to_le_bytes());
    b.extend(w.to_le_bytes());
    b.extend(h.to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(24u16.to_le_bytes());
    b.extend([0; 24]); // BI_RGB, sizes, resolution, palette counts
    b
}

/// A JPEG whose frame header (SOF0) claims `w` x `h`, grayscale, and nothing after it.
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8];
    j.extend(h.to_be_bytes());
    j.extend(w.to_be_bytes());
    j.extend([1, 1, 0x11, 0]);
    j
}

#[test]
fn empty_and_text_files_are_named() {
    let msg = image_error("empty.png", b"");
    assert!(
        msg.contains("empty.png") && msg.contains("empty (0 bytes)"),
        "{msg}"
    );
    let msg = image_error("notes.png", b"these are not pixels\nreally\n");
    assert!(
        msg.contains("notes.png") && msg.contains("text") && msg.contains("PNG, JPEG"),
        "{msg}"
    );
    let msg = image_error(
        "noise.png",
        &[0x13, 0x37, 0x00, 0xFE, 0x42, 0x99, 0x01, 0x02],
    );
    assert!(msg.contains("not a known image format"), "{msg}");
}

#[test]
fn unsupported_formats_are_named_with_the_supported_ones() {
    let msg = image_error("scan.tif", b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00");
    assert!(
        msg.contains("TIFF") && msg.contains("not supported") && msg.contains("WebP"),
        "{msg}"
    );
}

#[test]
fn truncated_files_are_errors() {
    for name in [
        "rgb_gradient.png",
        "large.jpg",
        "photo_rgb.jpg",
        "lossy.webp",
        "frame.gif",
        "bitmap.bmp",
    ] {
        let bytes = fixture_bytes(name);
        let msg = image_error(name, &bytes[..bytes.len() / 2]);
        assert!(msg.contains(name), "{msg}");
    }
    // Pillow refuses a JPEG without its EOI marker ("image file is truncated"), so do we.
    let jpg = fixture_bytes("photo_rgb.jpg");
    let msg = image_error("no_eoi.jpg", &jpg[..jpg.len() - 2]);
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let pixels = 40_000u64 * 40_000;
    assert_pixel_limit("bomb.png", &png_claiming(40_000, 40_000), pixels);
    assert_pixel_limit("bomb.bmp", &bmp_claiming(40_000, 40_000), pixels);
    assert_pixel_limit("bomb.jpg", &jpeg_claiming(40_000, 40_000), pixels);
    assert_pixel_limit("square.png", &png_claiming(30_000, 30_000), 900_000_000);
    // Just under the limit the header passes and the missing data is the error.
    let msg = image_error("small.png", &png_claiming(300, 200));
    assert!(msg.contains("small.png"), "{msg}");
}

#[test]
fn corrupted_fixtures_never_panic() {
    // Deterministic truncations and byte flips of every fixture image; any outcome but a panic
    // is fine (Pillow itself decodes some corrupt files).
    let mut seed = 0x5EED_u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for name in image_names() {
        let bytes = fixture_bytes(&name);
        let trials = if bytes.len() > 50_000 { 12 } else { 40 }; // large.jpg is slow in debug
        for trial in 0..trials {
            let mut b = bytes.clone();
            if trial < 10 {
                b.truncate(next() % b.len());
            } else {
                for _ in 0..1 + trial % 4 {
                    let i = next() % b.len();
                    b[i] = next() as u8;
                }
            }
            let _ = decode_rgb(&name, &b);
        }
    }
}
