//! Unit tests of the CPU engine's ops against f64 references.

use super::matmul::{gemm_nt, linear, Linear, Matrix, WIDEN_ROWS};
use super::pointwise::{erfc_nonneg, exp_nonpos, gelu, gelu_scalar, quick_gelu};

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

/// Awkward sizes against f64: few rows (the AVX-512 dot-product tiles where the CPU has them,
/// else `gemm`) at every tile edge (rows and columns not a multiple of 4), and 33 rows (`gemm`);
/// K around the 16-lane steps; with and without accumulation.
#[test]
fn gemm_nt_matches_f64_on_awkward_sizes() {
    #[cfg(target_arch = "x86_64")]
    eprintln!(
        "AVX-512 dot-product tiles: {}",
        super::dot_avx512::available()
    );
    for (m, n) in [
        (1, 1),
        (3, 5),
        (4, 4),
        (7, 5),
        (5, 9),
        (12, 33),
        (32, 7),
        (33, 6),
    ] {
        for k in [1, 13, 15, 16, 17, 64, 100] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
                .collect();
            let b: Vec<f32> = (0..n * k)
                .map(|i| ((i * 17 % 7) as f32 - 3.0) * 0.2)
                .collect();
            for accumulate in [true, false] {
                let mut out = vec![1.0f32; m * n];
                gemm_nt(&mut out, &a, &b, m, n, k, accumulate, true);
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|x| a[i * k + x] as f64 * b[j * k + x] as f64)
                            .sum();
                        let want = dot + if accumulate { 1.0 } else { 0.0 };
                        let got = out[i * n + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "m {m} n {n} k {k} acc {accumulate} ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
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
        let want = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 * std::f64::consts::FRAC_1_SQRT_2));
        worst = worst.max((gelu_scalar(x) as f64 - want).abs() / (1.0 + x.abs() as f64));
    }
    assert!(worst < 1e-6, "gelu worst relative error {worst:.3e}");
}

#[test]
fn activations() {
    let mut x = vec![-1.0f32, 0.0, 1.0, 3.0];
    gelu(&mut x);
    let want = [-0.158_655_25f32, 0.0, 0.841_344_8, 2.995_950_5];
    for (a, b) in x.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    let mut q = vec![1.0f32];
    quick_gelu(&mut q);
    assert!((q[0] - 1.0 / (1.0 + (-1.702f32).exp())).abs() < 1e-7);
}

#[test]
fn f16_bits_to_f32_is_exact_for_all_65536_values() {
    for b in 0..=u16::MAX {
        let want = half::f16::from_bits(b).to_f32();
        let got = super::sgemm::f16_bits_to_f32(b);
        if want.is_nan() {
            assert!(got.is_nan(), "{b:#06x}");
        } else {
            assert_eq!(got.to_bits(), want.to_bits(), "{b:#06x}: {got} vs {want}");
        }
    }
}

#[test]
fn packed_product_matches_f64_on_awkward_shapes() {
    super::selftest::sgemm_awkward_shapes();
}
