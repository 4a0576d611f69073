//! The weights of a `CLIPModel` in f32 for the CPU reference, named and shaped as in Hugging Face
//! `modeling_clip.py` (transformers 4.50.3), so that each safetensors key lines up with one field.
//! Every tensor is checked against the shape `config.json` implies when it is loaded.

use crate::error::Result;
use crate::io::safetensors::{to_f32, Checkpoint, DType};
use crate::io::source::ModelSource;
use crate::models::clip::config::ClipConfig;
use crate::models::clip::schema::{ClipSchema, LayerNormSpec, LinearSpec, Tensor, TowerSpec};
use half::slice::HalfFloatSliceExt;
use std::borrow::Cow;

/// The big matrices, kept in the checkpoint's precision: f16/bf16 checkpoints stay half size in
/// memory, and on wasm32 a large f32 checkpoint is stored as f16 too (see [`WASM_F32_LIMIT`]),
/// because CLIP-H in f32 (3.9 GB) does not fit in wasm32's 4 GiB. Products are still computed in f32: a matrix is widened block
/// by block during its product (`cpu::linear`; about 5% of a CLIP-H layer in the browser).
pub(crate) enum Matrix {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
}

impl Matrix {
    /// The whole matrix in f32 (borrowed when it is stored so).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the native CPU benchmark
    pub fn f32(&self) -> Cow<'_, [f32]> {
        match self {
            Matrix::F32(v) => Cow::Borrowed(v),
            Matrix::F16(v) => {
                let mut out = vec![0.0; v.len()];
                v.convert_to_f32_slice(&mut out);
                Cow::Owned(out)
            }
            Matrix::BF16(v) => {
                let mut out = vec![0.0; v.len()];
                v.convert_to_f32_slice(&mut out);
                Cow::Owned(out)
            }
        }
    }

    /// Elements `[start, start + out.len())` in f32.
    pub fn read_into(&self, start: usize, out: &mut [f32]) {
        let n = out.len();
        match self {
            Matrix::F32(v) => out.copy_from_slice(&v[start..start + n]),
            Matrix::F16(v) => widen_f16(&v[start..start + n], out),
            Matrix::BF16(v) => v[start..start + n].convert_to_f32_slice(out),
        }
    }
}

/// f16 -> f32. On wasm32 `half` has no hardware conversion (x86's F16C, ARM's FCVT) and
/// converts value by value with branches; the branch-free [`f16_bits_to_f32`] vectorizes to
/// SIMD128 there, which matters because the browser's CPU path widens CLIP-H's f16-held weights
/// before every product.
fn widen_f16(src: &[half::f16], out: &mut [f32]) {
    #[cfg(target_arch = "wasm32")]
    for (o, h) in out.iter_mut().zip(src) {
        *o = f16_bits_to_f32(h.to_bits());
    }
    #[cfg(not(target_arch = "wasm32"))]
    src.convert_to_f32_slice(out);
}

/// Exact f16 -> f32 without branches: the magnitude bits moved to f32's place and scaled by
/// 2^112 (the exponent bias difference; f16 subnormals become exact f32 values, as wasm does not
/// flush them), infinities and NaNs given f32's all-ones exponent, then the sign.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // tested on every target
#[inline]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let mag = (h & 0x7fff) << 13;
    let scaled = (f32::from_bits(mag) * f32::from_bits(0x7780_0000)).to_bits(); // x 2^112
    let bits = if h & 0x7c00 == 0x7c00 {
        mag | 0x7f80_0000
    } else {
        scaled
    };
    f32::from_bits(bits | ((h & 0x8000) << 16))
}

/// `y = x W^T + b`, W: (out, in) row-major as stored by PyTorch.
pub(crate) struct Linear {
    pub weight: Matrix,         // (out, in)
    pub bias: Option<Vec<f32>>, // (out,)
    pub out_features: usize,
    pub in_features: usize,
}

pub(crate) struct LayerNorm {
    pub weight: Vec<f32>, // (D,)
    pub bias: Vec<f32>,   // (D,)
}

pub(crate) struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
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

/// On wasm32, f32 checkpoints larger than this are held as f16: 1 GiB of f32 weights leaves room
/// in the 4 GiB address space for activations, the page's buffers and the allocator's slack,
/// while small models (and the tests' fixtures) keep their exact f32 weights.
pub(crate) const WASM_F32_LIMIT: u64 = 1 << 30;

/// Reads tensors by name with their expected shapes.
pub(crate) struct Loader<'a> {
    pub ckpt: &'a Checkpoint,
    pub src: &'a dyn ModelSource,
    /// Store f32 matrices as f16 (see [`Matrix`]).
    pub f32_as_f16: bool,
}

impl Loader<'_> {
    pub async fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.ckpt.read_f32(self.src, name, shape).await
    }

    /// A matrix in its stored precision (or f32 as f16 when `f32_as_f16`; see [`Matrix`]).
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

    pub async fn linear(&self, s: &LinearSpec) -> Result<Linear> {
        Ok(Linear {
            weight: self.matrix(&s.weight.name, &s.weight.shape).await?,
            bias: match &s.bias {
                Some(b) => Some(self.vector(b).await?),
                None => None,
            },
            out_features: s.out_features,
            in_features: s.in_features,
        })
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
                    q_proj: self.linear(&l.q_proj).await?,
                    k_proj: self.linear(&l.k_proj).await?,
                    v_proj: self.linear(&l.v_proj).await?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_bits_to_f32_is_exact_for_all_65536_values() {
        for b in 0..=u16::MAX {
            let want = half::f16::from_bits(b).to_f32();
            let got = f16_bits_to_f32(b);
            if want.is_nan() {
                assert!(got.is_nan(), "{b:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{b:#06x}: {got} vs {want}");
            }
        }
    }
}
