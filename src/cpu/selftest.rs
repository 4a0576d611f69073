//! Checks of the CPU engine's kernels shared by the native unit tests (`super::tests`) and the
//! browser tests (`tests/wasm_gpu.rs` through `crate::selftest`, which run them with the SIMD128
//! and relaxed-SIMD micro-kernels). Each panics on the first mismatch and otherwise returns a
//! line of figures. Compiled for unit tests and with the `selftest` feature only.

use super::sgemm::{gemm_acc_with, Micro, Rows};

/// The packed product `sgemm` against an f64 product on awkward shapes, W in f32, f16 and bf16,
/// with every micro-kernel this build has.
pub(crate) fn sgemm_awkward_shapes() -> String {
    // Edges of every kind: M and N not multiples of the panels, K over several blocks with a
    // partial last one, single rows and columns, ViT-H's 257 rows.
    let shapes = [
        (1, 1, 1),
        (6, 8, 256),
        (7, 9, 257),
        (13, 17, 600),
        (257, 20, 33),
        (5, 70, 1280),
        (77, 8, 3),
        (9, 24, 270),
    ];
    for (m, n, k) in shapes {
        sgemm_shape(m, n, k);
    }
    #[cfg(target_arch = "wasm32")]
    f16x4_all_values();
    format!(
        "packed CPU product: {} shapes x 3 weight types x {:?} match",
        shapes.len(),
        Micro::available()
    )
}

/// The SIMD f16 widening against `half` on all 65536 bit patterns (NaNs: any NaN).
#[cfg(target_arch = "wasm32")]
fn f16x4_all_values() {
    use super::sgemm::f16x4_to_f32;
    use core::arch::wasm32::*;
    for b in (0..=u16::MAX as u32).step_by(4) {
        let got = f16x4_to_f32(u32x4(b, b + 1, b + 2, b + 3));
        let got = [
            f32x4_extract_lane::<0>(got),
            f32x4_extract_lane::<1>(got),
            f32x4_extract_lane::<2>(got),
            f32x4_extract_lane::<3>(got),
        ];
        for (i, g) in got.into_iter().enumerate() {
            let want = half::f16::from_bits((b + i as u32) as u16).to_f32();
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "f16x4_to_f32({:#06x}): {g} vs {want}",
                b + i as u32
            );
        }
    }
}

/// One shape (M, N, K) of [`sgemm_awkward_shapes`].
fn sgemm_shape(m: usize, n: usize, k: usize) {
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
        .collect();
    // Multiples of 1/8 in [-0.75, 0.75]: exact in f32, f16 and bf16.
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 17 % 13) as f32 - 6.0) * 0.125)
        .collect();
    let w16: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
    let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let all = [Rows::F32(&w), Rows::F16(&w16), Rows::BF16(&wb)];
    for (&kernel, rows) in Micro::available()
        .iter()
        .flat_map(|k| all.iter().map(move |r| (k, *r)))
    {
        let mut y: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
        gemm_acc_with(kernel, &mut y, &x, rows, m, n, k);
        for i in 0..m {
            for j in 0..n {
                let want = (i * n + j) as f64 * 0.01f32 as f64
                    + (0..k)
                        .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                        .sum::<f64>();
                let got = y[i * n + j] as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(),
                    "{kernel:?} {m}x{n}x{k} ({i},{j}): {got} vs {want}"
                );
            }
        }
    }
}
