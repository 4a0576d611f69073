//! Unit tests of the CPU engine's ops against f64 references.

use super::attention::softmax_row;
use super::matmul::{gemm_nt, linear, linear_into, Epilogue, Linear, Matrix, WIDEN_ROWS};
use super::norm::{layer_norm, LayerNorm};
use super::pointwise::{add, erfc_nonneg, exp_nonpos, gelu, gelu_scalar, quick_gelu};

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

/// x (M, K), W (N, K) and a bias (N,) for the product tests; W's values are multiples of 1/8
/// in [-0.75, 0.75], exact in f16 and bf16.
fn exact_operands(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = (0..m * k)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
        .collect();
    let w = (0..n * k)
        .map(|i| ((i * 17 % 13) as f32 - 6.0) * 0.125)
        .collect();
    let bias = (0..n).map(|i| i as f32 * 0.01).collect();
    (x, w, bias)
}

/// Half-precision weights are widened in blocks of `WIDEN_ROWS` rows: several blocks, the
/// last one partial, f16 and bf16, with and without bias, against the f32 product.
#[test]
fn half_weight_linear_matches_f32_over_several_blocks() {
    let (m, n, k) = (3, 2 * WIDEN_ROWS + 37, 19);
    let (x, w, bias) = exact_operands(m, n, k);
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

/// Weights packed for the AVX-512 products (`packed_for`): f32, f16 and bf16, every row-block
/// and panel edge (rows 1..=25 around the 12-row tiles, 257 and 600 (a batch of images),
/// columns around the 32-column panels and the 16-lane halves, k around the 256 block), one
/// thread and split, against f64.
#[test]
fn packed_linear_matches_f64_on_awkward_sizes() {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx512f") {
        println!("skipped: this CPU has no AVX-512 (the products stay on gemm)");
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    return;
    let shapes = [
        (1, 1, 1),
        (5, 17, 15),
        (12, 32, 16),
        (13, 33, 17),
        (25, 48, 255),
        (11, 64, 256),
        (24, 31, 257),
        (257, 70, 300),
        (40, 100, 600),
        (600, 45, 520),
    ];
    for (m, n, k) in shapes {
        let (x, w, bias) = exact_operands(m, n, k);
        for kind in 0..3 {
            let weight = match kind {
                0 => Matrix::F32(w.clone()),
                1 => Matrix::F16(w.iter().map(|&v| half::f16::from_f32(v)).collect()),
                _ => Matrix::BF16(w.iter().map(|&v| half::bf16::from_f32(v)).collect()),
            }
            .packed_for(n, k);
            #[cfg(target_arch = "x86_64")]
            assert!(matches!(weight, Matrix::Packed(_)), "not packed");
            assert_eq!(&*weight.f32(), &w[..], "unpacked values, kind {kind}");
            let l = Linear {
                weight,
                bias: (kind != 1).then(|| bias.clone()),
                out_features: n,
                in_features: k,
            };
            let got = linear(&x, m, &l);
            for i in 0..m {
                for j in 0..n {
                    let terms = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64);
                    let want =
                        l.bias.as_ref().map_or(0.0, |b| b[j] as f64) + terms.clone().sum::<f64>();
                    // An f32 sum of k products is within about k * 6e-8 of sum |terms| (the
                    // recursive-summation bound); 1e-6 covers k <= 16 exactly, more with blocks.
                    let tol = 1e-6 * (1.0 + terms.map(f64::abs).sum::<f64>());
                    assert!(
                        (got[i * n + j] as f64 - want).abs() < tol,
                        "m {m} n {n} k {k} kind {kind} ({i},{j}): {} vs {want}",
                        got[i * n + j]
                    );
                }
            }
        }
    }
}

/// The epilogues (`linear_into`), fused into the packed kernel's stores natively on AVX-512 and
/// a pass after the `gemm` crate's product elsewhere: GELU and QuickGELU give the bits of the
/// stored product followed by the separate pass; the residual add is within f32 rounding of
/// y + z (the packed kernel adds y before the later blocks of k). Shapes around the tiles,
/// panels and k blocks, with and without bias, y's old length other than M * N.
#[test]
fn linear_epilogues_match_the_separate_passes() {
    for (m, n, k) in [
        (1, 1, 1),
        (13, 33, 17),
        (25, 70, 300),
        (257, 40, 600),
        (530, 33, 300),
    ] {
        let (x, w, bias) = exact_operands(m, n, k);
        for packed in [false, true] {
            for b in [None, Some(bias.clone())] {
                let weight = Matrix::F32(w.clone());
                let l = Linear {
                    weight: if packed {
                        weight.packed_for(n, k)
                    } else {
                        weight
                    },
                    bias: b,
                    out_features: n,
                    in_features: k,
                };
                let z = linear(&x, m, &l);
                let at = format!(
                    "m {m} n {n} k {k} packed {packed} bias {}",
                    l.bias.is_some()
                );
                for (epilogue, pass) in [
                    (Epilogue::Gelu, gelu as fn(&mut [f32])),
                    (Epilogue::QuickGelu, quick_gelu),
                ] {
                    let mut want = z.clone();
                    pass(&mut want);
                    let mut got = vec![7.0; 5]; // overwritten whatever it held
                    linear_into(&mut got, &x, m, &l, epilogue);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same && got.len() == want.len(), "{epilogue:?} {at}");
                }
                let y0: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32 * 0.3 - 1.0).collect();
                let mut want = y0.clone();
                add(&mut want, &z);
                let mut got = y0.clone();
                linear_into(&mut got, &x, m, &l, Epilogue::Residual);
                // The two orders round differently once per block of k (256) and twice more;
                // |y| + |b| + sum |x w| bounds every partial sum of either.
                let roundings = (k.div_ceil(256) + 2) as f32;
                for i in 0..m {
                    for j in 0..n {
                        let terms: f32 = (0..k).map(|t| (x[i * k + t] * w[j * k + t]).abs()).sum();
                        let bound = y0[i * n + j].abs() + bias[j].abs() + terms;
                        let (got, want) = (got[i * n + j], want[i * n + j]);
                        assert!(
                            (got - want).abs() <= roundings * f32::EPSILON * bound,
                            "residual {at} ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

/// The parts a packed product is split into cover every row and panel exactly once, each row
/// block starting at a multiple of 264 rows.
#[cfg(target_arch = "x86_64")]
#[test]
fn packed_parts_cover_the_product_once() {
    use super::packed_avx512::{parts, NR};
    for (m, n) in [
        (0usize, 5usize),
        (1, 1),
        (257, 1280),
        (257, 5120),
        (1028, 1280),
        (1028, 5120),
        (600, 45),
    ] {
        for threads in [1, 2, 3, 8] {
            let panels = n.div_ceil(NR);
            let mut seen = vec![0u8; m * panels];
            for p in parts(m, n, threads) {
                assert!(
                    p.rows.start % 264 == 0 && p.rows.end <= m,
                    "{m} {n} {threads}: {p:?}"
                );
                for i in p.rows.clone() {
                    for j in p.panels.clone() {
                        seen[i * panels + j] += 1;
                    }
                }
            }
            assert!(
                seen.iter().all(|&c| c == 1),
                "m {m} n {n} threads {threads}"
            );
        }
    }
}

/// Stacked rows (q, k, v as one product) keep a shared precision and widen mixed ones to f32,
/// value for value.
#[test]
fn concat_rows_keeps_values_and_shared_precision() {
    let a = [0.5f32, -1.25, 2.0, 0.125];
    let b = [3.0f32, -0.75];
    let f16 = |v: &[f32]| Matrix::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect());
    let bf16 = |v: &[f32]| Matrix::BF16(v.iter().map(|&x| half::bf16::from_f32(x)).collect());
    let want: Vec<f32> = a.iter().chain(&b).copied().collect();
    let m = Matrix::concat_rows(vec![f16(&a), f16(&b)]);
    assert!(matches!(m, Matrix::F16(_)), "f16 parts stay f16");
    assert_eq!(&*m.f32(), &want[..]);
    let m = Matrix::concat_rows(vec![Matrix::F32(a.to_vec()), Matrix::F32(b.to_vec())]);
    assert!(matches!(m, Matrix::F32(_)));
    assert_eq!(&*m.f32(), &want[..]);
    let m = Matrix::concat_rows(vec![bf16(&a), f16(&b), Matrix::F32(b.to_vec())]);
    assert!(matches!(m, Matrix::F32(_)), "mixed parts become f32");
    let want: Vec<f32> = a.iter().chain(&b).chain(&b).copied().collect();
    assert_eq!(&*m.f32(), &want[..]);
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

/// `gelu` over a slice (16 lanes with AVX-512 natively, chunks on all cores) equals the
/// scalar GELU bit for bit, so the f64 check above covers it.
#[test]
fn gelu_slice_equals_scalar_gelu_bitwise() {
    let x: Vec<f32> = (-200_000..=200_003).map(|i| i as f32 * 5e-5).collect();
    let mut y = x.clone();
    gelu(&mut y);
    for (&x, &y) in x.iter().zip(&y) {
        assert_eq!(y.to_bits(), gelu_scalar(x).to_bits(), "gelu({x})");
    }
}

/// The softmax (lane-wise max and sum, 16-wide exponentials natively) against an f64 softmax,
/// on lengths around the 16 lanes and with masked tails.
#[test]
fn softmax_row_matches_f64() {
    for (len, valid) in [
        (1, 1),
        (15, 15),
        (16, 16),
        (17, 9),
        (33, 33),
        (257, 257),
        (257, 100),
    ] {
        let mut row: Vec<f32> = (0..len)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) * 0.37)
            .collect();
        // The shift in f32, as the softmax (and PyTorch's f32 softmax) does it: its rounding
        // is the input's, not the function's.
        let max = row[..valid]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let e: Vec<f64> = row[..valid]
            .iter()
            .map(|&v| ((v - max) as f64).exp())
            .collect();
        let sum: f64 = e.iter().sum();
        softmax_row(&mut row, valid);
        for (i, &got) in row.iter().enumerate() {
            let want = if i < valid { e[i] / sum } else { 0.0 };
            // exp_nonpos is within 1.5e-7 relative; the normalization adds a few ulp.
            assert!(
                (got as f64 - want).abs() <= 5e-7 * want + 1e-30,
                "len {len} valid {valid} [{i}]: {got} vs {want}"
            );
        }
    }
}

/// Layer norm (eight-lane f64 sums, rows on all cores) against a two-pass f64 reference, on
/// widths around the eight lanes and a row count spanning several tasks, with a large mean.
#[test]
fn layer_norm_matches_f64() {
    for d in [1, 7, 8, 9, 1283] {
        let rows = 40_000 / d + 3;
        let x: Vec<f32> = (0..rows * d)
            .map(|i| 1000.0 + ((i * 7919 % 1009) as f32 - 504.0) * 0.01)
            .collect();
        let ln = LayerNorm {
            weight: (0..d).map(|i| 1.0 + i as f32 * 1e-3).collect(),
            bias: (0..d).map(|i| i as f32 * -1e-3).collect(),
        };
        let y = layer_norm(&x, &ln, 1e-5);
        for (r, (row, out)) in x.chunks_exact(d).zip(y.chunks_exact(d)).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for i in 0..d {
                let want = (row[i] as f64 - mean) / (var + 1e-5).sqrt() * ln.weight[i] as f64
                    + ln.bias[i] as f64;
                // The normalized value is rounded to f32 before the affine step (as in f32
                // PyTorch): a few ulp of values up to ~2.
                assert!(
                    (out[i] as f64 - want).abs() < 1e-6,
                    "d {d} row {r} [{i}]: {} vs {want}",
                    out[i]
                );
            }
        }
    }
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
