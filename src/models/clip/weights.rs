//! The weights of a `CLIPModel` in f32 for the CPU reference, named and shaped as in Hugging Face
//! `modeling_clip.py` (transformers 4.50.3), so that each safetensors key lines up with one field.
//! Every tensor is checked against the shape `config.json` implies when it is loaded.

use crate::cpu::{LayerNorm, Linear, Matrix};
use crate::error::Result;
use crate::io::safetensors::{to_f32, Checkpoint, DType};
use crate::io::source::ModelSource;
use crate::models::clip::config::ClipConfig;
use crate::models::clip::schema::{ClipSchema, LayerNormSpec, LinearSpec, Tensor, TowerSpec};
use half::slice::HalfFloatSliceExt;

pub(crate) struct Attention {
    /// `q_proj`, `k_proj` and `v_proj` stacked: W (3D, D), b (3D,), one product for all three
    /// (as the GPU weights hold them).
    pub qkv_proj: Linear,
    pub out_proj: Linear,
}

pub(crate) struct Mlp {
    pub fc1: Linear, // (F, D)
    pub fc2: Linear, // (D, F)
}

pub(crate) struct EncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: Attention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
}

pub(crate) struct TextWeights {
    pub token_embedding: Matrix,      // (V, D)
    pub position_embedding: Vec<f32>, // (P, D)
    pub layers: Vec<EncoderLayer>,
    pub final_layer_norm: LayerNorm,
}

pub(crate) struct VisionWeights {
    pub class_embedding: Vec<f32>,    // (D,)
    pub patch_embedding: Vec<f32>,    // (D, 3, p, p) = (D, 3*p*p)
    pub position_embedding: Vec<f32>, // (N+1, D)
    pub pre_layernorm: LayerNorm,     // HF: pre_layrnorm
    pub layers: Vec<EncoderLayer>,
    pub post_layernorm: LayerNorm,
}

pub(crate) struct ClipWeights {
    pub text: TextWeights,
    pub vision: VisionWeights,
    pub text_projection: Linear,   // (P, Dt), no bias
    pub visual_projection: Linear, // (P, Dv), no bias
    /// The raw parameter; scores use `exp(logit_scale)`.
    pub logit_scale: f32,
}

/// On wasm32, f32 checkpoints larger than this are held as f16 (CLIP-H in f32, 3.9 GB, does not
/// fit in wasm32's 4 GiB; products still compute in f32, see [`Matrix`]): 1 GiB of f32 weights leaves room
/// in the 4 GiB address space for activations, the page's buffers and the allocator's slack,
/// while small models (and the tests' fixtures) keep their exact f32 weights.
pub(crate) const WASM_F32_LIMIT: u64 = 1 << 30;

/// Reads tensors by name with their expected shapes.
pub(crate) struct Loader<'a> {
    pub ckpt: &'a Checkpoint,
    pub src: &'a dyn ModelSource,
    /// Store f32 matrices as f16 (see [`WASM_F32_LIMIT`]).
    pub f32_as_f16: bool,
}

impl Loader<'_> {
    pub async fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.ckpt.read_f32(self.src, name, shape).await
    }

    /// A matrix in its stored precision (or f32 as f16 when `f32_as_f16`).
    pub async fn matrix(&self, name: &str, shape: &[usize]) -> Result<Matrix> {
        let t = self.ckpt.info(name, shape)?;
        let (dtype, bytes) = self
            .ckpt
            .read_matrix_bytes(self.src, name, t, 0, t.len)
            .await?;
        // All-ones exponent bits: NaN or an infinity (checked as `to_f32` does for f32 data).
        let halves = |b: &[u8], exponent: u16| -> Result<Vec<u16>> {
            let h: Vec<u16> = b
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            if h.iter().any(|&x| x & exponent == exponent) {
                return Err(crate::Error::NonFinite(name.to_string()));
            }
            Ok(h)
        };
        Ok(match dtype {
            DType::F16 => Matrix::F16(
                halves(&bytes, 0x7c00)?
                    .into_iter()
                    .map(half::f16::from_bits)
                    .collect(),
            ),
            DType::BF16 => Matrix::BF16(
                halves(&bytes, 0x7f80)?
                    .into_iter()
                    .map(half::bf16::from_bits)
                    .collect(),
            ),
            dtype => {
                let v = to_f32(name, dtype, &bytes)?;
                if self.f32_as_f16 {
                    let mut h = vec![half::f16::ZERO; v.len()];
                    h.convert_from_f32_slice(&v);
                    Matrix::F16(h)
                } else {
                    Matrix::F32(v)
                }
            }
        })
    }

    /// Linears of the same input width as one: their weights' rows and their biases stacked
    /// (q, k, v of an attention block).
    pub async fn stacked(&self, specs: &[&LinearSpec]) -> Result<Linear> {
        let (mut weights, mut bias) = (Vec::new(), Vec::new());
        for s in specs {
            weights.push(self.matrix(&s.weight.name, &s.weight.shape).await?);
            match &s.bias {
                Some(b) => bias.extend(self.vector(b).await?),
                None => bias.resize(bias.len() + s.out_features, 0.0),
            }
        }
        let bias = specs.iter().any(|s| s.bias.is_some()).then_some(bias);
        let out_features = specs.iter().map(|s| s.out_features).sum();
        let in_features = specs.first().map_or(0, |s| s.in_features);
        Ok(Linear {
            weight: Matrix::concat_rows(weights).packed_for(out_features, in_features),
            bias,
            out_features,
            in_features,
        })
    }

    pub async fn linear(&self, s: &LinearSpec) -> Result<Linear> {
        self.stacked(&[s]).await
    }

    /// A tensor in f32 (embeddings, norms, biases).
    pub async fn vector(&self, t: &Tensor) -> Result<Vec<f32>> {
        self.tensor(&t.name, &t.shape).await
    }

    pub async fn layer_norm(&self, s: &LayerNormSpec) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.vector(&s.weight).await?,
            bias: self.vector(&s.bias).await?,
        })
    }

    async fn layers(&self, tower: &TowerSpec) -> Result<Vec<EncoderLayer>> {
        self.ckpt.check_layers(tower.prefix, tower.num_layers)?;
        let mut out = Vec::with_capacity(tower.num_layers);
        for i in 0..tower.num_layers {
            let l = tower.layer(i);
            out.push(EncoderLayer {
                layer_norm1: self.layer_norm(&l.layer_norm1).await?,
                self_attn: Attention {
                    qkv_proj: self.stacked(&[&l.q_proj, &l.k_proj, &l.v_proj]).await?,
                    out_proj: self.linear(&l.out_proj).await?,
                },
                layer_norm2: self.layer_norm(&l.layer_norm2).await?,
                mlp: Mlp {
                    fc1: self.linear(&l.fc1).await?,
                    fc2: self.linear(&l.fc2).await?,
                },
            });
        }
        Ok(out)
    }
}

impl ClipWeights {
    /// Loads every tensor of the CPU model, one at a time.
    pub(crate) async fn load(
        cfg: &ClipConfig,
        ckpt: &Checkpoint,
        src: &dyn ModelSource,
    ) -> Result<Self> {
        let f32_as_f16 = cfg!(target_arch = "wasm32") && ckpt.f32_bytes() > WASM_F32_LIMIT;
        let l = Loader {
            ckpt,
            src,
            f32_as_f16,
        };
        let s = ClipSchema::new(cfg);
        let text = TextWeights {
            token_embedding: l
                .matrix(&s.token_embedding.name, &s.token_embedding.shape)
                .await?,
            position_embedding: l.vector(&s.text_position_embedding).await?,
            layers: l.layers(&s.text).await?,
            final_layer_norm: l.layer_norm(&s.final_layer_norm).await?,
        };
        let vision = VisionWeights {
            class_embedding: l.vector(&s.class_embedding).await?,
            patch_embedding: l.vector(&s.patch_embedding).await?,
            position_embedding: l.vector(&s.vision_position_embedding).await?,
            pre_layernorm: l.layer_norm(&s.pre_layernorm).await?,
            layers: l.layers(&s.vision).await?,
            post_layernorm: l.layer_norm(&s.post_layernorm).await?,
        };
        Ok(ClipWeights {
            text,
            vision,
            text_projection: l.linear(&s.text_projection).await?,
            visual_projection: l.linear(&s.visual_projection).await?,
            logit_scale: l.vector(&s.logit_scale).await?[0],
        })
    }
}
