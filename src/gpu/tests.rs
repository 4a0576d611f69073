//! The checks of `selftest.rs` natively (lavapipe in CI), plus the host-side erf check, the
//! public API on the GPU backend and two ignored harnesses (kernel tuning, CLIP-H memory).
//!
//! Without an adapter a test prints a skip line and passes, unless SCISCORE_REQUIRE_GPU=1
//! (CI with lavapipe), where it fails.

use super::kernels::{module_source, parts_of, MATMUL};
use super::selftest::{self, rand, upload, Goldens, TestGpu, SCORE_ABS_F16};
use super::*;
use crate::error::Error;
use crate::io::safetensors::Checkpoint;
use crate::io::source::{read_all, DirSource};
use crate::models::clip::config::ClipConfig;
use crate::models::clip::gpu::{GpuModel, GpuOptions};
use std::path::PathBuf;
use std::sync::OnceLock;

static GPU: OnceLock<Option<TestGpu>> = OnceLock::new();

/// The shared test device, or None (after a skip line) when there is no adapter.
fn gpu() -> Option<&'static TestGpu> {
    GPU.get_or_init(|| match pollster::block_on(TestGpu::new()) {
        Ok(g) => {
            eprintln!("gpu tests on {}", g.info());
            Some(g)
        }
        Err(Error::NoAdapter(m)) => {
            if std::env::var("SCISCORE_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("SCISCORE_REQUIRE_GPU=1 but no GPU adapter: {m}");
            }
            eprintln!("skipping GPU tests: no adapter ({m})");
            None
        }
        Err(e) => panic!("GPU init failed: {e}"),
    })
    .as_ref()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn matmul_matches_reference_on_awkward_shapes() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(selftest::matmul(g)));
}

#[test]
fn gelu_on_device_matches_f64() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(selftest::gelu(g)));
}

#[test]
fn layer_norm_matches_reference() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(selftest::layer_norm(g)));
}

#[test]
fn attention_matches_reference() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(selftest::attention(g)));
}

static GPU_CORE: OnceLock<Option<TestGpu>> = OnceLock::new();

/// The same adapter without optional kernel features: the core WebGPU reductions and f32 weight
/// tiles (the browser's path on SwiftShader) also run on adapters with subgroups and f16.
fn gpu_core() -> Option<&'static TestGpu> {
    gpu()?;
    GPU_CORE
        .get_or_init(|| Some(pollster::block_on(TestGpu::core()).unwrap()))
        .as_ref()
}

#[test]
fn optional_features_are_used_where_the_adapter_has_them() {
    let Some(g) = gpu() else { return };
    eprintln!("default device: {}", g.info());
    // lavapipe has subgroups and shader-f16: CI (SCISCORE_REQUIRE_GPU=1) must exercise
    // reduce_subgroups.wgsl and wtile_f16.wgsl.
    if g.info().contains("llvmpipe") && std::env::var("SCISCORE_REQUIRE_GPU").as_deref() == Ok("1")
    {
        assert!(g.0.subgroups(), "lavapipe offers subgroups: {}", g.info());
        assert!(g.0.shader_f16(), "lavapipe offers shader-f16: {}", g.info());
    }
    let core = gpu_core().unwrap();
    assert!(
        !core.0.subgroups() && !core.0.shader_f16(),
        "{}",
        core.info()
    );
}

#[test]
fn matmul_matches_reference_without_optional_features() {
    let Some(g) = gpu_core() else { return };
    eprintln!("{}", pollster::block_on(selftest::matmul(g)));
}

/// The tiled matmul with f16 weight tiles (`wtile_f16.wgsl`) gives the products of the f32
/// tiles (`wtile_f32.wgsl`) bit for bit: the weights are f16 either way, and both widen them
/// to f32 before the same FMAs in the same order.
#[test]
fn f16_weight_tiles_give_the_f32_tiles_products_bit_for_bit() {
    let (Some(g), Some(core)) = (gpu(), gpu_core()) else {
        return;
    };
    if !g.0.shader_f16() {
        eprintln!("skipping: {} has no shader-f16", g.info());
        return;
    }
    // 257 rows (64-row and 16-row tiles), K = 1280, an odd K (the pad half), N off the tile.
    for (m, n, k, epi) in [
        (257usize, 70usize, 1280usize, Epilogue::Gelu),
        (77, 130, 67, Epilogue::Residual),
        (3, 5, 1, Epilogue::Store),
    ] {
        let x = rand(m * k, 31, 2.0);
        let w = rand(n * k, 32, 1.0);
        let b = rand(n, 33, 1.0);
        let y0 = rand(m * n, 34, 1.0);
        let outs: Vec<Vec<f32>> = [&g.0, &core.0]
            .iter()
            .map(|dev| {
                let lin = GpuLinear::from_f32(dev, &w, Some(&b), n, k, true).unwrap();
                let (xb, yb) = (upload(dev, &x), upload(dev, &y0));
                let mut pass = Pass::with_family(dev, KernelFamily::Tiled);
                pass.linear("test", &lin, &xb, &yb, m, epi);
                let mut enc = dev.device.create_command_encoder(&Default::default());
                pass.encode(&mut enc).unwrap();
                pollster::block_on(dev.submit_and_read(enc, &yb, m * n)).unwrap()
            })
            .collect();
        let differ = outs[0]
            .iter()
            .zip(&outs[1])
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{m}x{n}x{k}: {differ} outputs differ");
    }
}

#[test]
fn layer_norm_matches_reference_without_subgroups() {
    let Some(g) = gpu_core() else { return };
    eprintln!("{}", pollster::block_on(selftest::layer_norm(g)));
}

#[test]
fn attention_matches_reference_without_subgroups() {
    let Some(g) = gpu_core() else { return };
    eprintln!("{}", pollster::block_on(selftest::attention(g)));
}

#[test]
fn vision_embeddings_match_reference() {
    let Some(g) = gpu() else { return };
    eprintln!("{}", pollster::block_on(selftest::vision_embeddings(g)));
}

#[test]
fn text_embed_and_pooling_match_reference() {
    let Some(g) = gpu() else { return };
    eprintln!(
        "{}",
        pollster::block_on(selftest::text_embed_and_pooling(g))
    );
}

fn end_to_end(model: &str, f32_weights: bool) {
    let read = |p: &str| std::fs::read(fixtures().join(p)).unwrap();
    let (json, tensors) = (
        read(&format!("goldens/{model}.json")),
        read(&format!("goldens/{model}.safetensors")),
    );
    // bf16 shares tiny224's preprocessor, so its goldens leave the pixels out.
    let pixels = read(&format!(
        "goldens/{}.safetensors",
        if model == "bf16" { "tiny224" } else { model }
    ));
    let src = DirSource::new(fixtures().join("models").join(model)).unwrap();
    let goldens = Goldens {
        json: &json,
        tensors: &tensors,
        pixels: &pixels,
    };
    eprintln!(
        "{}",
        pollster::block_on(selftest::end_to_end(model, &src, &goldens, f32_weights))
    );
}

#[test]
fn end_to_end_f32_weights_match_goldens() {
    if gpu().is_none() {
        return;
    }
    for m in ["tiny224", "odd", "bf16"] {
        end_to_end(m, true);
    }
}

#[test]
fn end_to_end_f16_weights_match_goldens() {
    if gpu().is_none() {
        return;
    }
    for m in ["tiny224", "odd", "bf16"] {
        end_to_end(m, false);
    }
}

/// The public API on the GPU backend: files -> preprocess -> tokenizer -> both towers -> scores.
#[test]
fn model_scores_on_gpu_match_goldens() {
    if gpu().is_none() {
        return;
    }
    let src = DirSource::new(fixtures().join("models").join("odd")).unwrap();
    let model = pollster::block_on(crate::Model::load(&src, crate::Backend::Gpu)).unwrap();
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("goldens/odd.json")).unwrap())
            .unwrap();
    let names: Vec<String> = g["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let bytes: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(fixtures().join("images").join(n)).unwrap())
        .collect();
    let inputs: Vec<crate::ImageInput> = names
        .iter()
        .zip(&bytes)
        .map(|(n, b)| crate::ImageInput { name: n, bytes: b })
        .collect();
    for (p, prompt) in g["prompts"].as_array().unwrap().iter().enumerate().take(3) {
        let got = pollster::block_on(model.score(prompt.as_str().unwrap(), &inputs)).unwrap();
        for (i, s) in got.iter().enumerate() {
            let want = g["scores"][p][i].as_f64().unwrap();
            assert!(
                (s.score as f64 - want).abs() <= SCORE_ABS_F16,
                "score[{p}][{i}] {} vs {want}",
                s.score
            );
        }
    }
    assert!(model.gpu_bytes() > 0);
}

/// A comma-separated list of numbers from the environment, or `default`.
fn env_list(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Kernel tuning harness (not a check): times `shaders/matmul.wgsl` (or the file named by
/// MATMUL_BASE) against the WGSL file named by MATMUL_VARIANT (same bindings; entry point
/// MATMUL_ENTRY, default `matmul_f16` / `matmul_f32`), interleaved so that machine load hits
/// both alike, and reports the largest output difference. MATMUL_SHAPE=m,k,n; the y tile each
/// workgroup covers, cols,rows: MATMUL_BASE_TILE and MATMUL_VARIANT_TILE (default 64,64). Both
/// files get their parts as the engine composes them (`module_source`) for the device's
/// features, the baseline for core WebGPU instead with MATMUL_BASE_FEATURES=core (so the two
/// W-tile types of matmul.wgsl run side by side with MATMUL_VARIANT=shaders/matmul.wgsl).
/// A file gets the parts of the engine's kernel file of the same name (`matmul_direct.wgsl`),
/// matmul.wgsl's under any other name.
/// `MATMUL_VARIANT=/tmp/v.wgsl cargo test --lib matmul_variant -- --ignored --nocapture`
#[test]
#[ignore]
fn matmul_variant_timing() {
    let Some(g) = gpu() else { return };
    let g = &g.0;
    let Ok(path) = std::env::var("MATMUL_VARIANT") else {
        return;
    };
    let file_name = |p: &str| {
        std::path::Path::new(p)
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    };
    let variant_src = std::fs::read_to_string(&path).unwrap();
    let variant = module_source(&path, &variant_src, parts_of(&file_name(&path)), g.features).1;
    let shape = env_list("MATMUL_SHAPE", "257,1280,1280");
    let (m, k, n) = (shape[0], shape[1], shape[2]);
    let f16 = std::env::var("MATMUL_F32").is_err();
    let tile = env_list("MATMUL_VARIANT_TILE", "64,64");
    let entry = std::env::var("MATMUL_ENTRY")
        .unwrap_or_else(|_| if f16 { "matmul_f16" } else { "matmul_f32" }.into());
    let (base, base_parts) = match std::env::var("MATMUL_BASE") {
        Ok(p) => (
            std::fs::read_to_string(&p).unwrap(),
            parts_of(&file_name(&p)),
        ),
        Err(_) => (MATMUL.wgsl.to_string(), MATMUL.parts),
    };
    let base_features = match std::env::var("MATMUL_BASE_FEATURES").as_deref() {
        Ok("core") => ShaderFeatures::default(),
        _ => g.features,
    };
    let base = module_source("baseline", &base, base_parts, base_features).1;
    let base_tile = env_list("MATMUL_BASE_TILE", "64,64");
    let make = |src: &str| {
        let module = g.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        g.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some(&entry),
                compilation_options: Default::default(),
                cache: None,
            })
    };
    let pipes = [make(&base), make(&variant)];
    let x = rand(m * k, 1, 1.0);
    let w = rand(n * k, 2, 1.0);
    let b = rand(n, 3, 1.0);
    let lin = GpuLinear::from_f32(g, &w, Some(&b), n, k, f16).unwrap();
    let xb = upload(g, &x);
    let ys = [
        g.storage("y0", (m * n * 4) as u64).unwrap(),
        g.storage("y1", (m * n * 4) as u64).unwrap(),
    ];
    let params = [m as u32, n as u32, k as u32, lin.ldw as u32, 1, 0, 0, 0];
    let ub = g.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 32,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    g.write(&ub, 0, bytemuck::cast_slice(&params));
    let mut times = [Vec::new(), Vec::new()];
    let mut outs = Vec::new();
    for it in 0..4 {
        for v in 0..2 {
            let bg = g.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipes[v].get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: ub.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: xb.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: if f16 { 2 } else { 3 },
                        resource: lin.weight.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: lin.bias.as_ref().unwrap().as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 5,
                        resource: ys[v].as_entire_binding(),
                    },
                ],
            });
            let mut enc = g.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipes[v]);
                pass.set_bind_group(0, &bg, &[]);
                let (tn, tm) = if v == 0 {
                    (base_tile[0], base_tile[1])
                } else {
                    (tile[0], tile[1])
                };
                pass.dispatch_workgroups(n.div_ceil(tn) as u32, m.div_ceil(tm) as u32, 1);
            }
            let t0 = std::time::Instant::now();
            g.queue.submit([enc.finish()]);
            g.wait_idle().unwrap();
            if it > 0 {
                times[v].push(t0.elapsed().as_secs_f64() * 1e3);
            }
            if it == 3 {
                outs.push(
                    pollster::block_on(g.submit_and_read(
                        g.device.create_command_encoder(&Default::default()),
                        &ys[v],
                        m * n,
                    ))
                    .unwrap(),
                );
            }
        }
    }
    let diff = outs[0]
        .iter()
        .zip(&outs[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let gf = 2.0 * (m * n * k) as f64 / 1e6;
    for (v, name) in ["baseline", "variant"].iter().enumerate() {
        let best = times[v].iter().cloned().fold(f64::MAX, f64::min);
        eprintln!(
            "{name:>8} {m}x{k}x{n} f16={f16}: best {best:.1} ms, {:.2} GFLOP/s, all {:?}",
            gf / best,
            times[v]
        );
    }
    eprintln!("max |baseline - variant| = {diff:.3e}");
}

/// CLIP-H (ViT-H/14 + 1024-wide text, random weights) with f16 weights fits in 2.1 GB of GPU
/// memory at batch 1, activations included. Slow on lavapipe (a full 32-layer image pass):
/// `cargo test --lib clip_h_memory -- --ignored --nocapture`.
#[test]
#[ignore]
fn clip_h_memory_at_batch_1() {
    if gpu().is_none() {
        return;
    }
    const BUDGET: u64 = 2_100_000_000;
    let src = crate::io::random::RandomSource::new("clip-h", None, 1).unwrap();
    let gm = pollster::block_on(async {
        let cfg = ClipConfig::from_json(&read_all(&src, "config.json", 1 << 20).await?)?;
        let ckpt = Checkpoint::open(&src).await?;
        GpuModel::load(&cfg, &ckpt, &src, GpuOptions::default(), &|_, _| {}).await
    })
    .unwrap();
    let weights = gm.gpu_bytes();
    let s = gm.cfg.vision.image_size;
    let t0 = std::time::Instant::now();
    let feats = pollster::block_on(gm.image_features(&vec![0.1; 3 * s * s], 1)).unwrap();
    let ids = vec![(0..77)
        .map(|i| if i == 76 { 49407 } else { 320 + i })
        .collect::<Vec<u32>>()];
    pollster::block_on(gm.text_features(&ids)).unwrap();
    assert!(feats.iter().all(|v| v.is_finite()));
    let total = gm.gpu_bytes();
    eprintln!(
        "CLIP-H f16: weights {:.3} GB, with batch-1 activations {:.3} GB (image + prompt pass {:.1} s)",
        weights as f64 / 1e9,
        total as f64 / 1e9,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        total <= BUDGET,
        "CLIP-H needs {total} bytes of GPU memory, budget {BUDGET}"
    );
}
