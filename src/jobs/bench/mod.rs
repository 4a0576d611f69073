//! `sciscore bench`: validates, then times the forward pass on a named geometry with random
//! weights, printing ms and GFLOP/s (FLOPs: 2*M*N*K for every matrix product, attention included;
//! norms, softmax and activations are not counted).

use crate::cpu::{linear, Linear};
use crate::error::{Error, Result};
use crate::models::clip::config::{ClipConfig, TowerConfig};
use crate::models::clip::cpu::CpuModel;
use crate::models::clip::weights::ClipWeights;
use crate::stats::median;
use std::time::Instant;

mod gpu;
mod inputs;

pub use gpu::{bench_gpu, GpuBench};

/// One timed case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub case: String,
    pub ms: f64,
    pub ms_per_item: f64,
    pub gflop: f64,
    pub gflops: f64,
}

/// FLOPs of one tower over `t` tokens (matrix products only).
pub fn tower_flops(t: &TowerConfig, tokens: usize) -> f64 {
    let (n, d, f) = (
        tokens as f64,
        t.hidden_size as f64,
        t.intermediate_size as f64,
    );
    let per_layer = 2.0 * n * d * (4.0 * d + 2.0 * f) + 2.0 * 2.0 * n * n * d;
    per_layer * t.num_layers as f64
}

/// FLOPs of `get_image_features` for one image.
pub fn vision_flops(c: &ClipConfig) -> f64 {
    let v = &c.vision;
    let patches = (v.grid() * v.grid()) as f64;
    let d = v.tower.hidden_size as f64;
    2.0 * patches * (3 * v.patch_size * v.patch_size) as f64 * d
        + tower_flops(&v.tower, v.num_positions())
        + 2.0 * d * c.projection_dim as f64
}

/// FLOPs of `get_text_features` for one prompt of `tokens` ids.
pub fn text_flops(c: &ClipConfig, tokens: usize) -> f64 {
    tower_flops(&c.text.tower, tokens) + 2.0 * (c.text.tower.hidden_size * c.projection_dim) as f64
}

fn time<F: FnMut() -> Result<()>>(iters: usize, mut f: F) -> Result<f64> {
    f()?; // warm-up
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t0 = Instant::now();
        f()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(ms))
}

/// Medians of `iters` runs of `a` and of `b` taken in turn after a warm-up of each, so that
/// machine load hits both alike (the patch map's overhead over the plain pass).
fn time_pair<A, B>(iters: usize, mut a: A, mut b: B) -> Result<(f64, f64)>
where
    A: FnMut() -> Result<()>,
    B: FnMut() -> Result<()>,
{
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for it in 0..=iters.max(1) {
        for (f, t) in [
            (&mut a as &mut dyn FnMut() -> Result<()>, &mut ta),
            (&mut b, &mut tb),
        ] {
            let t0 = Instant::now();
            f()?;
            if it > 0 {
                t.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok((median(ta), median(tb)))
}

/// The vision pass that also gives the patch map (`crate::jobs::explain`), beside the plain one.
pub(crate) fn patch_map_row(cfg: &ClipConfig, batch: usize, plain_ms: f64, ms: f64) -> BenchRow {
    let gflop = vision_flops(cfg) * batch as f64 / 1e9;
    BenchRow {
        case: format!(
            "vision + patch map, batch {batch} ({:+.1}% over the plain pass)",
            (ms / plain_ms - 1.0) * 100.0
        ),
        ms,
        ms_per_item: ms / batch as f64,
        gflop,
        gflops: gflop / ms * 1e3,
    }
}

/// The patch map's extra work alone (the image head over every patch row), timed apart from
/// the tower: a steadier measure of its cost than the difference of two whole passes on a busy
/// machine.
pub(crate) fn patch_head_row(cfg: &ClipConfig, batch: usize, plain_ms: f64, ms: f64) -> BenchRow {
    let rows = batch * (cfg.vision.num_positions() - 1);
    let gflop = 2.0 * (rows * cfg.vision.tower.hidden_size * cfg.projection_dim) as f64 / 1e9;
    BenchRow {
        case: format!(
            "patch map extra head work, {rows} rows ({:.2}% of the plain pass)",
            ms / plain_ms * 100.0
        ),
        ms,
        ms_per_item: ms / batch as f64,
        gflop,
        gflops: gflop / ms * 1e3,
    }
}

/// An occlusion map of `grid` x `grid` cells: that many images through the vision tower in
/// chunks of `chunk`, in `ms`.
pub(crate) fn occlusion_row(cfg: &ClipConfig, grid: usize, chunk: usize, ms: f64) -> BenchRow {
    let n = grid * grid;
    let gflop = vision_flops(cfg) * n as f64 / 1e9;
    BenchRow {
        case: format!(
            "occlusion {grid}x{grid}: {n} images in chunks of {chunk}, {:.2} images/s",
            n as f64 / ms * 1e3
        ),
        ms,
        ms_per_item: ms / n as f64,
        gflop,
        gflops: gflop / ms * 1e3,
    }
}

/// Checks `linear` against an f64 dot product on sampled entries of a realistic shape.
fn validate_linear(l: &Linear, rows: usize) -> Result<()> {
    let x = inputs::spread(rows * l.in_features);
    let y = linear(&x, rows, l);
    let w = l.weight.f32();
    for &(r, c) in &[
        (0, 0),
        (rows - 1, l.out_features - 1),
        (rows / 2, l.out_features / 3),
    ] {
        let want: f64 = l.bias.as_ref().map_or(0.0, |b| b[c] as f64)
            + (0..l.in_features)
                .map(|k| x[r * l.in_features + k] as f64 * w[c * l.in_features + k] as f64)
                .sum::<f64>();
        let got = y[r * l.out_features + c] as f64;
        if (got - want).abs() > 1e-3 * (1.0 + want.abs()) {
            return Err(Error::Invalid(format!(
                "validation failed: linear[{r},{c}] = {got}, f64 reference {want}"
            )));
        }
    }
    Ok(())
}

/// Times the CPU reference on a random model: vision at `batch`, text at 77 and 12 tokens.
pub async fn bench_cpu(
    preset: &str,
    layers: Option<usize>,
    batch: usize,
    iters: usize,
    occlusion: Option<usize>,
) -> Result<(ClipConfig, Vec<BenchRow>)> {
    let (src, cfg, ckpt) = inputs::random_model(preset, layers).await?;
    let w = ClipWeights::load(&cfg, &ckpt, &src).await?;
    let model = CpuModel {
        cfg: cfg.clone(),
        w,
    };
    if let Some(l) = model.w.vision.layers.first() {
        validate_linear(&l.mlp.fc1, model.cfg.vision.num_positions())?;
    }
    let mut rows = Vec::new();
    let s = cfg.vision.image_size;
    let pixels = inputs::pixels(&cfg, batch);
    let feats = model.image_features(&pixels, batch, None)?;
    if feats.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "validation failed: non-finite image features".into(),
        ));
    }
    let (ms, patch_ms) = time_pair(
        iters,
        || model.image_features(&pixels, batch, None).map(|_| ()),
        || model.image_and_patch_features(&pixels, batch).map(|_| ()),
    )?;
    let gflop = vision_flops(&cfg) * batch as f64 / 1e9;
    rows.push(BenchRow {
        case: format!("vision, batch {batch}"),
        ms,
        ms_per_item: ms / batch as f64,
        gflop,
        gflops: gflop / ms * 1e3,
    });
    rows.push(patch_map_row(&cfg, batch, ms, patch_ms));
    let (d, t) = (cfg.vision.tower.hidden_size, cfg.vision.num_positions());
    let last = inputs::spread(batch * t * d);
    let head_ms = time(iters.max(5), || {
        std::hint::black_box(model.patch_features(&last, batch));
        Ok(())
    })?;
    rows.push(patch_head_row(&cfg, batch, ms, head_ms));
    if let Some(g) = occlusion {
        let chunk = crate::jobs::explain::occlusion_chunk(crate::Backend::Cpu);
        let batch = crate::jobs::explain::occluded_batch(&pixels[..3 * s * s], s, g, 0..g * g);
        let t0 = Instant::now();
        for part in batch.chunks(chunk * 3 * s * s) {
            model.image_features(part, part.len() / (3 * s * s), None)?;
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        rows.push(occlusion_row(&cfg, g, chunk, ms));
    }
    for tokens in [77usize, 12] {
        let ids = inputs::prompt(tokens, 0);
        let ms = time(iters, || model.text_features(&ids, None).map(|_| ()))?;
        let gflop = text_flops(&cfg, tokens) / 1e9;
        rows.push(BenchRow {
            case: format!("text, {tokens} tokens"),
            ms,
            ms_per_item: ms,
            gflop,
            gflops: gflop / ms * 1e3,
        });
    }
    Ok((cfg, rows))
}
