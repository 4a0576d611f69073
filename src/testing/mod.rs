//! Checks shared by the native unit tests (lavapipe in CI) and the browser tests
//! (`tests/wasm_gpu.rs`, wasm-bindgen-test in headless Chromium on SwiftShader, which has no
//! `shader-f16`), so the same code proves both paths: every GPU kernel against a plain CPU
//! reference (f64 accumulation) on seeded, awkward shapes (`kernels`), and the whole GPU forward
//! against the transformers goldens of the fixture models (`end_to_end`). Every check panics with
//! the first value out of tolerance and otherwise returns a line of figures. With the `selftest`
//! feature also the browser's timing harnesses (`timing`) and its CPU path's product check, and
//! the whole module as `sciscore::selftest`.

#[cfg(feature = "selftest")]
mod cpu;
mod end_to_end;
mod kernels;
#[cfg(feature = "selftest")]
mod timing;

#[cfg(all(feature = "selftest", not(target_arch = "wasm32")))]
pub use cpu::cpu_linear_timing;
#[cfg(feature = "selftest")]
pub use cpu::{cpu_layer_profile, cpu_packed_product, cpu_product_timing};
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) use end_to_end::SCORE_ABS_F16;
pub use end_to_end::{end_to_end, Goldens};
pub use kernels::{attention, gelu, layer_norm, matmul, text_embed_and_pooling, vision_embeddings};
#[cfg(feature = "selftest")]
pub use timing::matmul_timing;

use crate::error::Result;
use crate::gpu::{Gpu, Pass};

/// A device with every kernel compiled, for the checks.
pub struct TestGpu(pub(crate) Gpu);

impl TestGpu {
    /// The default adapter's device; `Error::NoAdapter` without one.
    pub async fn new() -> Result<TestGpu> {
        Ok(TestGpu(Gpu::new().await?))
    }
    /// The default adapter's device without optional kernel features (the core WebGPU path).
    pub async fn core() -> Result<TestGpu> {
        Ok(TestGpu(Gpu::open(false, &|_, _| {}).await?))
    }
    /// Adapter name, backend and driver.
    pub fn info(&self) -> &str {
        self.0.info()
    }
}

/// Seeded values in [-scale, scale).
pub(crate) fn rand(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Submits `pass` and reads `n` f32 of `out` back.
async fn run(gpu: &Gpu, pass: Pass<'_>, out: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("test"),
        });
    pass.encode(&mut enc).unwrap();
    gpu.submit_and_read(enc, out, n).await.unwrap()
}

pub(crate) fn upload(gpu: &Gpu, v: &[f32]) -> wgpu::Buffer {
    gpu.upload("test", bytemuck::cast_slice(v)).unwrap()
}

/// The shared native test devices: None (after a skip line) when there is no adapter, unless
/// SCISCORE_REQUIRE_GPU=1 (CI with lavapipe), where a missing adapter fails the test.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod devices {
    use super::TestGpu;
    use crate::error::Error;
    use std::sync::OnceLock;

    static GPU: OnceLock<Option<TestGpu>> = OnceLock::new();
    static GPU_CORE: OnceLock<Option<TestGpu>> = OnceLock::new();

    /// The default adapter's device with the optional kernel features it has.
    pub(crate) fn gpu() -> Option<&'static TestGpu> {
        GPU.get_or_init(|| match pollster::block_on(TestGpu::new()) {
            Ok(g) => {
                eprintln!("gpu tests on {}", g.info());
                Some(g)
            }
            Err(Error::NoAdapter(m)) => {
                if std::env::var("SCISCORE_REQUIRE_GPU").as_deref() == Ok("1") {
                    panic!("SCISCORE_REQUIRE_GPU=1 but no GPU adapter: {m}");
                }
                eprintln!("skipping GPU tests: no adapter ({m})");
                None
            }
            Err(e) => panic!("GPU init failed: {e}"),
        })
        .as_ref()
    }

    /// The same adapter without optional kernel features: the core WebGPU reductions and f32
    /// weight tiles (the browser's path on SwiftShader) also run on adapters with subgroups and
    /// f16.
    pub(crate) fn gpu_core() -> Option<&'static TestGpu> {
        gpu()?;
        GPU_CORE
            .get_or_init(|| Some(pollster::block_on(TestGpu::core()).unwrap()))
            .as_ref()
    }
}
