//! `sciscore`: the command-line tool (contract in DESIGN.md). JSON on stdout with `--json`, a
//! one-line error on stderr and a non-zero exit on failure.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use anyhow::{bail, Context, Result};
    use clap::{Parser, Subcommand, ValueEnum};
    use sciscore::{Backend, DirSource, ImageInput, Model};
    use serde_json::json;
    use std::path::{Path, PathBuf};

    #[derive(Parser)]
    #[command(name = "sciscore", version, about = "Scientific-accuracy scores for images with SciScore and other CLIP reward models")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum BackendArg {
        Gpu,
        Cpu,
    }

    impl From<BackendArg> for Backend {
        fn from(b: BackendArg) -> Self {
            match b {
                BackendArg::Gpu => Backend::Gpu,
                BackendArg::Cpu => Backend::Cpu,
            }
        }
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// Score images against one prompt (probabilities: softmax over these images).
        Score {
            /// A Hugging Face CLIPModel folder, or a repo id found in the local Hugging Face cache.
            #[arg(long)]
            model: String,
            #[arg(long)]
            prompt: String,
            #[arg(required = true)]
            images: Vec<PathBuf>,
            #[arg(long, value_enum, default_value = "gpu")]
            backend: BackendArg,
            #[arg(long)]
            json: bool,
        },
        /// Projected text and image features (before L2 normalization) and the raw logit_scale.
        Embed {
            #[arg(long)]
            model: String,
            #[arg(long)]
            text: Vec<String>,
            #[arg(long)]
            image: Vec<PathBuf>,
            #[arg(long, value_enum, default_value = "gpu")]
            backend: BackendArg,
            #[arg(long)]
            json: bool,
        },
        /// Time the forward pass on a random model of a named geometry (no download).
        Bench {
            /// Geometry: clip-h (ViT-H/14, SciScore's), clip-b or tiny.
            #[arg(long, default_value = "clip-h")]
            random: String,
            /// Use only this many layers per tower (quick runs).
            #[arg(long)]
            layers: Option<usize>,
            #[arg(long, default_value_t = 1)]
            batch: usize,
            #[arg(long, default_value_t = 3)]
            iters: usize,
            #[arg(long, value_enum, default_value = "gpu")]
            backend: BackendArg,
            #[arg(long)]
            json: bool,
        },
    }

    /// A folder, or `org/name` resolved from the local Hugging Face cache (no download here).
    fn resolve_model(model: &str) -> Result<PathBuf> {
        let p = Path::new(model);
        if p.is_dir() {
            return Ok(p.to_path_buf());
        }
        let parts: Vec<&str> = model.split('/').collect();
        if parts.len() == 2 && !parts.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
            let hub = std::env::var_os("HF_HUB_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub")))
                .context("cannot locate the Hugging Face cache (set HF_HUB_CACHE)")?;
            let repo = hub.join(format!("models--{}--{}", parts[0], parts[1]));
            let rev = std::fs::read_to_string(repo.join("refs/main")).unwrap_or_default();
            let snap = repo.join("snapshots").join(rev.trim());
            if !rev.trim().is_empty() && snap.join("config.json").is_file() {
                return Ok(snap);
            }
            bail!(
                "model `{model}` is not a folder and not in the Hugging Face cache at {}; download it first \
                 (e.g. `huggingface-cli download {model}`) or pass the folder",
                hub.display()
            );
        }
        bail!("model folder `{model}` does not exist")
    }

    fn load(model: &str, backend: BackendArg) -> Result<Model> {
        let dir = resolve_model(model)?;
        let src = DirSource::new(&dir)?;
        pollster::block_on(Model::load(&src, backend.into())).with_context(|| format!("loading {}", dir.display()))
    }

    fn read_images(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
        paths
            .iter()
            .map(|p| {
                let bytes = std::fs::read(p).with_context(|| format!("reading image {}", p.display()))?;
                Ok((p.display().to_string(), bytes))
            })
            .collect()
    }

    fn inputs(images: &[(String, Vec<u8>)]) -> Vec<ImageInput<'_>> {
        images.iter().map(|(n, b)| ImageInput { name: n, bytes: b }).collect()
    }

    pub fn run() -> Result<()> {
        match Cli::parse().cmd {
            Cmd::Score { model, prompt, images, backend, json } => {
                let m = load(&model, backend)?;
                let imgs = read_images(&images)?;
                let scores = pollster::block_on(m.score(&prompt, &inputs(&imgs)))?;
                if json {
                    let results: Vec<_> = imgs
                        .iter()
                        .zip(&scores)
                        .map(|((name, _), s)| json!({"image": name, "score": s.score, "prob": s.prob}))
                        .collect();
                    println!("{}", json!({"prompt": prompt, "results": results}));
                } else {
                    println!("prompt: {prompt}");
                    let mut order: Vec<usize> = (0..scores.len()).collect();
                    order.sort_by(|&a, &b| scores[b].score.total_cmp(&scores[a].score));
                    for i in order {
                        println!("{:>7.2}%  score {:>8.4}  {}", scores[i].prob * 100.0, scores[i].score, imgs[i].0);
                    }
                }
            }
            Cmd::Embed { model, text, image, backend, json } => {
                let m = load(&model, backend)?;
                let prompts: Vec<&str> = text.iter().map(String::as_str).collect();
                let t = pollster::block_on(m.text_embeds(&prompts))?;
                let imgs = read_images(&image)?;
                let v = if imgs.is_empty() { Vec::new() } else { pollster::block_on(m.image_embeds(&inputs(&imgs)))? };
                let out = json!({"text_embeds": t, "image_embeds": v, "logit_scale": m.logit_scale()});
                if json {
                    println!("{out}");
                } else {
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
            }
            Cmd::Bench { random, layers, batch, iters, backend, json } => {
                if batch == 0 {
                    bail!("--batch must be at least 1");
                }
                let (cfg, rows) = match backend {
                    BackendArg::Cpu => pollster::block_on(sciscore::bench::bench_cpu(&random, layers, batch, iters))?,
                    BackendArg::Gpu => bail!("the GPU backend is not available in this build yet; use --backend cpu"),
                };
                if json {
                    println!("{}", json!({"model": random, "layers": [cfg.text.tower.num_layers, cfg.vision.tower.num_layers], "rows": rows}));
                } else {
                    println!(
                        "random {random}: text {} layers x {}, vision {} layers x {}, {} threads",
                        cfg.text.tower.num_layers,
                        cfg.text.tower.hidden_size,
                        cfg.vision.tower.num_layers,
                        cfg.vision.tower.hidden_size,
                        std::thread::available_parallelism().map_or(1, |n| n.get())
                    );
                    for r in rows {
                        println!("{:<22} {:>10.1} ms  {:>10.1} ms/item  {:>8.1} GFLOP  {:>7.1} GFLOP/s", r.case, r.ms, r.ms_per_item, r.gflop, r.gflops);
                    }
                }
            }
        }
        Ok(())
    }
}
