//! The wgpu device: adapter and limits, optional features, error mapping, buffers and readback.

use super::kernels::{compile_all, Kernel, KernelFamily, Pipelines, ShaderFeatures};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// A wgpu device with the pipelines of every kernel.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    info: String,
    pipes: Pipelines,
    /// Set by the device-lost callback; every later call fails with this message.
    lost: Arc<Mutex<Option<String>>>,
    /// The first validation / out-of-memory error no error scope caught.
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Timestamp period in ns per tick, where the adapter has `timestamp-query` (the native
    /// benchmark's per-kernel times).
    #[cfg(not(target_arch = "wasm32"))]
    pub timestamp_period: Option<f32>,
    /// A 16-byte buffer bound where a kernel reads nothing (a matmul without bias).
    pub(super) dummy: wgpu::Buffer,
    /// The kernels of the matrix products on this device.
    pub(super) family: KernelFamily,
    /// The optional features the kernels were compiled for (the tests ask; `info` names them).
    #[cfg(test)]
    pub(super) features: ShaderFeatures,
}

pub(super) fn gpu_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Gpu(format!("{what}: {e}"))
}

impl Gpu {
    /// Picks an adapter (high performance first), requests a device with the adapter's own
    /// buffer limits, and compiles every kernel.
    #[cfg(any(test, feature = "selftest"))]
    pub async fn new() -> Result<Gpu> {
        Self::with_progress(&|_, _| {}).await
    }

    /// `new`, calling `progress(compiled, total)` as the pipelines compile.
    pub async fn with_progress(progress: &dyn Fn(usize, usize)) -> Result<Gpu> {
        Self::open(true, progress).await
    }

    /// `with_progress`; with `optional_features` false (or natively SCISCORE_GPU_FEATURES=core)
    /// the device gets no optional feature that changes a kernel, so tests and benchmarks can
    /// run the core WebGPU path on an adapter that has more.
    pub async fn open(optional_features: bool, progress: &dyn Fn(usize, usize)) -> Result<Gpu> {
        let optional_features =
            optional_features && std::env::var("SCISCORE_GPU_FEATURES").as_deref() != Ok("core");
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let a = adapter.limits();
        // WebGPU defaults, except the two buffer limits: CLIP-H's weights and the f32 token table
        // (202 MB) want whatever the adapter offers.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: a.max_storage_buffer_binding_size,
            max_buffer_size: a.max_buffer_size,
            ..wgpu::Limits::default()
        };
        let mut features = wgpu::Features::empty();
        if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let has = |f| optional_features && adapter.features().contains(f);
        let shader = ShaderFeatures {
            subgroups: has(wgpu::Features::SUBGROUP),
            shader_f16: has(wgpu::Features::SHADER_F16),
        };
        if shader.subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if shader.shader_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("sciscore"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::default(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| gpu_err("requesting a device", e))?;
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut l) = lost_cb.lock() {
                *l = Some(format!("{reason:?}: {msg}"));
            }
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let unc = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut u) = unc.lock() {
                u.get_or_insert_with(|| e.to_string());
            }
        }));
        let i = adapter.get_info();
        let info = format!(
            "{} ({:?}, {:?}, driver {} {}{})",
            i.name,
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info,
            shader.describe()
        );
        #[cfg(not(target_arch = "wasm32"))]
        let timestamp_period = features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| queue.get_timestamp_period());
        let pipes = compile_all(&device, shader, progress).await?;
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let gpu = Gpu {
            device,
            queue,
            limits,
            info,
            pipes,
            lost,
            uncaptured,
            #[cfg(not(target_arch = "wasm32"))]
            timestamp_period,
            dummy,
            family: KernelFamily::for_adapter(i.device_type),
            #[cfg(test)]
            features: shader,
        };
        gpu.check()?;
        Ok(gpu)
    }

    /// Adapter name, backend and driver (and the optional features the kernels use).
    pub fn info(&self) -> &str {
        &self.info
    }

    /// Whether the reductions use subgroup operations (`shaders/reduce_subgroups.wgsl`).
    #[cfg(test)]
    pub fn subgroups(&self) -> bool {
        self.features.subgroups
    }

    /// Whether the tiled matmul holds f16 weight tiles as f16 (`shaders/wtile_f16.wgsl`).
    #[cfg(test)]
    pub fn shader_f16(&self) -> bool {
        self.features.shader_f16
    }

    /// Fails when the device was lost or an error escaped the error scopes.
    pub fn check(&self) -> Result<()> {
        if let Some(m) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::Gpu(format!(
                "the GPU device was lost ({m}); the model must be loaded again, or scored on the CPU"
            )));
        }
        if let Some(m) = self.uncaptured.lock().ok().and_then(|mut u| u.take()) {
            return Err(Error::Gpu(m));
        }
        Ok(())
    }

    /// A storage buffer of `bytes` (rounded up to 16), checked against the device's limits.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.max(16).div_ceil(16) * 16;
        let max = self
            .limits
            .max_buffer_size
            .min(self.limits.max_storage_buffer_binding_size);
        if size > max {
            return Err(Error::Limits {
                what: format!("GPU buffer `{label}`"),
                needed: size,
                available: max,
            });
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `data`.
    pub fn upload(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        let b = self.storage(label, data.len() as u64)?;
        self.write(&b, 0, data);
        Ok(b)
    }

    /// Queues a write of `data` (length padded to 4 bytes) at `offset`.
    pub fn write(&self, b: &wgpu::Buffer, offset: u64, data: &[u8]) {
        if data.len().is_multiple_of(4) {
            self.queue.write_buffer(b, offset, data);
        } else {
            let mut v = data.to_vec();
            v.resize(data.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(b, offset, &v);
        }
    }

    /// Blocks natively until the queue is idle (frees staging memory of queued writes); in the
    /// browser the queue drains on its own.
    pub fn wait_idle(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| gpu_err("waiting for the GPU", e))?;
        Ok(())
    }

    /// Submits `encoder` after copying `count` f32 of `src` into a fresh staging buffer, then
    /// maps it and returns the values: the only way results leave the GPU.
    pub async fn submit_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<f32>> {
        let bytes = self
            .submit_and_read_bytes(encoder, src, count as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..count * 4]))
    }

    /// Submits `encoder`, then reads the first `len` bytes of `src` back.
    pub async fn submit_and_read_bytes(
        &self,
        mut encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        len: u64,
    ) -> Result<Vec<u8>> {
        let size = len.max(4).div_ceil(4) * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue.submit([encoder.finish()]);
        if let Some(e) = scope.pop().await {
            return Err(gpu_err("submitting GPU work", e));
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait_idle()?;
        let mapped = rx
            .await
            .map_err(|_| Error::Gpu("the readback was cancelled (device lost?)".into()))?;
        self.check()?;
        mapped.map_err(|e| gpu_err("reading results back", e))?;
        let out = staging
            .get_mapped_range(..)
            .map_err(|e| gpu_err("reading results back", e))?[..len as usize]
            .to_vec();
        staging.unmap();
        Ok(out)
    }

    pub(super) fn pipe(&self, k: Kernel) -> &wgpu::ComputePipeline {
        self.pipes.get(k)
    }
}
