//! The GPU checks of `sciscore::selftest` in headless Chromium through WebGPU on SwiftShader
//! (no `shader-f16`, 256 invocations per workgroup): every kernel against its CPU reference,
//! then the whole forward of the three fixture models against the transformers goldens, then
//! the public API (tokenizer, preprocessing, both towers) on the odd model.
//!
//! Run by `scripts/test-wasm` (wasm-bindgen-test-runner + chromedriver, flags in webdriver.json):
//! `cargo test --target wasm32-unknown-unknown --features selftest --test wasm_gpu`.
#![cfg(target_arch = "wasm32")]

use sciscore::selftest::{self, Goldens, TestGpu};
use sciscore::{Backend, ImageInput, MemorySource, Model};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

macro_rules! fixture {
    ($p:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/", $p)) as &[u8]
    };
}

/// A fresh device per test: the runner gives each test its own future, and a device is cheap
/// next to the checks.
async fn device() -> TestGpu {
    let g = TestGpu::new()
        .await
        .unwrap_or_else(|e| panic!("no WebGPU adapter in this browser: {e}"));
    console_log!("WebGPU adapter: {}", g.info());
    g
}

/// Not a GPU check: the CPU path's SIMD128 product, which only runs compiled to wasm32.
#[wasm_bindgen_test]
fn cpu_packed_product_matches_f64() {
    console_log!("{}", selftest::cpu_packed_product());
}

#[wasm_bindgen_test]
async fn matmul_matches_reference_on_awkward_shapes() {
    console_log!("{}", selftest::matmul(&device().await).await);
}

#[wasm_bindgen_test]
async fn gelu_on_device_matches_f64() {
    console_log!("{}", selftest::gelu(&device().await).await);
}

#[wasm_bindgen_test]
async fn layer_norm_matches_reference() {
    console_log!("{}", selftest::layer_norm(&device().await).await);
}

#[wasm_bindgen_test]
async fn attention_matches_reference() {
    console_log!("{}", selftest::attention(&device().await).await);
}

#[wasm_bindgen_test]
async fn vision_embeddings_match_reference() {
    console_log!("{}", selftest::vision_embeddings(&device().await).await);
}

#[wasm_bindgen_test]
async fn text_embed_and_pooling_match_reference() {
    console_log!(
        "{}",
        selftest::text_embed_and_pooling(&device().await).await
    );
}

fn source(files: &[(&str, &[u8])]) -> MemorySource {
    let mut s = MemorySource::new();
    for (name, bytes) in files {
        s.insert(*name, bytes.to_vec());
    }
    s
}

fn tiny224() -> MemorySource {
    source(&[
        ("config.json", fixture!("models/tiny224/config.json")),
        (
            "model.safetensors",
            fixture!("models/tiny224/model.safetensors"),
        ),
    ])
}

fn odd() -> MemorySource {
    source(&[
        ("config.json", fixture!("models/odd/config.json")),
        (
            "model.safetensors.index.json",
            fixture!("models/odd/model.safetensors.index.json"),
        ),
        (
            "model-00001-of-00003.safetensors",
            fixture!("models/odd/model-00001-of-00003.safetensors"),
        ),
        (
            "model-00002-of-00003.safetensors",
            fixture!("models/odd/model-00002-of-00003.safetensors"),
        ),
        (
            "model-00003-of-00003.safetensors",
            fixture!("models/odd/model-00003-of-00003.safetensors"),
        ),
    ])
}

fn bf16() -> MemorySource {
    source(&[
        ("config.json", fixture!("models/bf16/config.json")),
        (
            "model.safetensors",
            fixture!("models/bf16/model.safetensors"),
        ),
    ])
}

const TINY224: Goldens = Goldens {
    json: fixture!("goldens/tiny224.json"),
    tensors: fixture!("goldens/tiny224.safetensors"),
    pixels: fixture!("goldens/tiny224.safetensors"),
};
const ODD: Goldens = Goldens {
    json: fixture!("goldens/odd.json"),
    tensors: fixture!("goldens/odd.safetensors"),
    pixels: fixture!("goldens/odd.safetensors"),
};
// bf16 shares tiny224's preprocessor, so its goldens leave the pixels out.
const BF16: Goldens = Goldens {
    json: fixture!("goldens/bf16.json"),
    tensors: fixture!("goldens/bf16.safetensors"),
    pixels: fixture!("goldens/tiny224.safetensors"),
};

#[wasm_bindgen_test]
async fn end_to_end_f16_weights_match_goldens() {
    for (name, src, g) in [
        ("tiny224", tiny224(), &TINY224),
        ("odd", odd(), &ODD),
        ("bf16", bf16(), &BF16),
    ] {
        console_log!("{}", selftest::end_to_end(name, &src, g, false).await);
    }
}

#[wasm_bindgen_test]
async fn end_to_end_f32_weights_match_goldens() {
    for (name, src, g) in [
        ("tiny224", tiny224(), &TINY224),
        ("odd", odd(), &ODD),
        ("bf16", bf16(), &BF16),
    ] {
        console_log!("{}", selftest::end_to_end(name, &src, g, true).await);
    }
}

/// Files -> tokenizer -> preprocessing -> both towers -> scores, on the WebGPU backend.
#[wasm_bindgen_test]
async fn model_scores_on_webgpu_match_goldens() {
    let mut src = odd();
    for (name, bytes) in [
        ("tokenizer.json", fixture!("models/odd/tokenizer.json")),
        (
            "preprocessor_config.json",
            fixture!("models/odd/preprocessor_config.json"),
        ),
    ] {
        src.insert(name, bytes.to_vec());
    }
    let model = Model::load(&src, Backend::Gpu).await.unwrap();
    let g: serde_json::Value = serde_json::from_slice(ODD.json).unwrap();
    let images: [(&str, &[u8]); 4] = [
        ("rgb_gradient.png", fixture!("images/rgb_gradient.png")),
        ("photo_rgb.jpg", fixture!("images/photo_rgb.jpg")),
        ("lossy.webp", fixture!("images/lossy.webp")),
        ("frame.gif", fixture!("images/frame.gif")),
    ];
    let names: Vec<&str> = g["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let inputs: Vec<ImageInput> = images
        .iter()
        .map(|(n, b)| ImageInput { name: n, bytes: b })
        .collect();
    let mut worst = 0.0f64;
    for (p, prompt) in g["prompts"].as_array().unwrap().iter().enumerate().take(3) {
        let got = model
            .score(prompt.as_str().unwrap(), &inputs)
            .await
            .unwrap();
        for (s, (name, _)) in got.iter().zip(&images) {
            let i = names.iter().position(|n| n == name).unwrap();
            let want = g["scores"][p][i].as_f64().unwrap();
            let d = (s.score as f64 - want).abs();
            worst = worst.max(d);
            assert!(d <= 0.1, "{name}, prompt {p}: score {} vs {want}", s.score);
        }
    }
    console_log!(
        "public API on {}: max |score diff| {worst:.2e}",
        model.device()
    );
}

/// The benchmarks' matmul shapes (M, K, N): ViT-H/14 at 257 tokens (QKV, out, fc1, fc2), then
/// the text tower at 77.
const CLIP_H_SHAPES: [(usize, usize, usize); 8] = [
    (257, 1280, 3840),
    (257, 1280, 1280),
    (257, 1280, 5120),
    (257, 5120, 1280),
    (77, 1024, 3072),
    (77, 1024, 1024),
    (77, 1024, 4096),
    (77, 4096, 1024),
];

/// Benchmark harness, not a check (ignored): GFLOP/s of the browser CPU path's product on the
/// CLIP-H shapes, each micro-kernel of this build side by side. Meaningful in a release build:
/// `scripts/test-wasm --release -- --include-ignored --nocapture bench_cpu`
#[wasm_bindgen_test]
#[ignore]
fn bench_cpu_clip_h_product_shapes() {
    let now = || js_sys::Date::now();
    for shape in CLIP_H_SHAPES {
        let (m, k, n) = shape;
        for (kernel, ms, gflops) in selftest::cpu_product_timing(shape, 5, &now) {
            console_log!("cpu {kernel} {m}x{k}x{n}: best {ms:.0} ms, {gflops:.2} GFLOP/s");
        }
    }
}

/// Benchmark harness, not a check (ignored): where a ViT-H/14 vision layer's time goes on the
/// browser CPU path (release build: `scripts/test-wasm --release -- --include-ignored --nocapture bench_cpu`).
#[wasm_bindgen_test]
#[ignore]
fn bench_cpu_vision_layer_stages() {
    let now = || js_sys::Date::now();
    for (stage, ms) in selftest::cpu_layer_profile(&now, true, 1) {
        console_log!("cpu vision layer: {stage} {ms:.0} ms");
    }
}

/// Benchmark harness, not a check (ignored): GFLOP/s of the f16-weight matmul on the CLIP-H
/// shapes on this browser's adapter. `scripts/test-wasm -- --include-ignored --nocapture bench_`
#[wasm_bindgen_test]
#[ignore]
async fn bench_clip_h_matmul_shapes() {
    let g = device().await;
    let now = || js_sys::Date::now();
    for shape in CLIP_H_SHAPES {
        let (ms, gflops) = selftest::matmul_timing(&g, shape, 3, &now).await;
        let (m, k, n) = shape;
        console_log!("matmul {m}x{k}x{n}: best {ms:.0} ms, {gflops:.2} GFLOP/s");
    }
}
