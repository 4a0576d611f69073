//! `sciscore bench`: the forward pass timed on a random model of a named geometry, validated
//! against the CPU first on the GPU.

use super::common::{whole, BackendArg};
use anyhow::Result;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Geometry: clip-h (ViT-H/14, SciScore's), clip-b or tiny.
    #[arg(long, default_value = "clip-h")]
    random: String,
    /// Use only this many layers per tower (quick runs); at most the geometry's own.
    #[arg(long, value_parser = whole(1, 1024))]
    layers: Option<usize>,
    #[arg(long, default_value_t = 1, value_parser = whole(1, sciscore::batch::MAX_BATCH))]
    batch: usize,
    #[arg(long, default_value_t = 3, value_parser = whole(1, 1000))]
    iters: usize,
    /// Also time an occlusion map of G x G cells (G*G images; region maps).
    #[arg(long, value_name = "G", value_parser = whole(1, sciscore::explain::MAX_OCCLUSION_GRID))]
    occlusion: Option<usize>,
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendArg,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        random,
        layers,
        batch,
        iters,
        occlusion,
        backend,
        json,
    } = a;
    let (cfg, rows, gpu) = match backend {
        BackendArg::Cpu => {
            let (cfg, rows) = pollster::block_on(sciscore::bench::bench_cpu(
                &random, layers, batch, iters, occlusion,
            ))?;
            (cfg, rows, None)
        }
        BackendArg::Gpu => {
            let b = pollster::block_on(sciscore::bench::bench_gpu(
                &random, layers, batch, iters, false, occlusion,
            ))?;
            (b.cfg.clone(), b.rows.clone(), Some(b))
        }
    };
    let used = (cfg.text.tower.num_layers, cfg.vision.tower.num_layers);
    if let Some(l) = layers.filter(|&l| l > used.0 || l > used.1) {
        eprintln!(
            "note: --layers {l} is more than {random} has; used {} text and {} vision layers",
            used.0, used.1
        );
    }
    if json {
        let mut out = json!({"model": random, "layers": [cfg.text.tower.num_layers, cfg.vision.tower.num_layers], "rows": rows});
        if let Some(g) = &gpu {
            out["device"] = json!(g.device);
            out["timing"] = json!(g.timing);
            out["gpu_bytes"] = json!(g.gpu_bytes);
            out["validation"] = json!(g
                .validation
                .iter()
                .map(|(w, c)| json!({"what": w, "cosine": c}))
                .collect::<Vec<_>>());
        }
        println!("{out}");
    } else {
        match &gpu {
            None => println!(
                "random {random}: text {} layers x {}, vision {} layers x {}, {} threads",
                cfg.text.tower.num_layers,
                cfg.text.tower.hidden_size,
                cfg.vision.tower.num_layers,
                cfg.vision.tower.hidden_size,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            Some(g) => {
                println!(
                    "random {random}: text {} layers x {}, vision {} layers x {}, f16 weights on {}",
                    cfg.text.tower.num_layers,
                    cfg.text.tower.hidden_size,
                    cfg.vision.tower.num_layers,
                    cfg.vision.tower.hidden_size,
                    g.device
                );
                let v: Vec<String> = g
                    .validation
                    .iter()
                    .map(|(w, c)| format!("{w} cos {c:.6}"))
                    .collect();
                println!("validated vs CPU (1 layer): {}", v.join(", "));
                println!(
                    "GPU memory: {:.1} MB; timing: {}",
                    g.gpu_bytes as f64 / 1e6,
                    g.timing
                );
            }
        }
        for r in rows {
            if gpu.is_none() {
                println!(
                    "{:<22} {:>10.1} ms  {:>10.1} ms/item  {:>8.1} GFLOP  {:>7.1} GFLOP/s",
                    r.case, r.ms, r.ms_per_item, r.gflop, r.gflops
                );
            } else {
                println!(
                    "{:<48} {:>10.2} ms  {:>10.2} ms/item  {:>8.3} GFLOP  {:>7.2} GFLOP/s",
                    r.case, r.ms, r.ms_per_item, r.gflop, r.gflops
                );
            }
        }
    }
    Ok(())
}
