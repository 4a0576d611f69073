//! `sciscore bench --backend gpu`: validates the GPU forward against the CPU reference on the same
//! random weights, then times every ViT-H / text matmul shape, each stage of both towers, and
//! the whole forward per image and per prompt.
//!
//! Times come from timestamp queries where the adapter has `timestamp-query`, else from the wall
//! clock around one submission per kernel with a full queue wait (which adds the submit
//! overhead, ~0.1 ms, to each kernel). FLOPs: 2 M N K per matmul, 4 T^2 D per attention; norms,
//! softmax, embeddings and activations are not counted (as in the CPU benchmark).

use super::inputs::{pixels, prompt, ramp, random_model, spread};
use super::{occlusion_row, patch_head_row, patch_map_row, text_flops, vision_flops, BenchRow};
use crate::error::{Error, Result};
use crate::gpu::{Epilogue, Gpu, GpuLinear, Pass};
use crate::models::clip::config::{ClipConfig, TowerConfig};
use crate::models::clip::cpu::CpuModel;
use crate::models::clip::gpu::{GpuModel, GpuOptions, VisionHead};
use crate::models::clip::weights::ClipWeights;
use crate::stats::{cosine, median};
use std::time::Instant;

/// GPU vs CPU reference on one random layer per tower: f16 weights move the embedding by about
/// 1e-4 relative (cos 1 - 1e-8); 0.9995 is the same bar as the f16 golden tests.
const VALIDATE_COS: f64 = 0.9995;

/// What `bench_gpu` found.
pub struct GpuBench {
    pub cfg: ClipConfig,
    pub device: String,
    /// "timestamp-query" or "wall-clock".
    pub timing: &'static str,
    pub gpu_bytes: u64,
    /// (what, cosine GPU vs CPU) of the validation run.
    pub validation: Vec<(String, f64)>,
    pub rows: Vec<BenchRow>,
}

fn row(case: String, ms: f64, items: usize, flops: f64) -> BenchRow {
    let gflop = flops / 1e9;
    BenchRow {
        case,
        ms,
        ms_per_item: ms / items.max(1) as f64,
        gflop,
        gflops: if ms > 0.0 { gflop / ms * 1e3 } else { 0.0 },
    }
}

/// GPU vs CPU on the same random weights with one layer per tower: two images in one batch,
/// two prompts of different lengths in one padded pass.
async fn validate(preset: &str, opts: GpuOptions) -> Result<Vec<(String, f64)>> {
    let (src, cfg, ckpt) = random_model(preset, Some(1)).await?;
    let gpu = GpuModel::load(&cfg, &ckpt, &src, opts, &|_, _| {}).await?;
    let cpu = CpuModel {
        cfg: cfg.clone(),
        w: ClipWeights::load(&cfg, &ckpt, &src).await?,
    };
    let mut out = Vec::new();
    let px = pixels(&cfg, 2);
    let (g, c) = (
        gpu.image_features(&px, 2).await?,
        cpu.image_features(&px, 2, None)?,
    );
    let p = cfg.projection_dim;
    for i in 0..2 {
        out.push((
            format!("image {i}"),
            cosine(&g[i * p..][..p], &c[i * p..][..p]),
        ));
    }
    let ids = [prompt(cfg.text.max_position_embeddings, 0), prompt(12, 7)];
    let g = gpu.text_features(&ids).await?;
    for (i, id) in ids.iter().enumerate() {
        out.push((
            format!("prompt of {} tokens", id.len()),
            cosine(&g[i], &cpu.text_features(id, None)?),
        ));
    }
    if let Some((what, c)) = out.iter().find(|(_, c)| c.is_nan() || *c < VALIDATE_COS) {
        return Err(Error::Invalid(format!(
            "validation failed: GPU vs CPU on {what}: cosine {c:.6} < {VALIDATE_COS} (random {preset}, 1 layer)"
        )));
    }
    Ok(out)
}

/// Milliseconds of each call of `pass`: timestamps in one submission where available, else one
/// submission per call with a queue wait; the median of `iters` runs after a warm-up.
async fn time_ops(gpu: &Gpu, pass: &Pass<'_>, iters: usize) -> Result<Vec<f64>> {
    let n = pass.len();
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); n];
    match gpu.timestamp_period {
        Some(period) => {
            // Query sets hold at most 4096 queries: time in windows of 2048 calls.
            for it in 0..=iters {
                let mut start = 0;
                while start < n {
                    let end = (start + 2048).min(n);
                    let count = (2 * (end - start)) as u32;
                    let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("bench"),
                        ty: wgpu::QueryType::Timestamp,
                        count,
                    });
                    let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("timestamps"),
                        size: count as u64 * 8,
                        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    });
                    let mut enc =
                        gpu.device
                            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                                label: Some("bench"),
                            });
                    pass.encode_range(&mut enc, start..end, Some(&qs))?;
                    enc.resolve_query_set(&qs, 0..count, &resolve, 0);
                    let bytes = gpu
                        .submit_and_read_bytes(enc, &resolve, count as u64 * 8)
                        .await?;
                    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
                    if it > 0 {
                        for j in 0..end - start {
                            let dt = ticks[2 * j + 1].saturating_sub(ticks[2 * j]);
                            runs[start + j].push(dt as f64 * period as f64 / 1e6);
                        }
                    }
                    start = end;
                }
            }
        }
        None => {
            for it in 0..=iters {
                for (i, r) in runs.iter_mut().enumerate() {
                    let mut enc =
                        gpu.device
                            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                                label: Some("bench"),
                            });
                    pass.encode_range(&mut enc, i..i + 1, None)?;
                    let t0 = Instant::now();
                    gpu.queue.submit([enc.finish()]);
                    gpu.wait_idle()?;
                    if it > 0 {
                        r.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                }
                gpu.check()?;
            }
        }
    }
    Ok(runs.into_iter().map(median).collect())
}

/// The four matmuls of a layer over `t` rows: (label, M, K, N).
fn layer_shapes(tower: &TowerConfig, t: usize) -> [(&'static str, usize, usize, usize); 4] {
    let (d, f) = (tower.hidden_size, tower.intermediate_size);
    [
        ("qkv_proj", t, d, 3 * d),
        ("out_proj", t, d, d),
        ("fc1", t, d, f),
        ("fc2", t, f, d),
    ]
}

/// GFLOP/s of each matmul shape of one layer, alone on the device.
async fn matmul_rows(
    gpu: &Gpu,
    tower: &TowerConfig,
    t: usize,
    name: &str,
    f16: bool,
    iters: usize,
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for (label, m, k, n) in layer_shapes(tower, t) {
        let w: Vec<f32> = spread(n * k).into_iter().map(|v| v * 0.03).collect();
        let bias = vec![0.01f32; n];
        let lin = GpuLinear::from_f32(gpu, &w, Some(&bias), n, k, f16)?;
        let x = ramp(m * k);
        let xb = gpu.upload("x", bytemuck::cast_slice(&x))?;
        let yb = gpu.storage("y", (m * n * 4) as u64)?;
        let mut pass = Pass::new(gpu);
        pass.linear(label, &lin, &xb, &yb, m, Epilogue::Store);
        // One or two dispatches (64-row tiles, then 16-row tiles for a short remainder).
        let ms = time_ops(gpu, &pass, iters).await?.iter().sum();
        rows.push(row(
            format!("matmul {name} {label} {m}x{k}x{n}"),
            ms,
            1,
            2.0 * (m * n * k) as f64,
        ));
    }
    Ok(rows)
}

/// Per-stage rows of one recorded tower: time per label summed over layers, per layer where
/// the stage repeats, and the whole layer.
fn stage_rows(
    tower: &str,
    ops: &[(&'static str, f64)],
    ms: &[f64],
    layers: usize,
    items: usize,
) -> Vec<BenchRow> {
    let mut labels: Vec<&'static str> = Vec::new();
    for (l, _) in ops {
        if !labels.contains(l) {
            labels.push(l);
        }
    }
    let mut rows = Vec::new();
    const LAYER_OPS: [&str; 9] = [
        "layer_norm1",
        "qkv_proj",
        "attn_scores",
        "attn_softmax",
        "attn_context",
        "out_proj",
        "layer_norm2",
        "fc1",
        "fc2",
    ];
    let (mut layer_ms, mut layer_flops) = (0.0, 0.0);
    for l in labels {
        let (t, f): (f64, f64) = ops
            .iter()
            .zip(ms)
            .filter(|((o, _), _)| *o == l)
            .fold((0.0, 0.0), |a, ((_, f), m)| (a.0 + m, a.1 + f));
        if LAYER_OPS.contains(&l) {
            layer_ms += t;
            layer_flops += f;
            rows.push(row(
                format!("{tower} stage {l} (per layer)"),
                t / layers.max(1) as f64,
                items,
                f / layers.max(1) as f64,
            ));
        } else {
            rows.push(row(format!("{tower} stage {l}"), t, items, f));
        }
    }
    rows.push(row(
        format!("{tower} one encoder layer"),
        layer_ms / layers.max(1) as f64,
        items,
        layer_flops / layers.max(1) as f64,
    ));
    rows
}

/// Validates, then times the GPU engine on a random model of geometry `preset`.
pub async fn bench_gpu(
    preset: &str,
    layers: Option<usize>,
    batch: usize,
    iters: usize,
    f32_weights: bool,
    occlusion: Option<usize>,
) -> Result<GpuBench> {
    let iters = iters.max(1);
    let opts = GpuOptions { f32_weights };
    let validation = validate(preset, opts).await?;
    let (src, cfg, ckpt) = random_model(preset, layers).await?;
    let model = GpuModel::load(&cfg, &ckpt, &src, opts, &|_, _| {}).await?;
    drop(ckpt);
    let gpu = &model.gpu;
    let f16 = !opts.f32_weights;
    let mut rows = Vec::new();
    let tv = cfg.vision.num_positions();
    let tt = cfg.text.max_position_embeddings;
    rows.extend(matmul_rows(gpu, &cfg.vision.tower, tv, "vision", f16, iters).await?);
    rows.extend(matmul_rows(gpu, &cfg.text.tower, tt, "text", f16, iters).await?);

    // Stages of each tower at the requested batch.
    let px = pixels(&cfg, batch);
    let (_, pass, _) = model.record_vision(&px, batch)?;
    let ms = time_ops(gpu, &pass, 1).await?;
    rows.extend(stage_rows(
        &format!("vision b{batch}"),
        &pass.ops(),
        &ms,
        cfg.vision.tower.num_layers,
        batch,
    ));
    drop(pass);
    // The patch map's head: post_layernorm + visual_projection over all B*T rows (the last two
    // kernels of that pass) in place of gather + both over the B class rows (the last three).
    let plain_total: f64 = ms.iter().sum();
    let pooled_head: f64 = ms[ms.len().saturating_sub(3)..].iter().sum();
    let (_, pass, _) = model.record_vision_head(&px, batch, VisionHead::AllTokens)?;
    let all = time_ops(gpu, &pass, 1).await?;
    drop(pass);
    let head: f64 = all[all.len().saturating_sub(2)..].iter().sum();
    rows.push(patch_head_row(
        &cfg,
        batch,
        plain_total,
        (head - pooled_head).max(0.0),
    ));
    let ids: Vec<Vec<u32>> = (0..batch).map(|i| prompt(tt, i as u32)).collect();
    let (enc, pass, _) = model.record_text(&ids)?;
    gpu.queue.submit([enc.finish()]); // the token-row copies the kernels read
    let ms = time_ops(gpu, &pass, 1).await?;
    rows.extend(stage_rows(
        &format!("text b{batch}"),
        &pass.ops(),
        &ms,
        cfg.text.tower.num_layers,
        batch,
    ));
    drop(pass);

    // Whole forward passes, wall clock including upload and readback.
    // The plain pass and the one with the patch map (region maps) in turn, so that load hits
    // both alike.
    let (mut t, mut tp) = (Vec::new(), Vec::new());
    for it in 0..=iters {
        let t0 = Instant::now();
        model.image_features(&px, batch).await?;
        let t1 = Instant::now();
        model.image_and_patch_features(&px, batch).await?;
        if it > 0 {
            t.push((t1 - t0).as_secs_f64() * 1e3);
            tp.push(t1.elapsed().as_secs_f64() * 1e3);
        }
    }
    let plain = median(t);
    rows.push(row(
        format!("vision forward, batch {batch}"),
        plain,
        batch,
        vision_flops(&cfg) * batch as f64,
    ));
    rows.push(patch_map_row(&cfg, batch, plain, median(tp)));
    if let Some(g) = occlusion {
        let s = cfg.vision.image_size;
        let chunk = crate::jobs::explain::occlusion_chunk(crate::Backend::Gpu);
        let cells = crate::jobs::explain::occluded_batch(&px[..3 * s * s], s, g, 0..g * g);
        let t0 = Instant::now();
        for part in cells.chunks(chunk * 3 * s * s) {
            model.image_features(part, part.len() / (3 * s * s)).await?;
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        rows.push(occlusion_row(&cfg, g, chunk, ms));
    }
    let mut t = Vec::new();
    for it in 0..=iters {
        let t0 = Instant::now();
        model.text_features(&ids).await?;
        if it > 0 {
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    rows.push(row(
        format!("text forward, {batch} x {tt} tokens"),
        median(t),
        batch,
        text_flops(&cfg, tt) * batch as f64,
    ));
    Ok(GpuBench {
        device: model.adapter_info(),
        timing: if gpu.timestamp_period.is_some() {
            "timestamp-query"
        } else {
            "wall-clock"
        },
        gpu_bytes: model.gpu_bytes(),
        validation,
        rows,
        cfg,
    })
}
