//! The weights of a `CLIPModel` on the GPU, named as in Hugging Face `modeling_clip.py`
//! (transformers 4.50.3), streamed tensor by tensor (and matrices in row chunks) from the same
//! `Checkpoint` + `ModelSource` as the CPU model, converted to packed f16 (default) or f32 on
//! the way. q/k/v projections are fused into one (3D, D) matrix at load.
//!
//! Matrix layout: PyTorch's (out, in) row-major. f16: pairs packed in `u32`, row stride
//! ceil(in / 2) words with a zero pad half when `in` is odd (shaders/matmul.wgsl `ldw`).
//! Vectors (biases, LayerNorm, class and position embeddings) are always f32.

use crate::error::Result;
use crate::gpu::{pack_rows, row_words, Gpu, GpuLayerNorm, GpuLinear};
use crate::io::safetensors::{to_f32, Checkpoint};
use crate::io::source::ModelSource;
use crate::models::clip::config::ClipConfig;
use crate::models::clip::schema::{ClipSchema, LayerNormSpec, LinearSpec, Tensor, TowerSpec};

/// Source bytes read per chunk while streaming a matrix: bounds host memory (wasm32) at a few
/// MB whatever the tensor (the token table is 101-202 MB).
const CHUNK_BYTES: u64 = 8 << 20;

/// The largest finite f16: f32/bf16 weights beyond it would turn into infinities.
const F16_MAX: f32 = 65504.0;

pub(crate) struct GpuAttention {
    /// q_proj, k_proj, v_proj stacked: (3D, D), bias (3D,).
    pub qkv_proj: GpuLinear,
    pub out_proj: GpuLinear, // (D, D)
}

pub(crate) struct GpuMlp {
    pub fc1: GpuLinear, // (F, D)
    pub fc2: GpuLinear, // (D, F)
}

pub(crate) struct GpuEncoderLayer {
    pub layer_norm1: GpuLayerNorm,
    pub self_attn: GpuAttention,
    pub layer_norm2: GpuLayerNorm,
    pub mlp: GpuMlp,
}

pub(crate) struct GpuTextWeights {
    /// (V, ldt): rows are gathered by buffer copies, so this table is never bound and may exceed
    /// the storage-binding limit (lavapipe and browsers: 128 MiB; CLIP-H f32: 202 MB).
    pub token_embedding: wgpu::Buffer,
    /// Row stride of `token_embedding` in 4-byte words (ceil(D / 2) for f16, D for f32).
    pub token_ld: usize,
    pub position_embedding: wgpu::Buffer, // (P, D) f32
    pub layers: Vec<GpuEncoderLayer>,
    pub final_layer_norm: GpuLayerNorm,
}

pub(crate) struct GpuVisionWeights {
    pub class_embedding: wgpu::Buffer,    // (D,) f32
    pub patch_embedding: GpuLinear,       // (D, 3 p p), no bias
    pub position_embedding: wgpu::Buffer, // (N+1, D) f32
    pub pre_layernorm: GpuLayerNorm,      // HF: pre_layrnorm
    pub layers: Vec<GpuEncoderLayer>,
    pub post_layernorm: GpuLayerNorm,
}

pub(crate) struct GpuWeights {
    pub text: GpuTextWeights,
    pub vision: GpuVisionWeights,
    pub text_projection: GpuLinear,   // (P, Dt)
    pub visual_projection: GpuLinear, // (P, Dv)
    pub logit_scale: f32,
    /// Matrices (and the token table) are packed f16, not f32.
    pub f16: bool,
    /// Bytes of every buffer above.
    pub bytes: u64,
}

/// Streams tensors from the checkpoint into GPU buffers.
struct Uploader<'a> {
    gpu: &'a Gpu,
    ckpt: &'a Checkpoint,
    src: &'a dyn ModelSource,
    f16: bool,
    bytes: u64,
}

impl Uploader<'_> {
    fn count(&mut self, b: &wgpu::Buffer) {
        self.bytes += b.size();
    }

    /// A small f32 tensor.
    async fn vector(&mut self, t: &Tensor) -> Result<wgpu::Buffer> {
        let v = self.ckpt.read_f32(self.src, &t.name, &t.shape).await?;
        let b = self.gpu.upload(&t.name, bytemuck::cast_slice(&v))?;
        self.count(&b);
        Ok(b)
    }

    /// Writes tensor `name` (stored with `shape`, viewed as (rows, cols)) into `dst` from row
    /// `row0` on, in row chunks, converting to the matrix words.
    #[allow(clippy::too_many_arguments)]
    async fn matrix_into(
        &self,
        dst: &wgpu::Buffer,
        row0: usize,
        name: &str,
        shape: &[usize],
        rows: usize,
        cols: usize,
        f16: bool,
    ) -> Result<()> {
        let t = self.ckpt.info(name, shape)?;
        let elem = t.dtype.size();
        let row_bytes = cols as u64 * elem;
        let chunk = (CHUNK_BYTES / row_bytes.max(1)).max(1) as usize;
        let ld = row_words(cols, f16) as u64 * 4;
        let mut r = 0;
        while r < rows {
            let n = chunk.min(rows - r);
            let (at, len) = (r as u64 * row_bytes, n as u64 * row_bytes);
            // f16 weights may come as f16 (the page's cache keeps them so): the same values
            // `pack_rows` rounds to. f32 weights on the GPU are read as stored.
            let (dtype, bytes) = if f16 {
                self.ckpt
                    .read_matrix_bytes(self.src, name, t, at, len)
                    .await?
            } else {
                (t.dtype, self.src.read(&t.file, t.offset + at, len).await?)
            };
            let vals = to_f32(name, dtype, &bytes)?;
            if f16 && vals.iter().any(|v| v.is_finite() && v.abs() > F16_MAX) {
                return Err(crate::Error::Invalid(format!(
                    "weight `{name}` has values beyond the f16 range (|x| > {F16_MAX}); \
                     it needs f32 weights on the GPU, or the CPU backend (`--backend cpu`)"
                )));
            }
            let words = pack_rows(&vals, cols, f16);
            self.gpu
                .write(dst, (row0 + r) as u64 * ld, bytemuck::cast_slice(&words));
            r += n;
        }
        Ok(())
    }

    /// `specs` stacked along the output dimension (one: a plain Linear; three: fused QKV).
    async fn linear(&mut self, specs: &[&LinearSpec]) -> Result<GpuLinear> {
        let f16 = self.f16;
        let (out_each, in_f) = (specs[0].out_features, specs[0].in_features);
        let ldw = row_words(in_f, f16);
        let out_f = out_each * specs.len();
        let weight = self
            .gpu
            .storage(&specs[0].weight.name, (out_f * ldw * 4) as u64)?;
        for (i, s) in specs.iter().enumerate() {
            let w = &s.weight;
            self.matrix_into(
                &weight,
                i * out_each,
                &w.name,
                &w.shape,
                out_each,
                in_f,
                f16,
            )
            .await?;
        }
        let biases: Vec<&Tensor> = specs.iter().filter_map(|s| s.bias.as_ref()).collect();
        let bias = if biases.is_empty() {
            None
        } else {
            let b = self.gpu.storage(&biases[0].name, (out_f * 4) as u64)?;
            for (i, t) in biases.iter().enumerate() {
                let v = self.ckpt.read_f32(self.src, &t.name, &t.shape).await?;
                self.gpu
                    .write(&b, (i * out_each * 4) as u64, bytemuck::cast_slice(&v));
            }
            Some(b)
        };
        let l = GpuLinear {
            weight,
            bias,
            out_features: out_f,
            in_features: in_f,
            ldw,
            f16,
        };
        self.bytes += l.bytes();
        Ok(l)
    }

    async fn layer_norm(&mut self, s: &LayerNormSpec) -> Result<GpuLayerNorm> {
        Ok(GpuLayerNorm {
            weight: self.vector(&s.weight).await?,
            bias: self.vector(&s.bias).await?,
        })
    }

    async fn layers(&mut self, tower: &TowerSpec) -> Result<Vec<GpuEncoderLayer>> {
        self.ckpt.check_layers(tower.prefix, tower.num_layers)?;
        let mut out = Vec::with_capacity(tower.num_layers);
        for i in 0..tower.num_layers {
            let l = tower.layer(i);
            out.push(GpuEncoderLayer {
                layer_norm1: self.layer_norm(&l.layer_norm1).await?,
                self_attn: GpuAttention {
                    qkv_proj: self.linear(&[&l.q_proj, &l.k_proj, &l.v_proj]).await?,
                    out_proj: self.linear(&[&l.out_proj]).await?,
                },
                layer_norm2: self.layer_norm(&l.layer_norm2).await?,
                mlp: GpuMlp {
                    fc1: self.linear(&[&l.fc1]).await?,
                    fc2: self.linear(&[&l.fc2]).await?,
                },
            });
            // Hand the queued writes to the GPU so their staging memory is freed as we go.
            self.gpu.queue.submit([]);
            self.gpu.wait_idle()?;
        }
        Ok(out)
    }
}

impl GpuWeights {
    pub(crate) async fn load(
        gpu: &Gpu,
        cfg: &ClipConfig,
        ckpt: &Checkpoint,
        src: &dyn ModelSource,
        f16: bool,
    ) -> Result<GpuWeights> {
        let mut u = Uploader {
            gpu,
            ckpt,
            src,
            f16,
            bytes: 0,
        };
        let s = ClipSchema::new(cfg);
        let token_embedding = {
            let t = &s.token_embedding;
            let (vocab, dt) = (t.shape[0], t.shape[1]);
            let bytes = (vocab * row_words(dt, f16) * 4) as u64;
            let max = gpu.limits.max_buffer_size;
            if bytes > max {
                return Err(crate::Error::Limits {
                    what: format!("GPU buffer `{}`", t.name),
                    needed: bytes,
                    available: max,
                });
            }
            // Copy source only: never bound, so only max_buffer_size applies.
            let b = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&t.name),
                size: bytes.div_ceil(16) * 16,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            u.matrix_into(&b, 0, &t.name, &t.shape, vocab, dt, f16)
                .await?;
            u.count(&b);
            gpu.queue.submit([]);
            gpu.wait_idle()?;
            b
        };
        let text = GpuTextWeights {
            token_embedding,
            token_ld: row_words(cfg.text.tower.hidden_size, f16),
            position_embedding: u.vector(&s.text_position_embedding).await?,
            layers: u.layers(&s.text).await?,
            final_layer_norm: u.layer_norm(&s.final_layer_norm).await?,
        };
        let patch_embedding = {
            // (D, C, p, p) viewed as a (D, C*p*p) matrix without bias.
            let t = &s.patch_embedding;
            let (dv, kk) = (t.shape[0], t.shape[1..].iter().product::<usize>());
            let ldw = row_words(kk, f16);
            let weight = gpu.storage(&t.name, (dv * ldw * 4) as u64)?;
            u.matrix_into(&weight, 0, &t.name, &t.shape, dv, kk, f16)
                .await?;
            u.count(&weight);
            GpuLinear {
                weight,
                bias: None,
                out_features: dv,
                in_features: kk,
                ldw,
                f16,
            }
        };
        let vision = GpuVisionWeights {
            class_embedding: u.vector(&s.class_embedding).await?,
            patch_embedding,
            position_embedding: u.vector(&s.vision_position_embedding).await?,
            pre_layernorm: u.layer_norm(&s.pre_layernorm).await?,
            layers: u.layers(&s.vision).await?,
            post_layernorm: u.layer_norm(&s.post_layernorm).await?,
        };
        let text_projection = u.linear(&[&s.text_projection]).await?;
        let visual_projection = u.linear(&[&s.visual_projection]).await?;
        let logit_scale = ckpt
            .read_f32(src, &s.logit_scale.name, &s.logit_scale.shape)
            .await?[0];
        gpu.queue.submit([]);
        gpu.wait_idle()?;
        Ok(GpuWeights {
            text,
            vision,
            text_projection,
            visual_projection,
            logit_scale,
            f16,
            bytes: u.bytes,
        })
    }
}
