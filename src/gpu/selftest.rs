//! Checks of every kernel against a plain CPU reference (f64 accumulation) on seeded, awkward
//! shapes, and of the whole GPU forward against the transformers goldens of the fixture models.
//!
//! Shared by the native unit tests (`src/gpu/tests.rs`, lavapipe in CI) and the browser tests
//! (`tests/wasm_gpu.rs`, wasm-bindgen-test in headless Chromium on SwiftShader, which has no
//! `shader-f16`): the same code proves both paths. Every check panics with the first value out
//! of tolerance and otherwise returns a line of figures. Compiled for unit tests and with the
//! `selftest` feature only.

use super::*;
use crate::error::Result;
use crate::io::safetensors::Checkpoint;
use crate::io::source::{read_all, ModelSource};
use crate::models::clip::config::ClipConfig;
use crate::models::clip::gpu::{GpuModel, GpuOptions};
use crate::stats::cosine;

/// The browser CPU path's packed product (`src/sgemm.rs`) against f64: in `tests/wasm_gpu.rs`
/// this runs the SIMD128 micro-kernel, and the relaxed-SIMD one in a `relaxed-simd` build.
#[cfg(feature = "selftest")]
pub fn cpu_packed_product() -> String {
    crate::cpu::sgemm::check_awkward_shapes()
}

/// Where a ViT-H/14 vision layer's time goes on the CPU path: (stage, best ms of three runs
/// after one that includes V8's tier-up).
#[cfg(feature = "selftest")]
pub fn cpu_layer_profile(now_ms: &dyn Fn() -> f64) -> Vec<(&'static str, f64)> {
    crate::models::clip::cpu::profile_vision_layer(now_ms);
    let mut best = crate::models::clip::cpu::profile_vision_layer(now_ms);
    for _ in 0..2 {
        let run = crate::models::clip::cpu::profile_vision_layer(now_ms);
        for (b, (_, ms)) in best.iter_mut().zip(run) {
            b.1 = b.1.min(ms);
        }
    }
    best
}

/// Best wall time in ms of `reps` runs (after one warm-up) of the browser CPU path's product
/// y (M, N) += x (M, K) W^T with W held as f16 (as SciScore's weights are), for each
/// micro-kernel this build has, side by side: (kernel, ms, GFLOP/s).
#[cfg(feature = "selftest")]
pub fn cpu_product_timing(
    (m, k, n): (usize, usize, usize),
    reps: usize,
    now_ms: &dyn Fn() -> f64,
) -> Vec<(String, f64, f64)> {
    use crate::cpu::sgemm::{gemm_acc_with, Micro, Rows};
    let x = rand(m * k, 1, 1.0);
    let w: Vec<half::f16> = rand(n * k, 2, 1.0)
        .into_iter()
        .map(half::f16::from_f32)
        .collect();
    let mut y = vec![0.0f32; m * n];
    let mut best = vec![f64::MAX; Micro::available().len()];
    // Interleaved, so that a slow spell of the machine hits every kernel alike.
    for rep in 0..=reps {
        for (b, &kernel) in best.iter_mut().zip(Micro::available()) {
            let t0 = now_ms();
            gemm_acc_with(kernel, &mut y, &x, Rows::F16(&w), m, n, k);
            let ms = now_ms() - t0;
            assert!(y[0].is_finite());
            if rep > 0 {
                *b = b.min(ms);
            }
        }
    }
    Micro::available()
        .iter()
        .zip(best)
        .map(|(kernel, ms)| {
            (
                format!("{kernel:?}"),
                ms,
                2.0 * (m * n * k) as f64 / ms / 1e6,
            )
        })
        .collect()
}

/// A device with every kernel compiled, for the checks.
pub struct TestGpu(pub(crate) Gpu);

impl TestGpu {
    /// The default adapter's device; `Error::NoAdapter` without one.
    pub async fn new() -> Result<TestGpu> {
        Ok(TestGpu(Gpu::new().await?))
    }
    /// The default adapter's device without optional kernel features (the core WebGPU path).
    pub async fn core() -> Result<TestGpu> {
        Ok(TestGpu(Gpu::open(false, &|_, _| {}).await?))
    }
    /// Adapter name, backend and driver.
    pub fn info(&self) -> &str {
        self.0.info()
    }
}

/// Matmul: f32 accumulation of K products in the kernel vs f64 in the reference. The rounding
/// error of a K-term sum is about sqrt(K) eps of the sum of |terms| (random walk); 4x margin.
fn matmul_tol(k: usize, abs_sum: f64) -> f64 {
    4.0 * (k as f64).sqrt() * f32::EPSILON as f64 * abs_sum + 1e-6
}
/// LayerNorm, attention, embeddings: a few f32 roundings of O(1) values.
const KERNEL_ABS: f64 = 2e-5;
/// The erf approximation (A&S 7.1.26, 1.5e-7 exact) evaluated in f32: the contract.
pub(crate) const ERF_ABS: f64 = 1e-6;
/// f32 weights vs transformers f32: the CPU reference's contract (tests/common EMBED_COS_F32).
const EMBED_COS_F32: f64 = 0.99999;
/// Score = 100 cos: the f32 contract of tests/common (SCORE_ABS_F32).
const SCORE_ABS_F32: f64 = 0.01;
/// f16 weights: each weight rounded to 11 significant bits (relative 2^-12 = 2.4e-4) moves an
/// embedding by ~1e-4 relative, i.e. cos 1 - 1e-8 per layer-ish; 0.9995 leaves room for depth.
const EMBED_COS_F16: f64 = 0.9995;
/// f16 weights: |score difference| (score = exp(logit_scale) cos, ~100 cos).
pub(crate) const SCORE_ABS_F16: f64 = 0.1;

/// Seeded values in [-scale, scale).
pub(crate) fn rand(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

async fn run(gpu: &Gpu, pass: Pass<'_>, out: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("test"),
        });
    pass.encode(&mut enc).unwrap();
    gpu.submit_and_read(enc, out, n).await.unwrap()
}

pub(crate) fn upload(gpu: &Gpu, v: &[f32]) -> wgpu::Buffer {
    gpu.upload("test", bytemuck::cast_slice(v)).unwrap()
}

fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

fn gelu64(v: f64) -> f64 {
    0.5 * v * (1.0 + libm::erf(v * std::f64::consts::FRAC_1_SQRT_2))
}

#[allow(clippy::too_many_arguments)]
async fn check_matmul(
    gpu: &Gpu,
    family: KernelFamily,
    m: usize,
    n: usize,
    k: usize,
    f16: bool,
    bias: bool,
    epi: Epilogue,
    seed: u64,
) -> String {
    let x = rand(m * k, seed, 1.0);
    let w = rand(n * k, seed + 1, 1.0);
    let b = rand(n, seed + 2, 1.0);
    let y0 = rand(m * n, seed + 3, 1.0);
    let lin = GpuLinear::from_f32(gpu, &w, bias.then_some(&b[..]), n, k, f16).unwrap();
    let (xb, yb) = (upload(gpu, &x), upload(gpu, &y0));
    let mut pass = Pass::with_family(gpu, family);
    pass.linear("test", &lin, &xb, &yb, m, epi);
    let got = run(gpu, pass, &yb, m * n).await;
    let we = if f16 { f16_round(&w) } else { w.clone() };
    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..n {
            let (mut acc, mut abs) = (0.0f64, 0.0f64);
            for kk in 0..k {
                let t = x[i * k + kk] as f64 * we[j * k + kk] as f64;
                acc += t;
                abs += t.abs();
            }
            if bias {
                acc += b[j] as f64;
                abs += (b[j] as f64).abs();
            }
            let want = match epi {
                Epilogue::Store => acc,
                Epilogue::Gelu => gelu64(acc),
                Epilogue::QuickGelu => acc / (1.0 + (-1.702 * acc).exp()),
                Epilogue::Residual => acc + y0[i * n + j] as f64,
            };
            let tol = matmul_tol(k, abs) + ERF_ABS * (1.0 + want.abs());
            let d = (got[i * n + j] as f64 - want).abs();
            worst = worst.max(d / tol);
            assert!(
                d <= tol,
                "matmul {m}x{n}x{k} f16={f16} {epi:?}: y[{i},{j}] = {} vs {want} (|diff| {d:.3e} > {tol:.3e})",
                got[i * n + j]
            );
        }
    }
    format!("matmul {m}x{n}x{k} f16={f16} bias={bias} {epi:?} {family:?}: worst |diff| / tol = {worst:.3}")
}

pub async fn matmul(g: &TestGpu) -> String {
    let g = &g.0;
    let mut out = Vec::new();
    // (M, N, K, f16, bias, epilogue): ViT-H rows (257) with K = 1280 and K = 5120 but few
    // columns, to keep software adapters quick; odd K (packed pad half), N and M not tile
    // multiples, no bias, both activations. Row counts cover every tiling: 64-row tiles plus
    // 16-row tiles for the rest (257, 77, 65), 16-row tiles only (3, 1), 64-row tiles only
    // (128 exact, 50 and 120 with a remainder over 48); K % 8 == 0 and K % 4 == 0 reach the
    // CPU adapters' kernels (f16 and f32), other K fall back to the tiled ones. Both families
    // run on every adapter.
    for (i, (m, n, kk, f16, bias, epi)) in [
        (257, 70, 1280, true, true, Epilogue::Store),
        (257, 33, 5120, true, true, Epilogue::Residual),
        (257, 70, 1280, false, true, Epilogue::Gelu),
        (77, 130, 67, true, false, Epilogue::QuickGelu),
        (65, 129, 33, false, false, Epilogue::QuickGelu),
        (3, 5, 1, true, true, Epilogue::Gelu),
        (1, 1, 15, false, true, Epilogue::Residual),
        (128, 65, 40, true, true, Epilogue::Residual),
        (50, 64, 24, false, true, Epilogue::Store),
        (120, 3, 31, true, false, Epilogue::Gelu),
        (77, 100, 1024, true, true, Epilogue::QuickGelu),
        (9, 70, 20, false, true, Epilogue::Residual),
        (17, 66, 24, true, false, Epilogue::Store),
    ]
    .into_iter()
    .enumerate()
    {
        for family in [KernelFamily::Tiled, KernelFamily::CpuAdapter] {
            out.push(check_matmul(g, family, m, n, kk, f16, bias, epi, i as u64 + 1).await);
        }
    }
    out.join("\n")
}

/// The GELU epilogue on the device over a dense grid: y = gelu(x . 1) with K = 1.
pub async fn gelu(g: &TestGpu) -> String {
    let g = &g.0;
    let m = 40_001;
    let x: Vec<f32> = (0..m).map(|i| (i as f32 - 20_000.0) * 5e-4).collect(); // [-10, 10]
    let lin = GpuLinear::from_f32(g, &[1.0], None, 1, 1, false).unwrap();
    let (xb, yb) = (upload(g, &x), g.storage("y", (m * 4) as u64).unwrap());
    let mut pass = Pass::new(g);
    pass.linear("gelu", &lin, &xb, &yb, m, Epilogue::Gelu);
    let got = run(g, pass, &yb, m).await;
    let mut worst = 0.0f64;
    for (i, &v) in x.iter().enumerate() {
        // 0.5 x erf error plus f32 rounding of the result
        let want = gelu64(v as f64);
        let d = (got[i] as f64 - want).abs();
        let tol = 0.5 * (v as f64).abs() * ERF_ABS + 2.0 * f32::EPSILON as f64 * want.abs() + 1e-7;
        worst = worst.max(d);
        assert!(d <= tol, "gelu({v}) = {} vs {want}", got[i]);
    }
    format!("device gelu: max |diff| {worst:.3e}")
}

pub async fn layer_norm(g: &TestGpu) -> String {
    let g = &g.0;
    let mut worst = 0.0f64;
    for (rows, d, eps, seed) in [
        (257usize, 1280usize, 1e-5f32, 10u64),
        (13, 42, 1e-6, 11),
        (5, 30, 1e-5, 12),
        (2, 1, 1e-5, 13),
    ] {
        // A large mean, as in CLIP's residual stream, exercises the two-pass variance.
        let x: Vec<f32> = rand(rows * d, seed, 3.0).iter().map(|v| v + 50.0).collect();
        let (w, b) = (rand(d, seed + 1, 1.0), rand(d, seed + 2, 1.0));
        let ln = GpuLayerNorm::from_f32(g, &w, &b).unwrap();
        let (xb, yb) = (
            upload(g, &x),
            g.storage("y", (rows * d * 4) as u64).unwrap(),
        );
        let mut pass = Pass::new(g);
        pass.layer_norm("ln", &ln, &xb, &yb, rows, d, eps);
        let got = run(g, pass, &yb, rows * d).await;
        let want = crate::models::clip::cpu::layer_norm(
            &x,
            &crate::models::clip::weights::LayerNorm {
                weight: w.clone(),
                bias: b.clone(),
            },
            eps,
        );
        for i in 0..rows * d {
            let dd = (got[i] as f64 - want[i] as f64).abs();
            worst = worst.max(dd);
            assert!(
                dd <= KERNEL_ABS * (1.0 + want[i].abs() as f64),
                "ln {rows}x{d}: [{i}] {} vs {}",
                got[i],
                want[i]
            );
        }
    }
    format!("layer norm: 4 shapes, max |diff| {worst:.3e}")
}

fn attention_ref(qkv: &[f32], b: usize, t: usize, d: usize, h: usize, causal: bool) -> Vec<f32> {
    let dh = d / h;
    let scale = (dh as f64).powf(-0.5);
    let mut out = vec![0.0f32; b * t * d];
    for s in 0..b {
        for hd in 0..h {
            for i in 0..t {
                let q = &qkv[(s * t + i) * 3 * d + hd * dh..][..dh];
                let keys = if causal { i + 1 } else { t };
                let sc: Vec<f64> = (0..keys)
                    .map(|j| {
                        let k = &qkv[(s * t + j) * 3 * d + d + hd * dh..][..dh];
                        q.iter()
                            .zip(k)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|v| (v - mx).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..dh {
                    let v: f64 = (0..keys)
                        .map(|j| e[j] * qkv[(s * t + j) * 3 * d + 2 * d + hd * dh + c] as f64)
                        .sum();
                    out[(s * t + i) * d + hd * dh + c] = (v / sum) as f32;
                }
            }
        }
    }
    out
}

pub async fn attention(g: &TestGpu) -> String {
    let g = &g.0;
    let mut worst = 0.0f64;
    // (B, T, D, H, causal): ViT-H's 16 heads of 80, text heads of 64, the odd fixture's 14
    // and 15, batch > 1, a sequence over two tiles with the causal mask.
    for (b, t, d, h, causal, seed) in [
        (2usize, 257usize, 1280usize, 16usize, false, 20u64),
        (3, 77, 128, 2, true, 21),
        (1, 130, 64, 1, true, 25),
        (2, 17, 42, 3, false, 22),
        (3, 9, 30, 2, true, 23),
        (1, 1, 8, 1, true, 24),
    ] {
        let qkv = rand(b * t * 3 * d, seed, 2.0);
        let qb = upload(g, &qkv);
        let want = attention_ref(&qkv, b, t, d, h, causal);
        for family in [KernelFamily::Tiled, KernelFamily::CpuAdapter] {
            // Fresh (zeroed) outputs: nothing left over from the other kernel family.
            let cb = g.storage("ctx", (b * t * d * 4) as u64).unwrap();
            let sb = g.storage("scores", (b * h * t * t * 4) as u64).unwrap();
            let mut pass = Pass::with_family(g, family);
            pass.attention(&qb, &sb, &cb, b, t, d, h, causal);
            let got = run(g, pass, &cb, b * t * d).await;
            for i in 0..got.len() {
                let dd = (got[i] as f64 - want[i] as f64).abs();
                worst = worst.max(dd);
                assert!(
                    dd <= KERNEL_ABS * (1.0 + want[i].abs() as f64),
                    "attention b{b} t{t} d{d} h{h} causal {causal} {family:?}: [{i}] {} vs {}",
                    got[i],
                    want[i]
                );
            }
        }
    }
    format!("attention: 6 shapes, both kernel families, max |diff| {worst:.3e}")
}

pub async fn vision_embeddings(g: &TestGpu) -> String {
    let g = &g.0;
    let mut worst = 0.0f64;
    let (b, s, p, d) = (2usize, 36usize, 6usize, 42usize);
    let (gr, kk) = (s / p, 3 * p * p);
    let (n, t) = (gr * gr, gr * gr + 1);
    let pixels = rand(b * 3 * s * s, 30, 2.0);
    let w = rand(d * kk, 31, 0.1);
    let class = rand(d, 32, 1.0);
    let pos = rand(t * d, 33, 1.0);
    let lin = GpuLinear::from_f32(g, &w, None, d, kk, false).unwrap();
    let pix = upload(g, &pixels);
    let patches = g.storage("patches", (b * n * kk * 4) as u64).unwrap();
    let pe = g.storage("pe", (b * n * d * 4) as u64).unwrap();
    let x = g.storage("x", (b * t * d * 4) as u64).unwrap();
    let (cb, pb) = (upload(g, &class), upload(g, &pos));
    let mut pass = Pass::new(g);
    pass.im2col(&pix, &patches, b, s, p);
    pass.linear("patch", &lin, &patches, &pe, b * n, Epilogue::Store);
    pass.vision_embed(&pe, &cb, &pb, &x, b, t, d);
    let got = run(g, pass, &x, b * t * d).await;
    for img in 0..b {
        for r in 0..t {
            for c in 0..d {
                let want = if r == 0 {
                    class[c] as f64
                } else {
                    let (gy, gx) = ((r - 1) / gr, (r - 1) % gr);
                    let mut acc = 0.0f64;
                    for ch in 0..3 {
                        for ky in 0..p {
                            for kx in 0..p {
                                let px = pixels
                                    [((img * 3 + ch) * s + gy * p + ky) * s + gx * p + kx]
                                    as f64;
                                acc += px * w[c * kk + (ch * p + ky) * p + kx] as f64;
                            }
                        }
                    }
                    acc
                } + pos[r * d + c] as f64;
                let v = got[(img * t + r) * d + c] as f64;
                worst = worst.max((v - want).abs());
                assert!(
                    (v - want).abs() <= KERNEL_ABS * (1.0 + want.abs()),
                    "vision embed [{img},{r},{c}] {v} vs {want}"
                );
            }
        }
    }
    format!("vision embeddings: max |diff| {worst:.3e}")
}

pub async fn text_embed_and_pooling(g: &TestGpu) -> String {
    let g = &g.0;
    let mut worst = 0.0f32;
    let (b, t, d) = (2usize, 5usize, 7usize); // odd D: f16 rows padded to 4 words
    let rows = rand(b * t * d, 40, 1.0);
    let pos = rand(t * d, 41, 1.0);
    let pb = upload(g, &pos);
    for f16 in [true, false] {
        let packed = pack_rows(&rows, d, f16);
        let rb = g.upload("rows", bytemuck::cast_slice(&packed)).unwrap();
        let x = g.storage("x", (b * t * d * 4) as u64).unwrap();
        let index = g
            .upload("index", bytemuck::cast_slice(&[3u32, 5 + 4]))
            .unwrap();
        let out = g.storage("out", (2 * d * 4) as u64).unwrap();
        let mut pass = Pass::new(g);
        pass.text_embed(&rb, f16, row_words(d, f16), &pb, &x, b, t, d);
        pass.gather_rows(&x, &index, &out, 2, d);
        let got = run(g, pass, &out, 2 * d).await;
        let rv = if f16 { f16_round(&rows) } else { rows.clone() };
        for (k, row) in [3usize, 9].iter().enumerate() {
            for c in 0..d {
                let want = rv[row * d + c] + pos[(row % t) * d + c];
                worst = worst.max((got[k * d + c] - want).abs());
                assert!(
                    (got[k * d + c] - want).abs() <= 1e-6,
                    "text embed f16={f16} row {row} col {c}: {} vs {want}",
                    got[k * d + c]
                );
            }
        }
    }
    format!("text embeddings and pooling: max |diff| {worst:.3e}")
}

// ---- end to end vs the transformers goldens ----

fn golden_tensor(bytes: &[u8], name: &str) -> Vec<f32> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let o = &header[name]["data_offsets"];
    let (a, b) = (
        o[0].as_u64().unwrap() as usize,
        o[1].as_u64().unwrap() as usize,
    );
    bytes[8 + n + a..8 + n + b]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

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
    let pixels: Vec<f32> = names
        .iter()
        .flat_map(|n| golden_tensor(goldens.pixels, &format!("pixel_values.{n}")))
        .collect();
    // All prompts in one (padded) pass, all images in one batch.
    let text = gm.text_features(&ids).await.unwrap();
    let image = gm.image_features(&pixels, names.len()).await.unwrap();
    let (want_t, want_v) = (
        golden_tensor(goldens.tensors, "text_embeds"),
        golden_tensor(goldens.tensors, "image_embeds"),
    );
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
        mabs = mabs.max(
            t.iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(0.0, f64::max),
        );
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
        mabs = mabs.max(
            v.iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(0.0, f64::max),
        );
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

// ---- timing (a benchmark harness, not a check) ----

/// Best wall time in ms of `reps` runs (after one warm-up) of the f16-weight matmul
/// y (M, N) = x (M, K) W^T + b, each a submission followed by a 4-byte readback, and its
/// GFLOP/s. `now_ms` is the clock (`Date.now()` in the browser harness).
#[cfg(feature = "selftest")]
pub async fn matmul_timing(
    g: &TestGpu,
    (m, k, n): (usize, usize, usize),
    reps: usize,
    now_ms: &dyn Fn() -> f64,
) -> (f64, f64) {
    let g = &g.0;
    let lin =
        GpuLinear::from_f32(g, &rand(n * k, 2, 1.0), Some(&rand(n, 3, 1.0)), n, k, true).unwrap();
    let (xb, yb) = (
        upload(g, &rand(m * k, 1, 1.0)),
        g.storage("y", (m * n * 4) as u64).unwrap(),
    );
    let mut best = f64::MAX;
    for rep in 0..=reps {
        let mut pass = Pass::new(g);
        pass.linear("bench", &lin, &xb, &yb, m, Epilogue::Store);
        let mut enc = g
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        pass.encode(&mut enc).unwrap();
        let t0 = now_ms();
        let y = g.submit_and_read(enc, &yb, 1).await.unwrap();
        let ms = now_ms() - t0;
        assert!(y[0].is_finite());
        if rep > 0 {
            best = best.min(ms);
        }
    }
    (best, 2.0 * (m * n * k) as f64 / best / 1e6)
}
