//! A benchmark harness, not a check: the browser's GPU matmul timing (`tests/wasm_gpu.rs`).

use super::{rand, upload, TestGpu};
use crate::gpu::{Epilogue, GpuLinear, Pass};

/// Best wall time in ms of `reps` runs (after one warm-up) of the f16-weight matmul
/// y (M, N) = x (M, K) W^T + b, each a submission followed by a 4-byte readback, and its
/// GFLOP/s. `now_ms` is the clock (`Date.now()` in the browser harness).
pub async fn matmul_timing(
    g: &TestGpu,
    (m, k, n): (usize, usize, usize),
    reps: usize,
    now_ms: &dyn Fn() -> f64,
) -> (f64, f64) {
    let g = &g.0;
    let lin =
        GpuLinear::from_f32(g, &rand(n * k, 2, 1.0), Some(&rand(n, 3, 1.0)), n, k, true).unwrap();
    let (xb, yb) = (
        upload(g, &rand(m * k, 1, 1.0)),
        g.storage("y", (m * n * 4) as u64).unwrap(),
    );
    let mut best = f64::MAX;
    for rep in 0..=reps {
        let mut pass = Pass::new(g);
        pass.linear("bench", &lin, &xb, &yb, m, Epilogue::Store);
        let mut enc = g
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        pass.encode(&mut enc).unwrap();
        let t0 = now_ms();
        let y = g.submit_and_read(enc, &yb, 1).await.unwrap();
        let ms = now_ms() - t0;
        assert!(y[0].is_finite());
        if rep > 0 {
            best = best.min(ms);
        }
    }
    (best, 2.0 * (m * n * k) as f64 / best / 1e6)
}
