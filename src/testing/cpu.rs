//! The browser CPU path's checks and timings (`tests/wasm_gpu.rs`): its packed product against
//! f64, and where a ViT-H/14 layer's time goes.

use super::rand;

/// The browser CPU path's packed product (`src/cpu/sgemm.rs`) against f64: in `tests/wasm_gpu.rs`
/// this runs the SIMD128 micro-kernel, and the relaxed-SIMD one in a `relaxed-simd` build.
pub fn cpu_packed_product() -> String {
    crate::cpu::selftest::sgemm_awkward_shapes()
}

/// Where a ViT-H/14 vision layer's time goes on the CPU path: (stage, best ms of three runs
/// after one that includes V8's tier-up).
pub fn cpu_layer_profile(now_ms: &dyn Fn() -> f64) -> Vec<(&'static str, f64)> {
    crate::models::clip::cpu_profile::vision_layer(now_ms);
    let mut best = crate::models::clip::cpu_profile::vision_layer(now_ms);
    for _ in 0..2 {
        let run = crate::models::clip::cpu_profile::vision_layer(now_ms);
        for (b, (_, ms)) in best.iter_mut().zip(run) {
            b.1 = b.1.min(ms);
        }
    }
    best
}

/// Best wall time in ms of `reps` runs (after one warm-up) of the browser CPU path's product
/// y (M, N) += x (M, K) W^T with W held as f16 (as SciScore's weights are), for each
/// micro-kernel this build has, side by side: (kernel, ms, GFLOP/s).
pub fn cpu_product_timing(
    (m, k, n): (usize, usize, usize),
    reps: usize,
    now_ms: &dyn Fn() -> f64,
) -> Vec<(String, f64, f64)> {
    use crate::cpu::sgemm::{gemm_acc_with, Micro, Rows};
    let x = rand(m * k, 1, 1.0);
    let w: Vec<half::f16> = rand(n * k, 2, 1.0)
        .into_iter()
        .map(half::f16::from_f32)
        .collect();
    let mut y = vec![0.0f32; m * n];
    let mut best = vec![f64::MAX; Micro::available().len()];
    // Interleaved, so that a slow spell of the machine hits every kernel alike.
    for rep in 0..=reps {
        for (b, &kernel) in best.iter_mut().zip(Micro::available()) {
            let t0 = now_ms();
            gemm_acc_with(kernel, &mut y, &x, Rows::F16(&w), m, n, k);
            let ms = now_ms() - t0;
            assert!(y[0].is_finite());
            if rep > 0 {
                *b = b.min(ms);
            }
        }
    }
    Micro::available()
        .iter()
        .zip(best)
        .map(|(kernel, ms)| {
            (
                format!("{kernel:?}"),
                ms,
                2.0 * (m * n * k) as f64 / ms / 1e6,
            )
        })
        .collect()
}
