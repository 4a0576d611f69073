//! The GPU engine: a wgpu device, the compute pipelines of `shaders/*.wgsl` (created once), and
//! a recorder that turns kernel calls into one command buffer.
//!
//! Native (Vulkan / Metal / DX12) and wasm32 (WebGPU) share every line here: the only waits are
//! `map_async` callbacks delivered through a oneshot channel, which native drives with
//! `device.poll` (a no-op wait in the browser, where the event loop delivers them).
//!
//! Weights live on the GPU as f16 pairs packed in `u32` (f32 optional); activations and every
//! accumulation are f32. No optional feature is required. Used when the adapter has them:
//! `timestamp-query` (the benchmark's per-kernel times), `subgroups` (the reductions of layer
//! norm and softmax, `shaders/reduce_subgroups.wgsl`; natively only, as wgpu 30 does not offer
//! it on the web) and `shader-f16` (the tiled matmul's W tile holds the f16 weights as f16 in
//! workgroup memory, `shaders/wtile_f16.wgsl`: half the tile's memory and load bytes, the same
//! f32 products bit for bit). The kernels for CPU adapters (`matmul_direct.wgsl`) keep reading
//! packed pairs with `unpack2x16float`: reading them as `vec4<f16>` measured 14-20% slower on
//! llvmpipe (257x1280x5120: 9.5-9.6 against 10.9-11.2 GFLOP/s, 16 x 8 blocks, identical output).

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(any(test, feature = "selftest"))]
pub mod selftest;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

pub(crate) use crate::models::clip::gpu::GpuModel;
pub(crate) use crate::models::clip::gpu_weights::{GpuLayerNorm, GpuLinear};

use crate::error::{Error, Result};
use crate::models::clip::config::Activation;
use std::sync::{Arc, Mutex};

/// Load-time choices of the GPU engine.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GpuOptions {
    /// Keep matrix weights in f32 instead of packed f16 (twice the memory; bit-faithful to f32
    /// checkpoints).
    pub f32_weights: bool,
}

/// The compute pipelines, one per WGSL entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    MatmulF16,
    MatmulF32,
    MatmulF16Rows16,
    MatmulF32Rows16,
    MatmulDirectF16,
    MatmulDirectF32,
    LayerNorm,
    AttnScores,
    AttnSoftmax,
    AttnContext,
    AttnScoresDirect,
    AttnContextDirect,
    Im2col,
    VisionEmbed,
    TextEmbedF16,
    TextEmbedF32,
    GatherRows,
}

const MATMUL_WGSL: &str = include_str!("../../shaders/matmul.wgsl");
const TILE8X8_WGSL: &str = include_str!("../../shaders/tile8x8.wgsl");
const MATMUL_EPILOGUE_WGSL: &str = include_str!("../../shaders/matmul_epilogue.wgsl");
const WTILE_F16_WGSL: &str = include_str!("../../shaders/wtile_f16.wgsl");
const WTILE_F32_WGSL: &str = include_str!("../../shaders/wtile_f32.wgsl");
const MATMUL_DIRECT_WGSL: &str = include_str!("../../shaders/matmul_direct.wgsl");
const LAYERNORM_WGSL: &str = include_str!("../../shaders/layernorm.wgsl");
const REDUCE_WGSL: &str = include_str!("../../shaders/reduce.wgsl");
const REDUCE_SUBGROUPS_WGSL: &str = include_str!("../../shaders/reduce_subgroups.wgsl");
const ATTENTION_WGSL: &str = include_str!("../../shaders/attention.wgsl");
const EMBED_WGSL: &str = include_str!("../../shaders/embed.wgsl");
const POOL_WGSL: &str = include_str!("../../shaders/pool.wgsl");

/// (kernel, shader file, source, entry point), in `Kernel` order.
const KERNELS: [(Kernel, &str, &str, &str); 17] = [
    (Kernel::MatmulF16, "matmul.wgsl", MATMUL_WGSL, "matmul_f16"),
    (Kernel::MatmulF32, "matmul.wgsl", MATMUL_WGSL, "matmul_f32"),
    (
        Kernel::MatmulF16Rows16,
        "matmul.wgsl",
        MATMUL_WGSL,
        "matmul_f16_rows16",
    ),
    (
        Kernel::MatmulF32Rows16,
        "matmul.wgsl",
        MATMUL_WGSL,
        "matmul_f32_rows16",
    ),
    (
        Kernel::MatmulDirectF16,
        "matmul_direct.wgsl",
        MATMUL_DIRECT_WGSL,
        "matmul_direct_f16",
    ),
    (
        Kernel::MatmulDirectF32,
        "matmul_direct.wgsl",
        MATMUL_DIRECT_WGSL,
        "matmul_direct_f32",
    ),
    (
        Kernel::LayerNorm,
        "layernorm.wgsl",
        LAYERNORM_WGSL,
        "layer_norm",
    ),
    (
        Kernel::AttnScores,
        "attention.wgsl",
        ATTENTION_WGSL,
        "attn_scores",
    ),
    (
        Kernel::AttnSoftmax,
        "attention.wgsl",
        ATTENTION_WGSL,
        "attn_softmax",
    ),
    (
        Kernel::AttnContext,
        "attention.wgsl",
        ATTENTION_WGSL,
        "attn_context",
    ),
    (
        Kernel::AttnScoresDirect,
        "attention.wgsl",
        ATTENTION_WGSL,
        "attn_scores_direct",
    ),
    (
        Kernel::AttnContextDirect,
        "attention.wgsl",
        ATTENTION_WGSL,
        "attn_context_direct",
    ),
    (Kernel::Im2col, "embed.wgsl", EMBED_WGSL, "im2col"),
    (
        Kernel::VisionEmbed,
        "embed.wgsl",
        EMBED_WGSL,
        "vision_embed",
    ),
    (
        Kernel::TextEmbedF16,
        "embed.wgsl",
        EMBED_WGSL,
        "text_embed_f16",
    ),
    (
        Kernel::TextEmbedF32,
        "embed.wgsl",
        EMBED_WGSL,
        "text_embed_f32",
    ),
    (Kernel::GatherRows, "pool.wgsl", POOL_WGSL, "gather_rows"),
];

/// The matmul tile edge (shaders/matmul.wgsl): one workgroup per 64 x 64 block of y.
const MATMUL_TILE: usize = 64;
/// Rows of the remainder kernels' tiles (`matmul_*_rows16`).
const MATMUL_ROWS16: usize = 16;
/// Rows of a `matmul_direct_*` strip.
const MATMUL_DIRECT_ROWS: usize = 16;

/// What the matmul does after the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Epilogue {
    /// y = x W^T + b
    Store,
    /// y = act(x W^T + b)
    Act(Activation),
    /// y = y + x W^T + b (the residual stream)
    Residual,
}

/// A wgpu device with the pipelines of every kernel.
pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    info: String,
    pipes: Vec<wgpu::ComputePipeline>,
    /// Set by the device-lost callback; every later call fails with this message.
    lost: Arc<Mutex<Option<String>>>,
    /// The first validation / out-of-memory error no error scope caught.
    uncaptured: Arc<Mutex<Option<String>>>,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the benchmark is native-only
    /// Timestamp period in ns per tick, where the adapter has `timestamp-query`.
    pub timestamp_period: Option<f32>,
    /// A 16-byte buffer bound where a kernel reads nothing (a matmul without bias).
    dummy: wgpu::Buffer,
    /// Use `shaders/matmul_direct.wgsl` where K allows: adapters that run on the CPU.
    direct_matmul: bool,
    /// The optional features the kernels were compiled for.
    features: ShaderFeatures,
}

fn gpu_err(what: &str, e: impl std::fmt::Display) -> Error {
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
        // The barrier-free kernel for CPU adapters (lavapipe, SwiftShader; in the browser a
        // fallback adapter reports Cpu); SCISCORE_MATMUL=tiled|direct overrides (benchmarks).
        let direct_matmul = match std::env::var("SCISCORE_MATMUL").as_deref() {
            Ok("tiled") => false,
            Ok("direct") => true,
            _ => i.device_type == wgpu::DeviceType::Cpu,
        };
        let gpu = Gpu {
            device,
            queue,
            limits,
            info,
            pipes,
            lost,
            uncaptured,
            timestamp_period,
            dummy,
            direct_matmul,
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
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn subgroups(&self) -> bool {
        self.features.subgroups
    }

    /// Whether the tiled matmul holds f16 weight tiles as f16 (`shaders/wtile_f16.wgsl`).
    #[cfg_attr(not(test), allow(dead_code))]
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
        if data.len() % 4 == 0 {
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

    fn pipe(&self, k: Kernel) -> &wgpu::ComputePipeline {
        &self.pipes[k as usize]
    }
}

/// Optional device features that change the WGSL the kernels are compiled from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaderFeatures {
    /// `subgroups`: reductions by `shaders/reduce_subgroups.wgsl` instead of `reduce.wgsl`.
    pub subgroups: bool,
    /// `shader-f16`: the tiled matmul's f16 W tiles as f16 (`shaders/wtile_f16.wgsl` instead
    /// of `wtile_f32.wgsl`).
    pub shader_f16: bool,
}

impl ShaderFeatures {
    fn describe(self) -> String {
        let mut s = String::new();
        if self.subgroups {
            s.push_str(", subgroups");
        }
        if self.shader_f16 {
            s.push_str(", shader-f16");
        }
        s
    }
}

/// The WGSL of a kernel file as compiled: the parts it uses go in front of it. A file that names
/// `WTile16` gets `shaders/wtile_f16.wgsl` on a device with `shader-f16` and `wtile_f32.wgsl`
/// otherwise (first: it may start with `enable f16;`); one that calls `tile_product(` gets
/// `tile8x8.wgsl`; one that calls `store4(` gets `matmul_epilogue.wgsl`; one that calls
/// `reduce_sum` / `reduce_max` gets `reduce_subgroups.wgsl` on a device with subgroups and
/// `reduce.wgsl` (workgroup memory only) otherwise. Returns (label naming the parts, source);
/// line numbers in messages count from the first part.
fn module_source(file: &str, src: &str, f: ShaderFeatures) -> (String, String) {
    let mut parts: Vec<(&str, &str)> = Vec::new();
    if src.contains("WTile16") {
        parts.push(if f.shader_f16 {
            ("wtile_f16.wgsl", WTILE_F16_WGSL)
        } else {
            ("wtile_f32.wgsl", WTILE_F32_WGSL)
        });
    }
    if src.contains("tile_product(") {
        parts.push(("tile8x8.wgsl", TILE8X8_WGSL));
    }
    if src.contains("store4(") {
        parts.push(("matmul_epilogue.wgsl", MATMUL_EPILOGUE_WGSL));
    }
    if src.contains("reduce_sum(") || src.contains("reduce_max(") {
        parts.push(if f.subgroups {
            ("reduce_subgroups.wgsl", REDUCE_SUBGROUPS_WGSL)
        } else {
            ("reduce.wgsl", REDUCE_WGSL)
        });
    }
    parts.push((file, src));
    let label = parts.iter().map(|p| p.0).collect::<Vec<_>>().join(" + ");
    let source = parts.iter().map(|p| p.1).collect::<Vec<_>>().join("\n");
    (label, source)
}

/// Every kernel module as the engine compiles it on a device with features `f`: (label naming
/// its `shaders/` files, WGSL). For validators (tests/shaders.rs).
pub fn shader_modules(f: ShaderFeatures) -> Vec<(String, String)> {
    let mut files: Vec<(&str, &str)> = Vec::new();
    for &(_, file, src, _) in KERNELS.iter() {
        if !files.iter().any(|(f, _)| *f == file) {
            files.push((file, src));
        }
    }
    files
        .into_iter()
        .map(|(file, src)| module_source(file, src, f))
        .collect()
}

/// Compiles every kernel; a shader or pipeline error becomes `Error::Shader` with the file and
/// the compiler's message (naga natively, Tint in the browser).
async fn compile_all(
    device: &wgpu::Device,
    features: ShaderFeatures,
    progress: &dyn Fn(usize, usize),
) -> Result<Vec<wgpu::ComputePipeline>> {
    let mut modules: Vec<(&str, wgpu::ShaderModule)> = Vec::new();
    let mut pipes = Vec::with_capacity(KERNELS.len());
    progress(0, KERNELS.len());
    for (i, &(k, file, src, entry)) in KERNELS.iter().enumerate() {
        debug_assert_eq!(k as usize, i);
        if !modules.iter().any(|(f, _)| *f == file) {
            let (label, source) = module_source(file, src, features);
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let m = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let info = m.get_compilation_info().await;
            let errors: Vec<String> = info
                .messages
                .iter()
                .filter(|m| m.message_type == wgpu::CompilationMessageType::Error)
                .map(|m| match &m.location {
                    Some(l) => format!("{}:{}: {}", l.line_number, l.line_position, m.message),
                    None => m.message.clone(),
                })
                .collect();
            let scoped = scope.pop().await;
            if !errors.is_empty() || scoped.is_some() {
                let mut message = errors.join("; ");
                if let Some(e) = scoped {
                    message = if message.is_empty() {
                        e.to_string()
                    } else {
                        format!("{message}; {e}")
                    };
                }
                return Err(Error::Shader { label, message });
            }
            modules.push((file, m));
        }
        let module = &modules
            .iter()
            .find(|(f, _)| *f == file)
            .expect("compiled above")
            .1;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(Error::Shader {
                label: format!("{file} ({entry})"),
                message: e.to_string(),
            });
        }
        pipes.push(p);
        progress(pipes.len(), KERNELS.len());
    }
    Ok(pipes)
}

/// One recorded kernel call.
struct Op {
    kernel: Kernel,
    label: &'static str,
    bufs: Vec<(u32, wgpu::Buffer)>,
    params_at: u64,
    params_len: u64,
    groups: [u32; 3],
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the benchmark is native-only
    /// Multiply-adds x 2 of the call (0 for element-wise kernels): the benchmark's GFLOP/s.
    flops: f64,
}

/// Kernel calls recorded for one submission; uniforms of all calls share one buffer.
pub(crate) struct Pass<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    params: Vec<u8>,
    direct_matmul: bool,
}

/// `[x, y, 1]` workgroups covering `groups` in a grid whose x is at most 65535.
fn grid(groups: usize) -> [u32; 3] {
    let groups = groups.max(1);
    let x = groups.min(65535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

fn u(v: usize) -> u32 {
    v as u32
}

impl<'g> Pass<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        Pass {
            gpu,
            ops: Vec::new(),
            params: Vec::new(),
            direct_matmul: gpu.direct_matmul,
        }
    }

    /// Chooses the matmul family for this pass (the tests run both on every adapter).
    #[cfg(any(test, feature = "selftest"))]
    pub fn set_direct_matmul(&mut self, on: bool) {
        self.direct_matmul = on;
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the benchmark is native-only
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the benchmark is native-only
    /// (label, FLOPs) of the recorded calls, in order (the benchmark's per-kernel rows).
    pub fn ops(&self) -> Vec<(&'static str, f64)> {
        self.ops.iter().map(|o| (o.label, o.flops)).collect()
    }

    fn call(
        &mut self,
        kernel: Kernel,
        label: &'static str,
        params: &[u32],
        bufs: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) {
        self.call_counted(kernel, label, params, bufs, groups, 0.0)
    }

    fn call_counted(
        &mut self,
        kernel: Kernel,
        label: &'static str,
        params: &[u32],
        bufs: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
        flops: f64,
    ) {
        let align = self.gpu.limits.min_uniform_buffer_offset_alignment.max(16) as usize;
        let at = self.params.len().div_ceil(align) * align;
        self.params.resize(at, 0);
        self.params.extend_from_slice(bytemuck::cast_slice(params));
        self.ops.push(Op {
            kernel,
            label,
            bufs: bufs.iter().map(|&(i, b)| (i, b.clone())).collect(),
            params_at: at as u64,
            params_len: (params.len() * 4) as u64,
            groups,
            flops,
        });
    }

    /// y (M, N) = epilogue(x (M, K) . W^T + b). On CPU adapters, when K allows, 16-row strips
    /// of `matmul_direct.wgsl`; otherwise matmul.wgsl's 64 x 64 tiles, and 16 x 64 tiles for
    /// the last M % 64 rows when there are at most 48 of them: zero rows computed in a tile
    /// cost as much as real ones (77 rows: 64 + 16 computed instead of 128).
    pub fn linear(
        &mut self,
        label: &'static str,
        l: &GpuLinear,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        m: usize,
        epi: Epilogue,
    ) {
        let (act, acc) = match epi {
            Epilogue::Store => (0, 0),
            Epilogue::Act(Activation::Gelu) => (1, 0),
            Epilogue::Act(Activation::QuickGelu) => (2, 0),
            Epilogue::Residual => (0, 1),
        };
        let bias = l.bias.as_ref().unwrap_or(&self.gpu.dummy);
        let w_binding = if l.f16 { 2 } else { 3 };
        let cols = u(l.out_features.div_ceil(MATMUL_TILE));
        let params = |row0: usize| {
            [
                u(m),
                u(l.out_features),
                u(l.in_features),
                u(l.ldw),
                l.bias.is_some() as u32,
                act,
                acc,
                u(row0),
            ]
        };
        let bufs = [(1, x), (w_binding, &l.weight), (4, bias), (5, y)];
        let flops = |rows: usize| 2.0 * rows as f64 * l.out_features as f64 * l.in_features as f64;
        let direct_k = if l.f16 { 8 } else { 4 };
        if self.direct_matmul && l.in_features % direct_k == 0 {
            let kernel = if l.f16 {
                Kernel::MatmulDirectF16
            } else {
                Kernel::MatmulDirectF32
            };
            let groups = [cols, u(m.div_ceil(MATMUL_DIRECT_ROWS)), 1];
            self.call_counted(kernel, label, &params(0), &bufs, groups, flops(m));
            return;
        }
        let (big, small) = if l.f16 {
            (Kernel::MatmulF16, Kernel::MatmulF16Rows16)
        } else {
            (Kernel::MatmulF32, Kernel::MatmulF32Rows16)
        };
        let rem = m % MATMUL_TILE;
        let split = if rem > 0 && rem <= 48 { m - rem } else { m };
        for (kernel, row0, rows, tile) in [
            (big, 0, split, MATMUL_TILE),
            (small, split, m - split, MATMUL_ROWS16),
        ] {
            if rows > 0 {
                let groups = [cols, u(rows.div_ceil(tile)), 1];
                self.call_counted(kernel, label, &params(row0), &bufs, groups, flops(rows));
            }
        }
    }

    /// y (R, D) = LayerNorm(x (R, D))
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &mut self,
        label: &'static str,
        ln: &GpuLayerNorm,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        rows: usize,
        d: usize,
        eps: f32,
    ) {
        let params = [u(rows), u(d), eps.to_bits(), 0];
        self.call(
            Kernel::LayerNorm,
            label,
            &params,
            &[(1, x), (2, &ln.weight), (3, &ln.bias), (4, y)],
            [u(rows), 1, 1],
        );
    }

    /// ctx (B*T, D) = attention(qkv (B*T, 3D)), H heads of width Dh, through the scores
    /// (B*H, T, T); the products in 64 x 64 tiles, or on CPU adapters (`set_direct_matmul`) in
    /// the barrier-free 16 x 32 blocks of `attn_*_direct`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        qkv: &wgpu::Buffer,
        scores: &wgpu::Buffer,
        ctx: &wgpu::Buffer,
        b: usize,
        t: usize,
        d: usize,
        heads: usize,
        causal: bool,
    ) {
        let dh = d / heads;
        let scale = (dh as f32).powf(-0.5);
        let params = [
            u(t),
            u(d),
            u(dh),
            u(heads),
            causal as u32,
            scale.to_bits(),
            0,
            0,
        ];
        // q k^T and p v: 2 T^2 D each per sequence (causal counted in full, as bench.rs does).
        let flops = 2.0 * (b * t * t * d) as f64;
        let z = u(b * heads);
        // CPU adapters: the barrier-free 16 x 32 blocks; GPUs: 64 x 64 tiles.
        let (scores_k, context_k, rows, cols) = if self.direct_matmul {
            (Kernel::AttnScoresDirect, Kernel::AttnContextDirect, 16, 32)
        } else {
            (
                Kernel::AttnScores,
                Kernel::AttnContext,
                MATMUL_TILE,
                MATMUL_TILE,
            )
        };
        let row_groups = u(t.div_ceil(rows));
        self.call_counted(
            scores_k,
            "attn_scores",
            &params,
            &[(1, qkv), (2, scores)],
            [u(t.div_ceil(cols)), row_groups, z],
            flops,
        );
        self.call(
            Kernel::AttnSoftmax,
            "attn_softmax",
            &params,
            &[(2, scores)],
            [u(t), z, 1],
        );
        self.call_counted(
            context_k,
            "attn_context",
            &params,
            &[(1, qkv), (3, scores), (4, ctx)],
            [u(dh.div_ceil(cols)), row_groups, z],
            flops,
        );
    }

    fn embed_params(
        total: usize,
        t: usize,
        d: usize,
        s: usize,
        patch: usize,
        ldr: usize,
    ) -> [u32; 8] {
        let grid = s.checked_div(patch).unwrap_or(0);
        [u(total), u(t), u(d), u(s), u(patch), u(grid), u(ldr), 0]
    }

    /// patches (B*N, 3 p p) = im2col(pixels (B, 3, S, S))
    pub fn im2col(
        &mut self,
        pixels: &wgpu::Buffer,
        patches: &wgpu::Buffer,
        b: usize,
        s: usize,
        patch: usize,
    ) {
        let g = s / patch;
        let total = b * g * g * 3 * patch * patch;
        let params = Self::embed_params(total, 0, 0, s, patch, 0);
        self.call(
            Kernel::Im2col,
            "im2col",
            &params,
            &[(1, pixels), (2, patches)],
            grid(total.div_ceil(256)),
        );
    }

    /// x (B*T, D) = [class; patch_embeds (B*N, D)] + positions
    #[allow(clippy::too_many_arguments)]
    pub fn vision_embed(
        &mut self,
        pe: &wgpu::Buffer,
        class: &wgpu::Buffer,
        pos: &wgpu::Buffer,
        x: &wgpu::Buffer,
        b: usize,
        t: usize,
        d: usize,
    ) {
        let total = b * t * d;
        let params = Self::embed_params(total, t, d, 0, 0, 0);
        self.call(
            Kernel::VisionEmbed,
            "vision_embed",
            &params,
            &[(3, pe), (4, class), (5, pos), (6, x)],
            grid(total.div_ceil(256)),
        );
    }

    /// x (B*T, D) = rows (B*T, D as f16 pairs with stride ldr, or f32) + positions
    #[allow(clippy::too_many_arguments)]
    pub fn text_embed(
        &mut self,
        rows: &wgpu::Buffer,
        f16: bool,
        ldr: usize,
        pos: &wgpu::Buffer,
        x: &wgpu::Buffer,
        b: usize,
        t: usize,
        d: usize,
    ) {
        let total = b * t * d;
        let params = Self::embed_params(total, t, d, 0, 0, ldr);
        let (k, slot) = if f16 {
            (Kernel::TextEmbedF16, 7)
        } else {
            (Kernel::TextEmbedF32, 8)
        };
        self.call(
            k,
            "text_embed",
            &params,
            &[(5, pos), (6, x), (slot, rows)],
            grid(total.div_ceil(256)),
        );
    }

    /// out (B, D) = x[index[b]]
    pub fn gather_rows(
        &mut self,
        x: &wgpu::Buffer,
        index: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        d: usize,
    ) {
        let params = [u(rows), u(d), 0, 0];
        self.call(
            Kernel::GatherRows,
            "pool",
            &params,
            &[(1, x), (2, index), (3, out)],
            [u((rows * d).div_ceil(256)), 1, 1],
        );
    }

    /// Encodes every call into `encoder` as one compute pass.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.encode_range(encoder, 0..self.ops.len(), None)
    }

    /// Encodes calls `range`: one compute pass, or with `timestamps` one pass per call writing
    /// begin/end ticks at 2j, 2j + 1 (j counted from the start of the range).
    pub fn encode_range(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        range: std::ops::Range<usize>,
        timestamps: Option<&wgpu::QuerySet>,
    ) -> Result<()> {
        let ops = &self.ops[range];
        if ops.is_empty() {
            return Ok(());
        }
        let ubuf = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: (self.params.len() as u64).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.gpu.write(&ubuf, 0, &self.params);
        let groups: Vec<wgpu::BindGroup> = ops
            .iter()
            .map(|op| {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &ubuf,
                        offset: op.params_at,
                        size: std::num::NonZeroU64::new(op.params_len),
                    }),
                }];
                entries.extend(op.bufs.iter().map(|(i, b)| wgpu::BindGroupEntry {
                    binding: *i,
                    resource: b.as_entire_binding(),
                }));
                self.gpu
                    .device
                    .create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(op.label),
                        layout: &self.gpu.pipe(op.kernel).get_bind_group_layout(0),
                        entries: &entries,
                    })
            })
            .collect();
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        for op in ops {
            if op.groups.iter().any(|&g| g > max) {
                return Err(Error::Limits {
                    what: format!("dispatching `{}` ({:?} workgroups)", op.label, op.groups),
                    needed: op.groups.iter().copied().max().unwrap_or(0) as u64,
                    available: max as u64,
                });
            }
        }
        match timestamps {
            None => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes: None,
                });
                for (op, bg) in ops.iter().zip(&groups) {
                    pass.set_pipeline(self.gpu.pipe(op.kernel));
                    pass.set_bind_group(0, bg, &[]);
                    pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
                }
            }
            Some(qs) => {
                for (i, (op, bg)) in ops.iter().zip(&groups).enumerate() {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(op.label),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: qs,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    pass.set_pipeline(self.gpu.pipe(op.kernel));
                    pass.set_bind_group(0, bg, &[]);
                    pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
                }
            }
        }
        Ok(())
    }
}
