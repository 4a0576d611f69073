//! The CPU reference forward pass of a Hugging Face `CLIPModel` in f32
//! (transformers 4.50.3 `models/clip/modeling_clip.py`). It is the oracle for the GPU kernels
//! and the fallback where WebGPU is missing.
//!
//! Legend: B = batch, T = tokens (text: ids incl. BOS/EOS, <= 77; vision: 1 + (S/p)^2 = 257),
//! D = width (text 1024, vision 1280 for ViT-H), H = heads, Dh = D/H, F = MLP width, P = projection.
//! Matrix products go through the `gemm` crate natively (f32, blocked, SIMD, threads) and through
//! `sgemm` (packed SIMD128, one thread) in the browser.

use crate::models::clip::config::{Activation, ClipConfig, TowerConfig};
use crate::models::clip::weights::{
    Attention, ClipWeights, EncoderLayer, LayerNorm, Linear, Matrix,
};

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

/// `out (M, N) = a (M, K) . b^T` with `b (N, K)` row-major, plus `out` when `accumulate`.
/// `threads`: let gemm use all cores (off inside an already parallel loop).
#[allow(clippy::too_many_arguments)]
fn gemm_nt(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: bool,
) {
    #[cfg(not(target_arch = "wasm32"))]
    gemm_nt_ld(out, n, a, b, m, n, k, accumulate, threads);
    // The browser: the packed SIMD product of `sgemm` (single thread).
    #[cfg(target_arch = "wasm32")]
    {
        let _ = threads;
        assert!(out.len() >= m * n, "gemm_nt: operand sizes");
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        crate::cpu::sgemm::gemm_acc(out, a, crate::cpu::sgemm::Rows::F32(b), m, n, k);
    }
}

/// `gemm_nt` into an `out` whose rows are `ldc` apart (a column block of a wider matrix).
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
fn gemm_nt_ld(
    out: &mut [f32],
    ldc: usize,
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: bool,
) {
    assert!(
        ldc >= n
            && (m == 0 || out.len() >= (m - 1) * ldc + n)
            && a.len() >= m * k
            && b.len() >= n * k,
        "gemm_nt: operand sizes"
    );
    let par = if threads && m * n * k > 1 << 16 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertion above keeps every access within the three slices; strides describe
    // row-major a (M, K), column access of b (N, K) as (K, N), and row-major out (M, N).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Rows of a half-precision weight widened to f32 at a time (256 x 5120 f32 = 5 MiB).
#[cfg(not(target_arch = "wasm32"))]
const WIDEN_ROWS: usize = 256;

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    /// The reused f32 block of [`linear`] for half-precision weights.
    static WIDEN: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y (M, out) = x (M, in) W^T + b`. Natively the `gemm` crate (threads); half-precision W is
/// widened block by block into a reused buffer, so a product never allocates a full f32 copy of
/// its weight (fc1 of CLIP-H: 26 MB). On wasm32 the packed SIMD128 product of `sgemm`, which
/// widens W as it packs it.
pub(crate) fn linear(x: &[f32], m: usize, l: &Linear) -> Vec<f32> {
    let (n, k) = (l.out_features, l.in_features);
    let mut y = match &l.bias {
        Some(b) => b.repeat(m),
        None => vec![0.0; m * n],
    };
    #[cfg(target_arch = "wasm32")]
    {
        use crate::cpu::sgemm::{gemm_acc, Rows};
        let rows = match &l.weight {
            Matrix::F32(w) => Rows::F32(w),
            Matrix::F16(w) => Rows::F16(w),
            Matrix::BF16(w) => Rows::BF16(w),
        };
        gemm_acc(&mut y, x, rows, m, n, k);
    }
    #[cfg(not(target_arch = "wasm32"))]
    match &l.weight {
        Matrix::F32(w) => gemm_nt(&mut y, x, w, m, n, k, true, true),
        half => WIDEN.with(|buf| {
            let mut buf = buf.borrow_mut();
            for j0 in (0..n).step_by(WIDEN_ROWS) {
                let nb = WIDEN_ROWS.min(n - j0);
                buf.resize(nb * k, 0.0);
                half.read_into(j0 * k, &mut buf[..nb * k]);
                gemm_nt_ld(&mut y[j0..], n, x, &buf[..nb * k], m, nb, k, true, true);
            }
        }),
    }
    y
}

/// Row-wise LayerNorm over the last dimension, two-pass statistics in f64.
pub(crate) fn layer_norm(x: &[f32], ln: &LayerNorm, eps: f32) -> Vec<f32> {
    let d = ln.weight.len();
    let mut y = vec![0.0f32; x.len()];
    for (row, out) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for i in 0..d {
            out[i] = (((row[i] as f64 - mean) * inv) as f32) * ln.weight[i] + ln.bias[i];
        }
    }
    y
}

/// `e^x` for `x <= 0` (the softmax's shifted scores, GELU's `-z^2`) in f32 without a libm call:
/// Cody-Waite reduction `x = n ln2 + r`, |r| <= ln2 / 2, and the Cephes `expf` polynomial, then
/// `2^n` by exponent bits. Relative error 8.2e-8 against f64 on a dense grid (the test allows
/// 1.5e-7); below -87 (where e^x leaves f32's normal range) it returns e^-87, 1.6e-38. It
/// replaces a libm `expf` call per element in GELU and the softmax (see the browser numbers in
/// `profile_vision_layer`).
#[inline]
pub(crate) fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer (|x log2 e| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e = p * r * r + r + 1.0;
    // n in [-126, 0]: 2^n is a normal f32.
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// erfc(z) for z >= 0 by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7 in exact arithmetic,
/// ~3e-7 in f32), the same approximation as `shaders/matmul.wgsl`. f64 `libm::erf` per element
/// cost ~40 ms per ViT-H layer; this is ~10x cheaper and its GELU error (<= 0.5 |x| 3e-7) is far
/// below f32 matmul rounding. Returned as erfc so GELU of negative inputs keeps its digits.
fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    poly * exp_nonpos(-z * z)
}

/// Exact (erf) GELU: `0.5 x (1 + erf(x / sqrt 2))`.
pub(crate) fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let c = erfc_nonneg(z.abs());
    // 1 + erf(z) = 2 - erfc(z) for z >= 0, and erfc(-z) for z < 0.
    0.5 * x * if z >= 0.0 { 2.0 - c } else { c }
}

/// The MLP activation, in place.
pub(crate) fn activate(x: &mut [f32], act: Activation) {
    let f = |v: &mut f32| {
        *v = match act {
            Activation::Gelu => gelu(*v),
            // x * sigmoid(1.702 x), as transformers' QuickGELUActivation.
            Activation::QuickGelu => *v * (1.0 / (1.0 + (-1.702 * *v).exp())),
        }
    };
    for_each_chunk(x, 4096, |c| c.iter_mut().for_each(f));
}

/// Runs `f` over chunks of `data`, on all cores natively.
fn for_each_chunk<F: Fn(&mut [f32]) + Sync + Send>(data: &mut [f32], chunk: usize, f: F) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk).for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    data.chunks_mut(chunk).for_each(f);
}

/// Multi-head self-attention of one sequence: x (T, D) -> (T, D).
fn attention(x: &[f32], t: usize, a: &Attention, tower: &TowerConfig, causal: bool) -> Vec<f32> {
    let (d, h, dh) = (tower.hidden_size, tower.num_heads, tower.head_dim());
    let scale = (dh as f32).powf(-0.5); // transformers scales q by head_dim^-0.5
    let mut q = linear(x, t, &a.q_proj); // (T, D)
    q.iter_mut().for_each(|v| *v *= scale);
    let k = linear(x, t, &a.k_proj); // (T, D)
    let v = linear(x, t, &a.v_proj); // (T, D)
    let mut ctx = vec![0.0f32; t * d]; // (T, D), heads side by side
    let heads: Vec<Vec<f32>> = map_heads(h, |head| {
        // Gather this head's (T, Dh) slices contiguously, then scores = q k^T (T, T).
        let slice = |m: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(t * dh);
            for r in 0..t {
                out.extend_from_slice(&m[r * d + head * dh..][..dh]);
            }
            out
        };
        let (qh, kh, vh) = (slice(&q), slice(&k), slice(&v));
        let mut s = vec![0.0f32; t * t];
        gemm_nt(&mut s, &qh, &kh, t, t, dh, false, false);
        for (i, row) in s.chunks_exact_mut(t).enumerate() {
            softmax_row(row, if causal { i + 1 } else { t });
        }
        // out_h (T, Dh) = s (T, T) . vh (T, Dh): transpose vh to (Dh, T) for gemm_nt.
        let mut vt = vec![0.0f32; dh * t];
        for r in 0..t {
            for c in 0..dh {
                vt[c * t + r] = vh[r * dh + c];
            }
        }
        let mut o = vec![0.0f32; t * dh];
        gemm_nt(&mut o, &s, &vt, t, dh, t, false, false);
        o
    });
    for (head, o) in heads.iter().enumerate() {
        for r in 0..t {
            ctx[r * d + head * dh..][..dh].copy_from_slice(&o[r * dh..][..dh]);
        }
    }
    linear(&ctx, t, &a.out_proj)
}

/// Max-subtracted softmax over `row[..valid]`; the masked rest becomes 0.
fn softmax_row(row: &mut [f32], valid: usize) {
    let max = row[..valid]
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    // The exponentials in a loop of their own (it vectorizes), then the f64 sum.
    for v in row[..valid].iter_mut() {
        *v = exp_nonpos(*v - max);
    }
    let sum: f64 = row[..valid].iter().map(|&v| v as f64).sum();
    let inv = (1.0 / sum) as f32;
    row[..valid].iter_mut().for_each(|v| *v *= inv);
    row[valid..].iter_mut().for_each(|v| *v = 0.0);
}

fn map_heads<F: Fn(usize) -> Vec<f32> + Sync + Send>(h: usize, f: F) -> Vec<Vec<f32>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..h).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..h).map(f).collect()
}

/// One pre-norm encoder layer over `b` sequences of `t` tokens, x (B*T, D), in place.
fn encoder_layer(
    x: &mut [f32],
    b: usize,
    t: usize,
    l: &EncoderLayer,
    tower: &TowerConfig,
    causal: bool,
) {
    let (d, eps) = (tower.hidden_size, tower.layer_norm_eps);
    // x = x + attn(ln1(x))
    let h = layer_norm(x, &l.layer_norm1, eps);
    for s in 0..b {
        let a = attention(&h[s * t * d..][..t * d], t, &l.self_attn, tower, causal);
        x[s * t * d..][..t * d]
            .iter_mut()
            .zip(&a)
            .for_each(|(x, a)| *x += a);
    }
    // x = x + fc2(act(fc1(ln2(x))))
    let h = layer_norm(x, &l.layer_norm2, eps);
    let mut f = linear(&h, b * t, &l.mlp.fc1);
    activate(&mut f, tower.act);
    let m = linear(&f, b * t, &l.mlp.fc2);
    x.iter_mut().zip(&m).for_each(|(x, m)| *x += m);
}

/// Where transformers pools the text tower: legacy configs (`eos_token_id == 2`) take
/// `argmax(input_ids)` (the highest id, which is EOS in CLIP's vocabulary); others the first
/// `eos_token_id`, or 0 when there is none (what `argmax` of an all-false mask gives).
pub(crate) fn pool_position(ids: &[u32], eos_token_id: i64) -> usize {
    if eos_token_id == 2 {
        let max = ids.iter().copied().max().unwrap_or(0);
        ids.iter().position(|&i| i == max).unwrap_or(0)
    } else {
        ids.iter()
            .position(|&i| i as i64 == eos_token_id)
            .unwrap_or(0)
    }
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
            encoder_layer(&mut x, 1, t, l, &tc.tower, true);
            if tracing {
                hidden.push(x.clone());
            }
        }
        let last = layer_norm(&x, &tw.final_layer_norm, tc.tower.layer_norm_eps);
        let pos = pool_position(ids, tc.eos_token_id);
        let pooled = last[pos * d..][..d].to_vec();
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
        let rows: Vec<f32> = (0..b)
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
        let (d, s, p, g) = (
            vc.tower.hidden_size,
            vc.image_size,
            vc.patch_size,
            vc.grid(),
        );
        let t = vc.num_positions();
        if pixels.len() != b * 3 * s * s {
            return Err(crate::Error::Invalid(format!(
                "{} pixel values for {b} images of 3x{s}x{s}",
                pixels.len()
            )));
        }
        let vw = &self.w.vision;
        // Patches as rows (B*N, 3*p*p) in the (c, ky, kx) order of the conv weight.
        let kk = 3 * p * p;
        let mut patches = vec![0.0f32; b * g * g * kk];
        for img in 0..b {
            for gy in 0..g {
                for gx in 0..g {
                    let row = &mut patches[((img * g + gy) * g + gx) * kk..][..kk];
                    for c in 0..3 {
                        for ky in 0..p {
                            let src =
                                &pixels[((img * 3 + c) * s + gy * p + ky) * s + gx * p..][..p];
                            row[(c * p + ky) * p..][..p].copy_from_slice(src);
                        }
                    }
                }
            }
        }
        let mut pe = vec![0.0f32; b * g * g * d]; // (B*N, D) = patches . W^T
        gemm_nt(
            &mut pe,
            &patches,
            &vw.patch_embedding,
            b * g * g,
            d,
            kk,
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
                    &pe[(img * g * g + r - 1) * d..][..d]
                };
                for c in 0..d {
                    x[(img * t + r) * d + c] = src[c] + vw.position_embedding[r * d + c];
                }
            }
        }
        let eps = vc.tower.layer_norm_eps;
        let mut x = layer_norm(&x, &vw.pre_layernorm, eps);
        let mut hidden: Vec<Vec<f32>> = Vec::new();
        let tracing = traces.is_some();
        if tracing {
            hidden.push(x.clone());
        }
        for l in &vw.layers {
            encoder_layer(&mut x, b, t, l, &vc.tower, false);
            if tracing {
                hidden.push(x.clone());
            }
        }
        // pooled = post_layernorm(x[:, 0])   (B, D)
        let cls: Vec<f32> = (0..b)
            .flat_map(|img| x[img * t * d..][..d].to_vec())
            .collect();
        let pooled = layer_norm(&cls, &vw.post_layernorm, eps);
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

/// Where a ViT-H/14 vision layer's time goes on this CPU path (f16-held random weights, one
/// image of 257 tokens): (stage, ms). A benchmark harness for `tests/wasm_gpu.rs`.
#[cfg(feature = "selftest")]
pub(crate) fn profile_vision_layer(now_ms: &dyn Fn() -> f64) -> Vec<(&'static str, f64)> {
    let (t, d, f) = (257, 1280, 5120);
    let tower = TowerConfig {
        hidden_size: d,
        intermediate_size: f,
        num_layers: 1,
        num_heads: 16,
        layer_norm_eps: 1e-5,
        act: Activation::Gelu,
    };
    use crate::testing::rand;
    let mut seed = 0;
    let mut rand = |n: usize, scale: f32| {
        seed += 1;
        rand(n, seed, scale)
    };
    let mut lin = |out: usize, inp: usize| Linear {
        weight: Matrix::F16(
            rand(out * inp, (3.0 / inp as f32).sqrt())
                .into_iter()
                .map(half::f16::from_f32)
                .collect(),
        ),
        bias: Some(vec![0.01; out]),
        out_features: out,
        in_features: inp,
    };
    let attn = Attention {
        q_proj: lin(d, d),
        k_proj: lin(d, d),
        v_proj: lin(d, d),
        out_proj: lin(d, d),
    };
    let (fc1, fc2) = (lin(f, d), lin(d, f));
    let ln = LayerNorm {
        weight: vec![1.0; d],
        bias: vec![0.0; d],
    };
    let x: Vec<f32> = (0..t * d)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let mut out = Vec::new();
    let mut time = |name: &'static str, f: &mut dyn FnMut()| {
        let t0 = now_ms();
        f();
        out.push((name, now_ms() - t0));
    };
    let mut h = Vec::new();
    time("layer_norm", &mut || h = layer_norm(&x, &ln, 1e-5));
    time("q/k/v/out products", &mut || {
        for l in [&attn.q_proj, &attn.k_proj, &attn.v_proj, &attn.out_proj] {
            std::hint::black_box(linear(&h, t, l));
        }
    });
    time("attention (with its 4 products)", &mut || {
        std::hint::black_box(attention(&h, t, &attn, &tower, false));
    });
    // The attention's pieces for 16 heads of 80.
    let (heads, dh) = (16, d / 16);
    let qh = rand(t * dh, 0.5);
    let mut sc = vec![0.0f32; t * t];
    time("  16 x scores q k^T (257x257x80)", &mut || {
        for _ in 0..heads {
            gemm_nt(&mut sc, &qh, &qh, t, t, dh, false, false);
        }
    });
    time("  16 x softmax rows", &mut || {
        for _ in 0..heads {
            sc.chunks_exact_mut(t).for_each(|row| softmax_row(row, t));
        }
    });
    let mut o = vec![0.0f32; t * dh];
    time("  16 x context s v (257x80x257)", &mut || {
        for _ in 0..heads {
            gemm_nt(&mut o, &sc, &qh, t, dh, t, false, false);
        }
    });
    let mut g = Vec::new();
    time("fc1", &mut || g = linear(&h, t, &fc1));
    time("gelu", &mut || activate(&mut g, Activation::Gelu));
    time("fc2", &mut || {
        std::hint::black_box(linear(&g, t, &fc2));
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU's erf (the shader's is checked on the device by `gelu_on_device_matches_f64`).
    #[test]
    fn erf_approximation_is_within_1e6_of_f64_erf() {
        let mut worst = 0.0f64;
        for i in -2_000_000..=2_000_000 {
            let x = i as f32 * 5e-6; // [-10, 10] in steps of 5e-6
            let c = erfc_nonneg(x.abs());
            let erf = if x >= 0.0 { 1.0 - c } else { c - 1.0 };
            worst = worst.max((erf as f64 - libm::erf(x as f64)).abs());
        }
        eprintln!("erf approximation: max |error| {worst:.3e} on [-10, 10]");
        // A&S 7.1.26 is within 1.5e-7 in exact arithmetic; f32 evaluation adds a few ulp.
        assert!(worst < 1e-6, "erf max error {worst}");
    }

    #[test]
    fn gemm_nt_matches_naive_on_awkward_sizes() {
        let (m, n, k) = (7, 5, 13);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
            .collect();
        let b: Vec<f32> = (0..n * k)
            .map(|i| ((i * 17 % 7) as f32 - 3.0) * 0.2)
            .collect();
        let mut out = vec![1.0f32; m * n];
        gemm_nt(&mut out, &a, &b, m, n, k, true, true);
        for i in 0..m {
            for j in 0..n {
                let want: f64 = 1.0
                    + (0..k)
                        .map(|x| a[i * k + x] as f64 * b[j * k + x] as f64)
                        .sum::<f64>();
                assert!(
                    (out[i * n + j] as f64 - want).abs() < 1e-5,
                    "({i},{j}) {} vs {want}",
                    out[i * n + j]
                );
            }
        }
    }

    /// Half-precision weights are widened in blocks of `WIDEN_ROWS` rows: several blocks, the
    /// last one partial, f16 and bf16, with and without bias, against the f32 product.
    #[test]
    fn half_weight_linear_matches_f32_over_several_blocks() {
        let (m, n, k) = (3, 2 * WIDEN_ROWS + 37, 19);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 17 % 13) as f32 - 6.0) * 0.125)
            .collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        for half in [true, false] {
            for b in [None, Some(bias.clone())] {
                let weight = if half {
                    Matrix::F16(w.iter().map(|&v| half::f16::from_f32(v)).collect())
                } else {
                    Matrix::BF16(w.iter().map(|&v| half::bf16::from_f32(v)).collect())
                };
                let l = Linear {
                    weight,
                    bias: b.clone(),
                    out_features: n,
                    in_features: k,
                };
                let got = linear(&x, m, &l);
                for i in 0..m {
                    for j in 0..n {
                        // w's values (multiples of 1/8 in [-0.75, 0.75]) are exact in both.
                        let want: f64 = b.as_ref().map_or(0.0, |b| b[j] as f64)
                            + (0..k)
                                .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                                .sum::<f64>();
                        assert!(
                            (got[i * n + j] as f64 - want).abs() < 1e-5,
                            "half={half} ({i},{j})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pooling_follows_transformers() {
        assert_eq!(pool_position(&[49406, 320, 49407, 49407], 2), 2);
        assert_eq!(pool_position(&[49406, 320, 49407], 49407), 2);
        assert_eq!(pool_position(&[49406, 320], 49407), 0);
    }

    #[test]
    fn exp_nonpos_is_within_1_5e7_of_f64_exp() {
        let mut worst = 0.0f64;
        for i in 0..=2_000_000 {
            let x = -87.0 * i as f32 / 2_000_000.0;
            let want = (x as f64).exp();
            worst = worst.max((exp_nonpos(x) as f64 - want).abs() / want);
        }
        assert!(worst <= 1.5e-7, "max relative error {worst:e}");
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert_eq!(exp_nonpos(-1000.0), exp_nonpos(-87.0));
        assert_eq!(exp_nonpos(f32::NEG_INFINITY), exp_nonpos(-87.0));
        println!("exp_nonpos: max relative error {worst:.2e}");
    }

    #[test]
    fn gelu_is_within_1e6_of_f64_erf_gelu() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-5; // [-10, 10]
            let want =
                0.5 * x as f64 * (1.0 + libm::erf(x as f64 * std::f64::consts::FRAC_1_SQRT_2));
            worst = worst.max((gelu(x) as f64 - want).abs() / (1.0 + x.abs() as f64));
        }
        assert!(worst < 1e-6, "gelu worst relative error {worst:.3e}");
    }

    #[test]
    fn activations() {
        let mut x = vec![-1.0f32, 0.0, 1.0, 3.0];
        activate(&mut x, Activation::Gelu);
        let want = [-0.158_655_25f32, 0.0, 0.841_344_8, 2.995_950_5];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let mut q = vec![1.0f32];
        activate(&mut q, Activation::QuickGelu);
        assert!((q[0] - 1.0 / (1.0 + (-1.702f32).exp())).abs() < 1e-7);
    }
}
