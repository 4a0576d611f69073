//! The kernel table: every compute pipeline, the `shaders/` file and entry point it comes from,
//! and the WGSL composition of each file with the shared parts it uses.

use crate::error::{Error, Result};

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

pub(super) const MATMUL_WGSL: &str = include_str!("../../shaders/matmul.wgsl");
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
    pub(super) fn describe(self) -> String {
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
pub(super) fn module_source(file: &str, src: &str, f: ShaderFeatures) -> (String, String) {
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
pub(super) async fn compile_all(
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
