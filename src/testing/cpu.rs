//! The browser CPU path's checks and timings (`tests/wasm_gpu.rs`): its packed product against
//! f64, and where a ViT-H/14 layer's time goes.

use super::rand;

/// The browser CPU path's packed product (`src/cpu/sgemm.rs`) against f64: in `tests/wasm_gpu.rs`
/// this runs the SIMD128 micro-kernel, and the relaxed-SIMD one in a `relaxed-simd` build.
pub fn cpu_packed_product() -> String {
    crate::cpu::selftest::sgemm_awkward_shapes()
}

/// Where a ViT-H/14 vision layer's time goes on the CPU path for `batch` images, its weights
/// held in f16 or f32: (stage, best ms of three runs after one that includes V8's tier-up).
pub fn cpu_layer_profile(
    now_ms: &dyn Fn() -> f64,
    f16_weights: bool,
    batch: usize,
) -> Vec<(&'static str, f64)> {
    use crate::models::clip::cpu_profile::vision_layer;
    vision_layer(now_ms, f16_weights, batch);
    let mut best = vision_layer(now_ms, f16_weights, batch);
    for _ in 0..2 {
        let run = vision_layer(now_ms, f16_weights, batch);
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

/// Best wall time in ms of `reps` runs (after one warm-up) of the native product
/// y (M, N) = x (M, K) W^T + b with f32 W, on `threads` threads, for W as loaded (packed for the
/// AVX-512 kernels where the CPU has them) and W unpacked (the `gemm` crate), interleaved:
/// (path, ms, GFLOP/s).
#[cfg(not(target_arch = "wasm32"))]
pub fn cpu_linear_timing(
    (m, k, n): (usize, usize, usize),
    reps: usize,
    threads: usize,
) -> Vec<(String, f64, f64)> {
    use crate::cpu::{linear, Linear, Matrix};
    let x = rand(m * k, 1, 1.0);
    let w = rand(n * k, 2, 1.0);
    let lin = |weight: Matrix| Linear {
        weight,
        bias: Some(vec![0.5; n]),
        out_features: n,
        in_features: k,
    };
    let paths = [
        ("as loaded", lin(Matrix::F32(w.clone()).packed_for(n, k))),
        ("gemm crate", lin(Matrix::F32(w))),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    let mut best = [f64::MAX; 2];
    pool.install(|| {
        for rep in 0..=reps {
            for (b, (_, l)) in best.iter_mut().zip(&paths) {
                let t0 = std::time::Instant::now();
                let y = linear(&x, m, l);
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                assert!(y[0].is_finite());
                if rep > 0 {
                    *b = b.min(ms);
                }
            }
        }
    });
    paths
        .iter()
        .zip(best)
        .map(|((name, _), ms)| (name.to_string(), ms, 2.0 * (m * n * k) as f64 / ms / 1e6))
        .collect()
}
