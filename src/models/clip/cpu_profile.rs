//! Where a ViT-H/14 vision layer's time goes on the CPU path: a benchmark harness for the
//! browser (`crate::selftest::cpu_layer_profile`, run by `tests/wasm_gpu.rs`), compiled with the
//! `selftest` feature only.
//!
//! Legend: T = 257 tokens, D = 1280, H = 16, Dh = 80, F = 5120 (one image).

use crate::cpu::{
    gemm_nt, layer_norm, linear, linear_into, softmax_row, Epilogue, LayerNorm, Linear, Matrix,
};
use crate::models::clip::cpu::self_attention;
use crate::models::clip::weights::Attention;

/// (stage, ms) of one vision layer with random weights held in f16 (as the browser holds
/// SciScore's) or f32, prepared as the model's loader prepares them (packed natively on
/// AVX-512), stage by stage.
pub(crate) fn vision_layer(
    now_ms: &dyn Fn() -> f64,
    f16_weights: bool,
    batch: usize,
) -> Vec<(&'static str, f64)> {
    let (b, t, d, f, heads) = (batch.max(1), 257, 1280, 5120, 16);
    use crate::testing::rand;
    let mut seed = 0;
    let mut rand = |n: usize, scale: f32| {
        seed += 1;
        rand(n, seed, scale)
    };
    let mut lin = |out: usize, inp: usize| {
        let w = rand(out * inp, (3.0 / inp as f32).sqrt());
        let weight = if f16_weights {
            Matrix::F16(w.into_iter().map(half::f16::from_f32).collect())
        } else {
            Matrix::F32(w)
        };
        Linear {
            weight: weight.packed_for(out, inp),
            bias: Some(vec![0.01; out]),
            out_features: out,
            in_features: inp,
        }
    };
    let attn = Attention {
        qkv_proj: lin(3 * d, d),
        out_proj: lin(d, d),
    };
    let (fc1, fc2) = (lin(f, d), lin(d, f));
    let ln = LayerNorm {
        weight: vec![1.0; d],
        bias: vec![0.0; d],
    };
    let rows = b * t;
    let x: Vec<f32> = (0..rows * d) // (B*T, D)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let mut out = Vec::new();
    let mut time = |name: &'static str, f: &mut dyn FnMut()| {
        let t0 = now_ms();
        f();
        out.push((name, now_ms() - t0));
    };
    let mut h = Vec::new(); // (B*T, D)
    time("layer_norm", &mut || h = layer_norm(&x, &ln, 1e-5));
    time("qkv and out products", &mut || {
        for l in [&attn.qkv_proj, &attn.out_proj] {
            std::hint::black_box(linear(&h, rows, l));
        }
    });
    let mut y = x.clone(); // (B*T, D), the residual stream
    time("attention (with its 4 products)", &mut || {
        self_attention(&mut y, &h, b, t, &attn, heads, false);
    });
    // The attention's pieces for 16 heads of 80 in each of B sequences, on one thread.
    let dh = d / heads;
    let qh = rand(t * dh, 0.5); // (T, Dh)
    let mut sc = vec![0.0f32; t * t]; // (T, T)
    time("  scores q k^T (257x257x80 a head)", &mut || {
        for _ in 0..b * heads {
            gemm_nt(&mut sc, &qh, &qh, t, t, dh, false, false);
        }
    });
    time("  softmax rows", &mut || {
        for _ in 0..b * heads {
            sc.chunks_exact_mut(t).for_each(|row| softmax_row(row, t));
        }
    });
    let mut o = vec![0.0f32; t * dh]; // (T, Dh)
    time("  context s v (257x80x257 a head)", &mut || {
        for _ in 0..b * heads {
            gemm_nt(&mut o, &sc, &qh, t, dh, t, false, false);
        }
    });
    let mut g = Vec::new(); // (B*T, F)
    time("fc1 and its GELU", &mut || {
        linear_into(&mut g, &h, rows, &fc1, Epilogue::Gelu)
    });
    time("fc2 onto the residual stream", &mut || {
        linear_into(&mut y, &g, rows, &fc2, Epilogue::Residual)
    });
    std::hint::black_box(&y);
    out
}
