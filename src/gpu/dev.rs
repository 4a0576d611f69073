//! Kernel-tuning harnesses, not checks (ignored tests, run by hand on a device).

use super::kernels::{module_source, parts_of, ShaderFeatures, MATMUL};
use super::GpuLinear;
use crate::stats::max_abs;
use crate::testing::devices::gpu;
use crate::testing::{rand, upload};

/// A comma-separated list of numbers from the environment, or `default`.
fn env_list(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Kernel tuning harness (not a check): times `shaders/matmul.wgsl` (or the file named by
/// MATMUL_BASE) against the WGSL file named by MATMUL_VARIANT (same bindings; entry point
/// MATMUL_ENTRY, default `matmul_f16` / `matmul_f32`), interleaved so that machine load hits
/// both alike, and reports the largest output difference. MATMUL_SHAPE=m,k,n; the y tile each
/// workgroup covers, cols,rows: MATMUL_BASE_TILE and MATMUL_VARIANT_TILE (default 64,64). Both
/// files get their parts as the engine composes them (`module_source`) for the device's
/// features, the baseline for core WebGPU instead with MATMUL_BASE_FEATURES=core (so the two
/// W-tile types of matmul.wgsl run side by side with MATMUL_VARIANT=shaders/matmul.wgsl).
/// A file gets the parts of the engine's kernel file of the same name (`matmul_direct.wgsl`),
/// matmul.wgsl's under any other name.
/// `MATMUL_VARIANT=/tmp/v.wgsl cargo test --lib matmul_variant -- --ignored --nocapture`
#[test]
#[ignore]
fn matmul_variant_timing() {
    let Some(g) = gpu() else { return };
    let g = &g.0;
    let Ok(path) = std::env::var("MATMUL_VARIANT") else {
        return;
    };
    let file_name = |p: &str| {
        std::path::Path::new(p)
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    };
    let variant_src = std::fs::read_to_string(&path).unwrap();
    let variant = module_source(&path, &variant_src, parts_of(&file_name(&path)), g.features).1;
    let shape = env_list("MATMUL_SHAPE", "257,1280,1280");
    let (m, k, n) = (shape[0], shape[1], shape[2]);
    let f16 = std::env::var("MATMUL_F32").is_err();
    let tile = env_list("MATMUL_VARIANT_TILE", "64,64");
    let entry = std::env::var("MATMUL_ENTRY")
        .unwrap_or_else(|_| if f16 { "matmul_f16" } else { "matmul_f32" }.into());
    let (base, base_parts) = match std::env::var("MATMUL_BASE") {
        Ok(p) => (
            std::fs::read_to_string(&p).unwrap(),
            parts_of(&file_name(&p)),
        ),
        Err(_) => (MATMUL.wgsl.to_string(), MATMUL.parts),
    };
    let base_features = match std::env::var("MATMUL_BASE_FEATURES").as_deref() {
        Ok("core") => ShaderFeatures::default(),
        _ => g.features,
    };
    let base = module_source("baseline", &base, base_parts, base_features).1;
    let base_tile = env_list("MATMUL_BASE_TILE", "64,64");
    let make = |src: &str| {
        let module = g.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        g.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some(&entry),
                compilation_options: Default::default(),
                cache: None,
            })
    };
    let pipes = [make(&base), make(&variant)];
    let x = rand(m * k, 1, 1.0);
    let w = rand(n * k, 2, 1.0);
    let b = rand(n, 3, 1.0);
    let lin = GpuLinear::from_f32(g, &w, Some(&b), n, k, f16).unwrap();
    let xb = upload(g, &x);
    let ys = [
        g.storage("y0", (m * n * 4) as u64).unwrap(),
        g.storage("y1", (m * n * 4) as u64).unwrap(),
    ];
    let params = [m as u32, n as u32, k as u32, lin.ldw as u32, 1, 0, 0, 0];
    let ub = g.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 32,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    g.write(&ub, 0, bytemuck::cast_slice(&params));
    let mut times = [Vec::new(), Vec::new()];
    let mut outs = Vec::new();
    for it in 0..4 {
        for v in 0..2 {
            let bg = g.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipes[v].get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: ub.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: xb.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: if f16 { 2 } else { 3 },
                        resource: lin.weight.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: lin.bias.as_ref().unwrap().as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 5,
                        resource: ys[v].as_entire_binding(),
                    },
                ],
            });
            let mut enc = g.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipes[v]);
                pass.set_bind_group(0, &bg, &[]);
                let (tn, tm) = if v == 0 {
                    (base_tile[0], base_tile[1])
                } else {
                    (tile[0], tile[1])
                };
                pass.dispatch_workgroups(n.div_ceil(tn) as u32, m.div_ceil(tm) as u32, 1);
            }
            let t0 = std::time::Instant::now();
            g.queue.submit([enc.finish()]);
            g.wait_idle().unwrap();
            if it > 0 {
                times[v].push(t0.elapsed().as_secs_f64() * 1e3);
            }
            if it == 3 {
                outs.push(
                    pollster::block_on(g.submit_and_read(
                        g.device.create_command_encoder(&Default::default()),
                        &ys[v],
                        m * n,
                    ))
                    .unwrap(),
                );
            }
        }
    }
    let diff = max_abs(&outs[0], &outs[1]).0;
    let gf = 2.0 * (m * n * k) as f64 / 1e6;
    for (v, name) in ["baseline", "variant"].iter().enumerate() {
        let best = times[v].iter().cloned().fold(f64::MAX, f64::min);
        eprintln!(
            "{name:>8} {m}x{k}x{n} f16={f16}: best {best:.1} ms, {:.2} GFLOP/s, all {:?}",
            gf / best,
            times[v]
        );
    }
    eprintln!("max |baseline - variant| = {diff:.3e}");
}
