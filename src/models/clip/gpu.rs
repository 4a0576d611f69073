//! The CLIP forward pass on the GPU: each tower is recorded into one command buffer (one
//! submission) and only the projected features are read back.
//!
//! Legend: B = batch (prompts or images), T = tokens (text: longest prompt, <= 77; vision:
//! 1 + (S/p)^2 = 257), D = width (text 1024, vision 1280 for ViT-H), H = heads, Dh = D/H,
//! F = MLP width, P = projection width, N = (S/p)^2 patches.
//!
//! Text prompts of different lengths share one pass, padded at the end to the longest: with the
//! causal mask no real token attends to a pad, so the padded rows change nothing we read.

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

use super::gpu_weights::{GpuEncoderLayer, GpuWeights};
use crate::error::{Error, Result};
use crate::gpu::{Epilogue, Gpu, Pass};
use crate::io::safetensors::Checkpoint;
use crate::io::source::ModelSource;
use crate::models::clip::config::{Activation, ClipConfig, TowerConfig};
use crate::models::clip::pool_position;
use std::collections::HashMap;
use std::sync::Mutex;

/// Activation buffers, kept between calls and grown when a bigger batch comes.
#[derive(Default)]
struct Arena {
    bufs: HashMap<&'static str, wgpu::Buffer>,
}

impl Arena {
    fn get(&mut self, gpu: &Gpu, name: &'static str, bytes: usize) -> Result<wgpu::Buffer> {
        let bytes = bytes as u64;
        if let Some(b) = self.bufs.get(name) {
            if b.size() >= bytes {
                return Ok(b.clone());
            }
        }
        let b = gpu.storage(name, bytes)?;
        self.bufs.insert(name, b.clone());
        Ok(b)
    }

    fn bytes(&self) -> u64 {
        self.bufs.values().map(|b| b.size()).sum()
    }
}

/// The activations of one tower pass.
struct Acts {
    x: wgpu::Buffer,      // (B*T, D) f32, the residual stream
    h: wgpu::Buffer,      // (B*T, D) f32, normed input of a block
    qkv: wgpu::Buffer,    // (B*T, 3D) f32
    scores: wgpu::Buffer, // (B*H, T, T) f32, attention scores, then probabilities
    ctx: wgpu::Buffer,    // (B*T, D) f32, attention output (heads side by side)
    f: wgpu::Buffer,      // (B*T, F) f32, MLP hidden
}

/// Load-time choices of the GPU forward.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GpuOptions {
    /// Keep matrix weights in f32 instead of packed f16 (twice the memory; bit-faithful to f32
    /// checkpoints).
    pub f32_weights: bool,
}

/// The f16 (default) or f32 weights of a `CLIPModel` on a GPU, with its pipelines.
pub(crate) struct GpuModel {
    pub(crate) gpu: Gpu,
    pub(crate) cfg: ClipConfig,
    pub(crate) w: GpuWeights,
    arena: Mutex<Arena>,
}

fn f32_bytes(n: usize) -> usize {
    n * 4
}

impl GpuModel {
    /// Opens a device, compiles the kernels (calling `shaders_compiled(compiled, total)`) and
    /// streams the weights in.
    pub(crate) async fn load(
        cfg: &ClipConfig,
        ckpt: &Checkpoint,
        src: &dyn ModelSource,
        opts: GpuOptions,
        shaders_compiled: &dyn Fn(usize, usize),
    ) -> Result<GpuModel> {
        let gpu = Gpu::with_progress(shaders_compiled).await?;
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let w = GpuWeights::load(&gpu, cfg, ckpt, src, !opts.f32_weights).await;
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("out of GPU memory while loading the weights ({e}); try a smaller model or `--backend cpu`")));
        }
        let w = w?;
        gpu.check()?;
        Ok(GpuModel {
            gpu,
            cfg: cfg.clone(),
            w,
            arena: Mutex::new(Arena::default()),
        })
    }

    /// Bytes of GPU memory held: weights plus the activation arena.
    pub(crate) fn gpu_bytes(&self) -> u64 {
        self.w.bytes + self.arena.lock().map_or(0, |a| a.bytes())
    }

    pub(crate) fn adapter_info(&self) -> String {
        self.gpu.info().to_string()
    }

    fn buf(&self, name: &'static str, bytes: usize) -> Result<wgpu::Buffer> {
        let mut a = self
            .arena
            .lock()
            .map_err(|_| Error::Gpu("activation arena poisoned".into()))?;
        a.get(&self.gpu, name, bytes)
    }

    fn acts(&self, b: usize, t: usize, tower: &TowerConfig) -> Result<Acts> {
        let (d, f, rows) = (tower.hidden_size, tower.intermediate_size, b * t);
        Ok(Acts {
            scores: self.buf("scores", f32_bytes(b * tower.num_heads * t * t))?,
            x: self.buf("x", f32_bytes(rows * d))?,
            h: self.buf("h", f32_bytes(rows * d))?,
            qkv: self.buf("qkv", f32_bytes(rows * 3 * d))?,
            ctx: self.buf("ctx", f32_bytes(rows * d))?,
            f: self.buf("f", f32_bytes(rows * f))?,
        })
    }

    /// Most sequences of `t` tokens one pass can hold within the storage-binding limit.
    fn max_batch(&self, tower: &TowerConfig, t: usize, extra_per_item: usize) -> usize {
        let widest =
            ((3 * tower.hidden_size).max(tower.intermediate_size) * t).max(tower.num_heads * t * t);
        let per_item = f32_bytes(widest.max(extra_per_item)) as u64;
        ((self.gpu.limits.max_storage_buffer_binding_size / per_item.max(1)) as usize).max(1)
    }

    /// `get_text_features` of each prompt's ids: (B, P), one submission per batch.
    pub(crate) async fn text_features(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let tc = &self.cfg.text;
        for (i, p) in ids.iter().enumerate() {
            if p.is_empty() || p.len() > tc.max_position_embeddings {
                return Err(Error::Invalid(format!(
                    "prompt {i} has {} tokens; this model takes 1 to {}",
                    p.len(),
                    tc.max_position_embeddings
                )));
            }
            if let Some(&bad) = p.iter().find(|&&id| id as usize >= tc.vocab_size) {
                return Err(Error::Invalid(format!(
                    "token id {bad} is outside the vocabulary ({})",
                    tc.vocab_size
                )));
            }
        }
        let t_max = ids.iter().map(Vec::len).max().unwrap_or(1);
        let chunk = self.max_batch(&tc.tower, t_max, 0);
        let mut out = Vec::with_capacity(ids.len());
        for part in ids.chunks(chunk) {
            let feats = self.text_batch(part).await?;
            let p = self.cfg.projection_dim;
            out.extend(feats.chunks_exact(p).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    async fn text_batch(&self, ids: &[Vec<u32>]) -> Result<Vec<f32>> {
        self.run(
            || self.record_text(ids),
            ids.len() * self.cfg.projection_dim,
        )
        .await
    }

    /// Records a tower pass, submits it and reads `count` features back. A validation error
    /// raised while recording (a bad binding, a buffer over a limit) is reported as the cause,
    /// rather than the failed submission it leads to.
    async fn run<'a>(
        &'a self,
        record: impl FnOnce() -> Result<(wgpu::CommandEncoder, Pass<'a>, wgpu::Buffer)>,
        count: usize,
    ) -> Result<Vec<f32>> {
        self.gpu.check()?;
        let scope = self
            .gpu
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let result = async {
            let (mut enc, pass, feats) = record()?;
            pass.encode(&mut enc)?;
            self.gpu.submit_and_read(enc, &feats, count).await
        }
        .await;
        match scope.pop().await {
            Some(e) => Err(Error::Gpu(format!("recording the forward pass: {e}"))),
            None => result,
        }
    }

    /// Records the text tower for B prompts: the token-row copies in the encoder, the kernels in
    /// the pass; the features land in the returned (B, P) buffer.
    pub(crate) fn record_text(
        &self,
        ids: &[Vec<u32>],
    ) -> Result<(wgpu::CommandEncoder, Pass<'_>, wgpu::Buffer)> {
        let (tc, w) = (&self.cfg.text, &self.w.text);
        let (b, t, d) = (
            ids.len(),
            ids.iter().map(Vec::len).max().unwrap_or(1),
            tc.tower.hidden_size,
        );
        let f16 = self.w.f16;
        let row_bytes = (w.token_ld * 4) as u64;
        let rows = self.buf("token_rows", b * t * w.token_ld * 4)?;
        let a = self.acts(b, t, &tc.tower)?;
        let index: Vec<u32> = ids
            .iter()
            .enumerate()
            .map(|(i, p)| (i * t + pool_position(p, tc.eos_token_id)) as u32)
            .collect();
        let index_buf = self.buf("pool_index", 4 * b)?;
        self.gpu.write(&index_buf, 0, bytemuck::cast_slice(&index));
        let (pooled_raw, pooled) = (
            self.buf("pooled_raw", f32_bytes(b * d))?,
            self.buf("pooled", f32_bytes(b * d))?,
        );
        let feats = self.buf("feats", f32_bytes(b * self.cfg.projection_dim))?;

        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("text tower"),
            });
        // token rows (B*T, D) = token_embedding[ids], padded with id 0 past each prompt's end
        for (s, p) in ids.iter().enumerate() {
            for r in 0..t {
                let id = p.get(r).copied().unwrap_or(0) as u64;
                enc.copy_buffer_to_buffer(
                    &w.token_embedding,
                    id * row_bytes,
                    &rows,
                    (s * t + r) as u64 * row_bytes,
                    row_bytes,
                );
            }
        }
        let mut pass = Pass::new(&self.gpu);
        // x = token rows + position_embedding[0..T]   (B*T, D)
        pass.text_embed(&rows, f16, w.token_ld, &w.position_embedding, &a.x, b, t, d);
        for l in &w.layers {
            encoder_layer(&mut pass, l, &a, b, t, &tc.tower, true);
        }
        // pooled = final_layer_norm(x[b, eos_b])   (B, D)
        pass.gather_rows(&a.x, &index_buf, &pooled_raw, b, d);
        pass.layer_norm(
            "final_layer_norm",
            &w.final_layer_norm,
            &pooled_raw,
            &pooled,
            b,
            d,
            tc.tower.layer_norm_eps,
        );
        // feats = pooled . text_projection^T   (B, P)
        pass.linear(
            "text_projection",
            &self.w.text_projection,
            &pooled,
            &feats,
            b,
            Epilogue::Store,
        );
        Ok((enc, pass, feats))
    }

    /// `get_image_features` of B preprocessed images (B, 3, S, S): (B, P).
    pub(crate) async fn image_features(&self, pixels: &[f32], b: usize) -> Result<Vec<f32>> {
        let vc = &self.cfg.vision;
        let s = vc.image_size;
        let per = 3 * s * s;
        if pixels.len() != b * per {
            return Err(Error::Invalid(format!(
                "{} pixel values for {b} images of 3x{s}x{s}",
                pixels.len()
            )));
        }
        let t = vc.num_positions();
        let patch_row = 3 * vc.patch_size * vc.patch_size;
        let chunk = self.max_batch(&vc.tower, t, (t * patch_row).max(per));
        let mut out = Vec::with_capacity(b * self.cfg.projection_dim);
        for part in pixels.chunks(chunk * per) {
            out.extend(self.image_batch(part, part.len() / per).await?);
        }
        Ok(out)
    }

    async fn image_batch(&self, pixels: &[f32], b: usize) -> Result<Vec<f32>> {
        self.run(
            || self.record_vision(pixels, b),
            b * self.cfg.projection_dim,
        )
        .await
    }

    /// Records the vision tower for B images (pixels are queued for upload); the features land
    /// in the returned (B, P) buffer.
    pub(crate) fn record_vision(
        &self,
        pixels: &[f32],
        b: usize,
    ) -> Result<(wgpu::CommandEncoder, Pass<'_>, wgpu::Buffer)> {
        self.record_vision_head(pixels, b, VisionHead::Pooled)
    }

    /// `get_image_features` of B preprocessed images (B, P) and, from the same pass, each patch
    /// token's `visual_projection(post_layernorm(h[1 + i]))` (B*N, P), the patch map's input.
    pub(crate) async fn image_and_patch_features(
        &self,
        pixels: &[f32],
        b: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let vc = &self.cfg.vision;
        let (s, t, p) = (vc.image_size, vc.num_positions(), self.cfg.projection_dim);
        let per = 3 * s * s;
        if pixels.len() != b * per {
            return Err(Error::Invalid(format!(
                "{} pixel values for {b} images of 3x{s}x{s}",
                pixels.len()
            )));
        }
        let patch_row = 3 * vc.patch_size * vc.patch_size;
        let chunk = self.max_batch(&vc.tower, t, (t * patch_row).max(per));
        let (mut feats, mut patches) = (Vec::new(), Vec::new());
        for part in pixels.chunks(chunk * per) {
            let n = part.len() / per;
            let tokens = self
                .run(
                    || self.record_vision_head(part, n, VisionHead::AllTokens),
                    n * t * p,
                )
                .await?;
            // Row img*T is the class token (the image's features), the next N its patches.
            for img in tokens.chunks_exact(t * p) {
                feats.extend_from_slice(&img[..p]);
                patches.extend_from_slice(&img[p..]);
            }
        }
        Ok((feats, patches))
    }

    /// [`Self::record_vision`] with the image head applied to the class token only, or to every
    /// token (the returned buffer is then (B*T, P)).
    pub(crate) fn record_vision_head(
        &self,
        pixels: &[f32],
        b: usize,
        head: VisionHead,
    ) -> Result<(wgpu::CommandEncoder, Pass<'_>, wgpu::Buffer)> {
        let (vc, w) = (&self.cfg.vision, &self.w.vision);
        let (d, s, p, t) = (
            vc.tower.hidden_size,
            vc.image_size,
            vc.patch_size,
            vc.num_positions(),
        );
        let n = vc.grid() * vc.grid();
        let pix = self.buf("pixels", f32_bytes(pixels.len()))?;
        self.gpu.write(&pix, 0, bytemuck::cast_slice(pixels));
        let patches = self.buf("patches", f32_bytes(b * n * 3 * p * p))?;
        let a = self.acts(b, t, &vc.tower)?;
        let index: Vec<u32> = (0..b).map(|i| (i * t) as u32).collect();
        let index_buf = self.buf("pool_index", 4 * b)?;
        self.gpu.write(&index_buf, 0, bytemuck::cast_slice(&index));
        let (pooled_raw, pooled) = (
            self.buf("pooled_raw", f32_bytes(b * d))?,
            self.buf("pooled", f32_bytes(b * d))?,
        );
        let feats = self.buf("feats", f32_bytes(b * self.cfg.projection_dim))?;

        let enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("vision tower"),
            });
        let mut pass = Pass::new(&self.gpu);
        // patch embeds (B*N, D) = im2col(pixels) . patch_embedding^T   (the stride-p conv)
        pass.im2col(&pix, &patches, b, s, p);
        pass.linear(
            "patch_embedding",
            &w.patch_embedding,
            &patches,
            &a.ctx,
            b * n,
            Epilogue::Store,
        );
        // h = [class; patch embeds] + position_embedding   (B*T, D);  x = pre_layrnorm(h)
        pass.vision_embed(
            &a.ctx,
            &w.class_embedding,
            &w.position_embedding,
            &a.h,
            b,
            t,
            d,
        );
        pass.layer_norm(
            "pre_layrnorm",
            &w.pre_layernorm,
            &a.h,
            &a.x,
            b * t,
            d,
            vc.tower.layer_norm_eps,
        );
        for l in &w.layers {
            encoder_layer(&mut pass, l, &a, b, t, &vc.tower, false);
        }
        if head == VisionHead::AllTokens {
            // tokens = visual_projection(post_layernorm(x))   (B*T, P), h as the normed scratch
            let tokens = self.buf("token_feats", f32_bytes(b * t * self.cfg.projection_dim))?;
            let eps = vc.tower.layer_norm_eps;
            pass.layer_norm(
                "post_layernorm",
                &w.post_layernorm,
                &a.x,
                &a.h,
                b * t,
                d,
                eps,
            );
            pass.linear(
                "visual_projection",
                &self.w.visual_projection,
                &a.h,
                &tokens,
                b * t,
                Epilogue::Store,
            );
            return Ok((enc, pass, tokens));
        }
        // pooled = post_layernorm(x[:, 0])   (B, D)
        pass.gather_rows(&a.x, &index_buf, &pooled_raw, b, d);
        pass.layer_norm(
            "post_layernorm",
            &w.post_layernorm,
            &pooled_raw,
            &pooled,
            b,
            d,
            vc.tower.layer_norm_eps,
        );
        // feats = pooled . visual_projection^T   (B, P)
        pass.linear(
            "visual_projection",
            &self.w.visual_projection,
            &pooled,
            &feats,
            b,
            Epilogue::Store,
        );
        Ok((enc, pass, feats))
    }
}

/// Which tokens the vision tower's head (`post_layernorm`, `visual_projection`) is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VisionHead {
    /// The class token: `get_image_features`.
    Pooled,
    /// Every token: the class token's features and each patch's (the patch map).
    AllTokens,
}

/// One pre-norm encoder layer over B sequences of T tokens, on `a.x` (B*T, D) in place.
fn encoder_layer(
    pass: &mut Pass,
    l: &GpuEncoderLayer,
    a: &Acts,
    b: usize,
    t: usize,
    tower: &TowerConfig,
    causal: bool,
) {
    let (rows, d, eps) = (b * t, tower.hidden_size, tower.layer_norm_eps);
    // x = x + out_proj(attn(qkv_proj(ln1(x))))
    pass.layer_norm("layer_norm1", &l.layer_norm1, &a.x, &a.h, rows, d, eps);
    pass.linear(
        "qkv_proj",
        &l.self_attn.qkv_proj,
        &a.h,
        &a.qkv,
        rows,
        Epilogue::Store,
    );
    pass.attention(&a.qkv, &a.scores, &a.ctx, b, t, d, tower.num_heads, causal);
    pass.linear(
        "out_proj",
        &l.self_attn.out_proj,
        &a.ctx,
        &a.x,
        rows,
        Epilogue::Residual,
    );
    // x = x + fc2(act(fc1(ln2(x))))
    pass.layer_norm("layer_norm2", &l.layer_norm2, &a.x, &a.h, rows, d, eps);
    pass.linear(
        "fc1",
        &l.mlp.fc1,
        &a.h,
        &a.f,
        rows,
        match tower.act {
            Activation::Gelu => Epilogue::Gelu,
            Activation::QuickGelu => Epilogue::QuickGelu,
        },
    );
    pass.linear("fc2", &l.mlp.fc2, &a.f, &a.x, rows, Epilogue::Residual);
}
