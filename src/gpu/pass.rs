//! The recorder: kernel calls with their uniforms and bindings, encoded into one compute pass.

use super::buffers::{GpuLayerNorm, GpuLinear};
use super::device::Gpu;
use super::kernels::{Kernel, KernelFamily};
use crate::error::{Error, Result};

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
    /// y = gelu(x W^T + b), the exact (erf) GELU
    Gelu,
    /// y = quick_gelu(z) = z sigmoid(1.702 z), z = x W^T + b
    QuickGelu,
    /// y = y + x W^T + b (the residual stream)
    Residual,
}

/// One recorded kernel call.
struct Op {
    kernel: Kernel,
    label: &'static str,
    bufs: Vec<(u32, wgpu::Buffer)>,
    params_at: u64,
    params_len: u64,
    groups: [u32; 3],
    /// Multiply-adds x 2 of the call (0 for element-wise kernels): the native benchmark's
    /// GFLOP/s.
    #[cfg(not(target_arch = "wasm32"))]
    flops: f64,
}

/// Kernel calls recorded for one submission; uniforms of all calls share one buffer.
pub(crate) struct Pass<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    params: Vec<u8>,
    family: KernelFamily,
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
            family: gpu.family,
        }
    }

    /// A pass with the matrix products of `family` instead of the device's (the tests run both
    /// families on every adapter).
    #[cfg(any(test, feature = "selftest"))]
    pub fn with_family(gpu: &'g Gpu, family: KernelFamily) -> Self {
        Pass {
            family,
            ..Pass::new(gpu)
        }
    }

    /// Calls recorded.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// (label, FLOPs) of the recorded calls, in order (the native benchmark's per-kernel rows).
    #[cfg(not(target_arch = "wasm32"))]
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
            #[cfg(not(target_arch = "wasm32"))]
            flops,
        });
        // Only the native benchmark reads FLOP counts.
        #[cfg(target_arch = "wasm32")]
        let _ = flops;
    }

    /// y (M, N) = epilogue(x (M, K) . W^T + b). For CPU adapters, when K allows, 16-row strips
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
            Epilogue::Gelu => (1, 0),
            Epilogue::QuickGelu => (2, 0),
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
        if self.family == KernelFamily::CpuAdapter && l.in_features.is_multiple_of(direct_k) {
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
    /// (B*H, T, T); the products in 64 x 64 tiles, or for CPU adapters in the barrier-free
    /// 16 x 32 blocks of `attn_*_direct`.
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
        let (scores_k, context_k, rows, cols) = match self.family {
            KernelFamily::Tiled => (
                Kernel::AttnScores,
                Kernel::AttnContext,
                MATMUL_TILE,
                MATMUL_TILE,
            ),
            KernelFamily::CpuAdapter => {
                (Kernel::AttnScoresDirect, Kernel::AttnContextDirect, 16, 32)
            }
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
