//! The kernel table: every compute pipeline, the `shaders/` file and entry point it comes from,
//! and the WGSL composition of each file with the shared parts it uses.

use crate::error::{Error, Result};
use std::collections::HashMap;

/// The compute pipelines, one per WGSL entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Which kernels compute the matrix products (linear layers, attention's two products): one
/// family per device, chosen when it opens ([`KernelFamily::for_adapter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernelFamily {
    /// 64 x 64 tiles through workgroup memory (`matmul.wgsl`, `attn_scores` / `attn_context`):
    /// the design for GPUs.
    Tiled,
    /// For adapters that run on the CPU (lavapipe, SwiftShader; in the browser a fallback
    /// adapter): barrier-free register blocks read straight from memory (`matmul_direct.wgsl`,
    /// `attn_*_direct`), since there barriers and workgroup memory cost more than the CPU's
    /// caches save.
    CpuAdapter,
}

impl KernelFamily {
    /// `CpuAdapter` on an adapter that runs on the CPU, `Tiled` otherwise;
    /// SCISCORE_MATMUL=tiled|direct overrides (benchmarks, tests).
    pub(super) fn for_adapter(device_type: wgpu::DeviceType) -> KernelFamily {
        match std::env::var("SCISCORE_MATMUL").as_deref() {
            Ok("tiled") => KernelFamily::Tiled,
            Ok("direct") => KernelFamily::CpuAdapter,
            _ if device_type == wgpu::DeviceType::Cpu => KernelFamily::CpuAdapter,
            _ => KernelFamily::Tiled,
        }
    }
}

/// A shared WGSL file that kernel files are compiled with, put in front of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The f16 kernels' W-tile type `WTile16`: `wtile_f16.wgsl` on a device with `shader-f16`,
    /// `wtile_f32.wgsl` otherwise. First in a module: it may start with `enable f16;`.
    WTile16,
    /// `tile8x8.wgsl`: the 8 x 8 register-block tile product, `tile_product`.
    Tile8x8,
    /// `matmul_epilogue.wgsl`: the matmul's Params, activations, bias and residual, `store4`.
    MatmulEpilogue,
    /// `reduce_sum` / `reduce_max`: `reduce_subgroups.wgsl` on a device with `subgroups`,
    /// `reduce.wgsl` (workgroup memory only) otherwise.
    Reduce,
}

impl Part {
    /// (file name, WGSL) of this part on a device with features `f`.
    fn wgsl(self, f: ShaderFeatures) -> (&'static str, &'static str) {
        match self {
            Part::WTile16 if f.shader_f16 => (
                "wtile_f16.wgsl",
                include_str!("../../shaders/wtile_f16.wgsl"),
            ),
            Part::WTile16 => (
                "wtile_f32.wgsl",
                include_str!("../../shaders/wtile_f32.wgsl"),
            ),
            Part::Tile8x8 => ("tile8x8.wgsl", include_str!("../../shaders/tile8x8.wgsl")),
            Part::MatmulEpilogue => (
                "matmul_epilogue.wgsl",
                include_str!("../../shaders/matmul_epilogue.wgsl"),
            ),
            Part::Reduce if f.subgroups => (
                "reduce_subgroups.wgsl",
                include_str!("../../shaders/reduce_subgroups.wgsl"),
            ),
            Part::Reduce => ("reduce.wgsl", include_str!("../../shaders/reduce.wgsl")),
        }
    }
}

/// A kernel file of `shaders/` and the parts put in front of it, in this order.
pub(super) struct KernelFile {
    pub name: &'static str,
    pub wgsl: &'static str,
    pub parts: &'static [Part],
}

pub(super) const MATMUL: KernelFile = KernelFile {
    name: "matmul.wgsl",
    wgsl: include_str!("../../shaders/matmul.wgsl"),
    parts: &[Part::WTile16, Part::Tile8x8, Part::MatmulEpilogue],
};
const MATMUL_DIRECT: KernelFile = KernelFile {
    name: "matmul_direct.wgsl",
    wgsl: include_str!("../../shaders/matmul_direct.wgsl"),
    parts: &[Part::MatmulEpilogue],
};
const LAYERNORM: KernelFile = KernelFile {
    name: "layernorm.wgsl",
    wgsl: include_str!("../../shaders/layernorm.wgsl"),
    parts: &[Part::Reduce],
};
const ATTENTION: KernelFile = KernelFile {
    name: "attention.wgsl",
    wgsl: include_str!("../../shaders/attention.wgsl"),
    parts: &[Part::Tile8x8, Part::Reduce],
};
const EMBED: KernelFile = KernelFile {
    name: "embed.wgsl",
    wgsl: include_str!("../../shaders/embed.wgsl"),
    parts: &[],
};
const POOL: KernelFile = KernelFile {
    name: "pool.wgsl",
    wgsl: include_str!("../../shaders/pool.wgsl"),
    parts: &[],
};

/// One compute pipeline: its kernel file and entry point.
struct KernelSpec {
    kernel: Kernel,
    file: &'static KernelFile,
    entry: &'static str,
}

const fn spec(kernel: Kernel, file: &'static KernelFile, entry: &'static str) -> KernelSpec {
    KernelSpec {
        kernel,
        file,
        entry,
    }
}

/// Every kernel the engine compiles (in any order; modules are compiled in order of first use).
const KERNELS: &[KernelSpec] = &[
    spec(Kernel::MatmulF16, &MATMUL, "matmul_f16"),
    spec(Kernel::MatmulF32, &MATMUL, "matmul_f32"),
    spec(Kernel::MatmulF16Rows16, &MATMUL, "matmul_f16_rows16"),
    spec(Kernel::MatmulF32Rows16, &MATMUL, "matmul_f32_rows16"),
    spec(Kernel::MatmulDirectF16, &MATMUL_DIRECT, "matmul_direct_f16"),
    spec(Kernel::MatmulDirectF32, &MATMUL_DIRECT, "matmul_direct_f32"),
    spec(Kernel::LayerNorm, &LAYERNORM, "layer_norm"),
    spec(Kernel::AttnScores, &ATTENTION, "attn_scores"),
    spec(Kernel::AttnSoftmax, &ATTENTION, "attn_softmax"),
    spec(Kernel::AttnContext, &ATTENTION, "attn_context"),
    spec(Kernel::AttnScoresDirect, &ATTENTION, "attn_scores_direct"),
    spec(Kernel::AttnContextDirect, &ATTENTION, "attn_context_direct"),
    spec(Kernel::Im2col, &EMBED, "im2col"),
    spec(Kernel::VisionEmbed, &EMBED, "vision_embed"),
    spec(Kernel::TextEmbedF16, &EMBED, "text_embed_f16"),
    spec(Kernel::TextEmbedF32, &EMBED, "text_embed_f32"),
    spec(Kernel::GatherRows, &POOL, "gather_rows"),
];

/// The compiled pipeline of every kernel.
pub(super) struct Pipelines(HashMap<Kernel, wgpu::ComputePipeline>);

impl Pipelines {
    pub(super) fn get(&self, k: Kernel) -> &wgpu::ComputePipeline {
        self.0
            .get(&k)
            .unwrap_or_else(|| panic!("{k:?} has no row in the kernel table (gpu/kernels.rs)"))
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

/// The WGSL of the kernel file `name` (source `src`) as compiled on a device with features `f`:
/// its `parts`, then the file. Returns (label naming the files, source); line numbers in messages
/// count from the first part.
pub(super) fn module_source(
    name: &str,
    src: &str,
    parts: &[Part],
    f: ShaderFeatures,
) -> (String, String) {
    let mut files: Vec<(&str, &str)> = parts.iter().map(|p| p.wgsl(f)).collect();
    files.push((name, src));
    let label = files.iter().map(|p| p.0).collect::<Vec<_>>().join(" + ");
    let source = files.iter().map(|p| p.1).collect::<Vec<_>>().join("\n");
    (label, source)
}

/// The kernel files in order of first use in the table, each once.
fn kernel_files() -> Vec<&'static KernelFile> {
    let mut files: Vec<&'static KernelFile> = Vec::new();
    for k in KERNELS {
        if !files.iter().any(|f| f.name == k.file.name) {
            files.push(k.file);
        }
    }
    files
}

/// The parts of the kernel file called `name` (e.g. `matmul_direct.wgsl`); matmul.wgsl's for a
/// name the table does not have (the kernel-tuning harness's variants).
#[cfg(test)]
pub(super) fn parts_of(name: &str) -> &'static [Part] {
    kernel_files()
        .into_iter()
        .find(|f| f.name == name)
        .map_or(MATMUL.parts, |f| f.parts)
}

/// Every kernel module as the engine compiles it on a device with features `f`: (label naming
/// its `shaders/` files, WGSL). For validators (tests/shaders.rs).
pub fn shader_modules(f: ShaderFeatures) -> Vec<(String, String)> {
    kernel_files()
        .into_iter()
        .map(|k| module_source(k.name, k.wgsl, k.parts, f))
        .collect()
}

/// Compiles every kernel; a shader or pipeline error becomes `Error::Shader` with the file and
/// the compiler's message (naga natively, Tint in the browser). `progress(compiled, total)` is
/// called before the first pipeline and after each.
pub(super) async fn compile_all(
    device: &wgpu::Device,
    features: ShaderFeatures,
    progress: &dyn Fn(usize, usize),
) -> Result<Pipelines> {
    let mut modules: Vec<(&str, wgpu::ShaderModule)> = Vec::new();
    let mut pipes = HashMap::with_capacity(KERNELS.len());
    progress(0, KERNELS.len());
    for k in KERNELS {
        let file = k.file.name;
        if !modules.iter().any(|(f, _)| *f == file) {
            let (label, source) = module_source(file, k.file.wgsl, k.file.parts, features);
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
        let entry = k.entry;
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
        pipes.insert(k.kernel, p);
        progress(pipes.len(), KERNELS.len());
    }
    Ok(Pipelines(pipes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_kernel_and_entry_point_once() {
        for (i, a) in KERNELS.iter().enumerate() {
            for b in &KERNELS[..i] {
                assert_ne!(a.kernel, b.kernel, "{:?} has two rows", a.kernel);
                assert_ne!(a.entry, b.entry, "entry point {} has two rows", a.entry);
            }
        }
    }
}
