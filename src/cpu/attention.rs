//! Multi-head scaled dot-product attention of one sequence, head by head (on all cores
//! natively): scores `q k^T`, a max-subtracted softmax, then the weighted sum of `v`.

use super::matmul::gemm_nt;
use super::pointwise::exp_nonpos;
use super::threads::par_map;

/// `ctx (T, D) = softmax(q k^T / sqrt(Dh) + mask) v` for each of `heads` heads of Dh = D / heads,
/// from `qkv (T, 3D)`: q, k and v side by side in each row (one product made all three), each
/// with its heads side by side as in PyTorch's `(T, H, Dh)` view. The `causal` mask lets token i
/// see tokens 0..=i.
pub(crate) fn attention(qkv: &[f32], t: usize, heads: usize, causal: bool) -> Vec<f32> {
    let d = qkv.len() / t.max(1) / 3;
    let dh = d / heads.max(1);
    assert!(
        heads > 0 && dh * heads == d && qkv.len() == t * 3 * d,
        "attention: operand sizes"
    );
    let scale = (dh as f32).powf(-0.5); // transformers scales q by head_dim^-0.5
    let per_head: Vec<Vec<f32>> = par_map(heads, |head| {
        // Gather this head's (T, Dh) slices of q, k, v contiguously, then scores = q k^T (T, T).
        let slice = |part: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(t * dh);
            for r in 0..t {
                out.extend_from_slice(&qkv[r * 3 * d + part * d + head * dh..][..dh]);
            }
            out
        };
        let (mut qh, kh, vh) = (slice(0), slice(1), slice(2));
        qh.iter_mut().for_each(|x| *x *= scale);
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
    let mut ctx = vec![0.0f32; t * d]; // (T, D), heads side by side
    for (head, o) in per_head.iter().enumerate() {
        for r in 0..t {
            ctx[r * d + head * dh..][..dh].copy_from_slice(&o[r * dh..][..dh]);
        }
    }
    ctx
}

/// Max-subtracted softmax over `row[..valid]`; the masked rest becomes 0.
pub(crate) fn softmax_row(row: &mut [f32], valid: usize) {
    #[cfg(target_arch = "x86_64")]
    if super::pointwise::avx512() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { softmax_row_avx512(row, valid) };
    }
    softmax_row_body(row, valid)
}

/// [`softmax_row`] compiled for AVX-512: the same operations, 16 values per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(row: &mut [f32], valid: usize) {
    softmax_row_body(row, valid)
}

// Always inlined: compiled once for AVX-512 inside `softmax_row_avx512`, once for the baseline.
#[inline(always)]
fn softmax_row_body(row: &mut [f32], valid: usize) {
    // Max and sum in 16 lanes: one serial chain of `valid` dependent steps (4 cycles each)
    // took longer than the exponentials. The max is the same in any order; the f64 sum of f32
    // values is exact to far below f32's precision in any order.
    let mut lanes = [f32::NEG_INFINITY; 16];
    for c in row[..valid].chunks(16) {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = l.max(v);
        }
    }
    let max = lanes.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    // The exponentials in a loop of their own (it vectorizes), then the f64 sum.
    for v in row[..valid].iter_mut() {
        *v = exp_nonpos(*v - max);
    }
    let mut sums = [0.0f64; 16];
    for c in row[..valid].chunks(16) {
        for (s, &v) in sums.iter_mut().zip(c) {
            *s += v as f64;
        }
    }
    let sum: f64 = sums.iter().sum();
    let inv = (1.0 / sum) as f32;
    row[..valid].iter_mut().for_each(|v| *v *= inv);
    row[valid..].iter_mut().for_each(|v| *v = 0.0);
}
