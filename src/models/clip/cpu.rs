//! The CPU forward pass of a Hugging Face `CLIPModel` in f32 (transformers 4.50.3
//! `models/clip/modeling_clip.py`) on the ops of the CPU engine (`crate::cpu`). It is the oracle
//! for the GPU kernels and the fallback where WebGPU is missing.
//!
//! Legend: B = batch, T = tokens (text: ids incl. BOS/EOS, <= 77; vision: 1 + N = 257),
//! N = (S/p)^2 patches of p x p pixels of an S x S image (ViT-H/14: S = 224, p = 14),
//! D = width (text 1024, vision 1280 for ViT-H), H = heads, Dh = D/H, F = MLP width,
//! P = projection, V = vocabulary.

use crate::cpu::{attention, gemm_nt, layer_norm, linear, linear_into, Epilogue};
use crate::models::clip::config::{Activation, ClipConfig, TowerConfig};
use crate::models::clip::pool_position;
use crate::models::clip::weights::{Attention, ClipWeights, EncoderLayer};

/// Hidden states recorded during a forward pass (the `output_hidden_states` of transformers).
#[derive(Default, Debug, Clone)]
pub struct Trace {
    /// `hidden_states[0..=L]`, each (T, D): the encoder input (text: embeddings; vision:
    /// after `pre_layrnorm`), then the output of each layer.
    pub hidden: Vec<Vec<f32>>,
    /// Text: after `final_layer_norm`, (T, D). Vision: the last layer's output (no final norm).
    pub last_hidden_state: Vec<f32>,
    /// Text: the final-norm state at the pooling position; vision: `post_layernorm(class token)`.
    pub pooled: Vec<f32>,
}

/// `CLIPAttention` of `b` sequences of `t` tokens, added to the residual stream:
/// `y (B*T, D) += attn(x (B*T, D))`. The projections run on all B*T rows at once; attention
/// stays within each sequence.
pub(super) fn self_attention(
    y: &mut Vec<f32>,
    x: &[f32],
    b: usize,
    t: usize,
    a: &Attention,
    heads: usize,
    causal: bool,
) {
    // [q | k | v] = x [Wq | Wk | Wv]^T + [bq | bk | bv]   (B*T, 3D)
    let qkv = linear(x, b * t, &a.qkv_proj);
    let d = a.out_proj.out_features;
    let mut ctx = Vec::with_capacity(b * t * d); // (B*T, D)
    for s in 0..b {
        let seq = &qkv[s * t * 3 * d..(s + 1) * t * 3 * d]; // sequence s   (T, 3D)
        ctx.extend(attention(seq, t, heads, causal)); // softmax(q k^T / sqrt(Dh) + mask) v
    }
    linear_into(y, &ctx, b * t, &a.out_proj, Epilogue::Residual) // y += ctx Wo^T + bo
}

/// One pre-norm encoder layer (`CLIPEncoderLayer`) over `b` sequences of `t` tokens,
/// x (B*T, D), in place.
fn encoder_layer(
    x: &mut Vec<f32>,
    b: usize,
    t: usize,
    l: &EncoderLayer,
    tower: &TowerConfig,
    causal: bool,
) {
    let eps = tower.layer_norm_eps;
    // x = x + attn(ln1(x)), attention within each sequence
    let h = layer_norm(x, &l.layer_norm1, eps); // (B*T, D)
    self_attention(x, &h, b, t, &l.self_attn, tower.num_heads, causal);
    // x = x + fc2(act(fc1(ln2(x))))
    let h = layer_norm(x, &l.layer_norm2, eps); // (B*T, D)
    let act = match tower.act {
        Activation::Gelu => Epilogue::Gelu,
        Activation::QuickGelu => Epilogue::QuickGelu,
    };
    let mut f = Vec::new(); // (B*T, F)
    linear_into(&mut f, &h, b * t, &l.mlp.fc1, act); // f = act(h W1^T + b1)
    linear_into(x, &f, b * t, &l.mlp.fc2, Epilogue::Residual); // x += f W2^T + b2
}

/// Images (B, 3, S, S) cut into patches, one row per patch (B*N, 3*p*p) in the (c, ky, kx) order
/// of the patch embedding's conv weight, so that the conv becomes one product.
fn patch_rows(pixels: &[f32], b: usize, s: usize, p: usize) -> Vec<f32> {
    let (g, kk) = (s / p, 3 * p * p);
    let mut patches = vec![0.0f32; b * g * g * kk];
    for img in 0..b {
        for gy in 0..g {
            for gx in 0..g {
                let row = &mut patches[((img * g + gy) * g + gx) * kk..][..kk];
                for c in 0..3 {
                    for ky in 0..p {
                        let src = &pixels[((img * 3 + c) * s + gy * p + ky) * s + gx * p..][..p];
                        row[(c * p + ky) * p..][..p].copy_from_slice(src);
                    }
                }
            }
        }
    }
    patches
}

/// The f32 CPU model.
pub(crate) struct CpuModel {
    pub cfg: ClipConfig,
    pub w: ClipWeights,
}

impl CpuModel {
    /// Text tower for one prompt's ids: `get_text_features` (P,), recording a trace if asked.
    pub fn text_features(&self, ids: &[u32], trace: Option<&mut Trace>) -> crate::Result<Vec<f32>> {
        let tc = &self.cfg.text;
        let (d, t) = (tc.tower.hidden_size, ids.len());
        if t == 0 || t > tc.max_position_embeddings {
            return Err(crate::Error::Invalid(format!(
                "a prompt of {t} tokens; this model takes 1 to {}",
                tc.max_position_embeddings
            )));
        }
        let tw = &self.w.text;
        // x = token_embedding[ids] + position_embedding[0..T]   (T, D)
        let mut x = vec![0.0f32; t * d];
        for (r, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= tc.vocab_size {
                return Err(crate::Error::Invalid(format!(
                    "token id {id} is outside the vocabulary ({})",
                    tc.vocab_size
                )));
            }
            let row = &mut x[r * d..][..d];
            tw.token_embedding.read_into(id * d, row);
            row.iter_mut()
                .zip(&tw.position_embedding[r * d..][..d])
                .for_each(|(v, p)| *v += p);
        }
        let mut hidden = Vec::new();
        let tracing = trace.is_some();
        if tracing {
            hidden.push(x.clone());
        }
        for l in &tw.layers {
            encoder_layer(&mut x, 1, t, l, &tc.tower, true); // x = layer(x), causal
            if tracing {
                hidden.push(x.clone());
            }
        }
        // last = final_layer_norm(x)   (T, D)
        let last = layer_norm(&x, &tw.final_layer_norm, tc.tower.layer_norm_eps);
        // pooled = last[eos]   (D,)
        let pos = pool_position(ids, tc.eos_token_id);
        let pooled = last[pos * d..][..d].to_vec();
        // text_embeds = pooled W_text^T   (P,)
        let feats = linear(&pooled, 1, &self.w.text_projection);
        if let Some(tr) = trace {
            *tr = Trace {
                hidden,
                last_hidden_state: last,
                pooled,
            };
        }
        Ok(feats)
    }

    /// Vision tower for `b` images of preprocessed pixels (B, 3, S, S): `get_image_features`
    /// (B, P). With `traces`, records one trace per image.
    pub fn image_features(
        &self,
        pixels: &[f32],
        b: usize,
        traces: Option<&mut Vec<Trace>>,
    ) -> crate::Result<Vec<f32>> {
        Ok(self.vision(pixels, b, traces, false)?.0)
    }

    /// `get_image_features` (B, P) and, from the same pass, every patch token through the
    /// image head, `visual_projection(post_layernorm(h[1 + i]))` (B*N, P): the patch map's input.
    pub fn image_and_patch_features(
        &self,
        pixels: &[f32],
        b: usize,
    ) -> crate::Result<(Vec<f32>, Vec<f32>)> {
        let (feats, patches) = self.vision(pixels, b, None, true)?;
        Ok((feats, patches.unwrap_or_default()))
    }

    /// The patch map's extra work after the vision tower: each patch token of the last hidden
    /// state x (B*T, D) through the image head, `visual_projection(post_layernorm(x[:, 1..]))`
    /// (B*N, P).
    pub(crate) fn patch_features(&self, x: &[f32], b: usize) -> Vec<f32> {
        let vc = &self.cfg.vision;
        let (d, t) = (vc.tower.hidden_size, vc.num_positions());
        let rows: Vec<f32> = (0..b) // x[:, 1..]   (B*N, D)
            .flat_map(|img| x[(img * t + 1) * d..(img + 1) * t * d].iter().copied())
            .collect();
        let normed = layer_norm(
            &rows,
            &self.w.vision.post_layernorm,
            vc.tower.layer_norm_eps,
        );
        linear(&normed, b * (t - 1), &self.w.visual_projection)
    }

    /// The vision tower; with `with_patches`, the patch tokens' projections too.
    fn vision(
        &self,
        pixels: &[f32],
        b: usize,
        traces: Option<&mut Vec<Trace>>,
        with_patches: bool,
    ) -> crate::Result<(Vec<f32>, Option<Vec<f32>>)> {
        let vc = &self.cfg.vision;
        let (d, s, p) = (vc.tower.hidden_size, vc.image_size, vc.patch_size);
        let (t, n) = (vc.num_positions(), vc.grid() * vc.grid());
        if pixels.len() != b * 3 * s * s {
            return Err(crate::Error::Invalid(format!(
                "{} pixel values for {b} images of 3x{s}x{s}",
                pixels.len()
            )));
        }
        let vw = &self.w.vision;
        // pe = conv_p(pixels): the patches' rows times the conv weight (D, 3*p*p)
        let patches = patch_rows(pixels, b, s, p); // (B*N, 3*p*p)
        let mut pe = vec![0.0f32; b * n * d]; // (B*N, D)
        gemm_nt(
            &mut pe,
            &patches,
            &vw.patch_embedding,
            b * n,
            d,
            3 * p * p,
            false,
            true,
        );
        // x = [class; patches] + position_embedding   (B*T, D)
        let mut x = vec![0.0f32; b * t * d];
        for img in 0..b {
            for r in 0..t {
                let src = if r == 0 {
                    &vw.class_embedding[..]
                } else {
                    &pe[(img * n + r - 1) * d..][..d]
                };
                for c in 0..d {
                    x[(img * t + r) * d + c] = src[c] + vw.position_embedding[r * d + c];
                }
            }
        }
        let eps = vc.tower.layer_norm_eps;
        let mut x = layer_norm(&x, &vw.pre_layernorm, eps); // x = pre_layrnorm(x)
        let mut hidden: Vec<Vec<f32>> = Vec::new();
        let tracing = traces.is_some();
        if tracing {
            hidden.push(x.clone());
        }
        for l in &vw.layers {
            encoder_layer(&mut x, b, t, l, &vc.tower, false); // x = layer(x)
            if tracing {
                hidden.push(x.clone());
            }
        }
        // pooled = post_layernorm(x[:, 0])   (B, D)
        let cls: Vec<f32> = (0..b)
            .flat_map(|img| x[img * t * d..][..d].to_vec())
            .collect();
        let pooled = layer_norm(&cls, &vw.post_layernorm, eps);
        // image_embeds = pooled W_visual^T   (B, P)
        let feats = linear(&pooled, b, &self.w.visual_projection);
        let patch_feats = with_patches.then(|| self.patch_features(&x, b));
        if let Some(tr) = traces {
            tr.clear();
            for img in 0..b {
                let per = |m: &Vec<f32>| m[img * t * d..][..t * d].to_vec();
                tr.push(Trace {
                    hidden: hidden.iter().map(per).collect(),
                    last_hidden_state: per(&x),
                    pooled: pooled[img * d..][..d].to_vec(),
                });
            }
        }
        Ok((feats, patch_feats))
    }
}
