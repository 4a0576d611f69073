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
mod serve;

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use anyhow::{bail, Context, Result};
    use clap::{Parser, Subcommand, ValueEnum};
    use sciscore::{Backend, DirSource, ImageInput, Model};
    use serde_json::json;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    #[derive(Parser)]
    #[command(
        name = "sciscore",
        version,
        about = "Scientific-accuracy scores for images with SciScore and other CLIP reward models"
    )]
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
        /// Evaluate the Science-T2I-S/-C benchmark (parquet file or folder of shards).
        Eval {
            #[arg(long)]
            model: String,
            /// A parquet file, or a folder of test-0000x-of-0000y.parquet shards.
            #[arg(long)]
            dataset: PathBuf,
            /// Evaluate only the first N rows.
            #[arg(long)]
            limit: Option<usize>,
            /// Write the JSON summary here too.
            #[arg(long)]
            out: Option<PathBuf>,
            /// Write per-row results (row, category, law, prob_explicit, prob_superficial, correct).
            #[arg(long)]
            csv: Option<PathBuf>,
            #[arg(long, value_enum, default_value = "gpu")]
            backend: BackendArg,
            #[arg(long)]
            json: bool,
        },
        /// Score a JSONL manifest of {"prompt", "image", "group"?} lines; resumable with --out.
        Batch {
            #[arg(long)]
            model: String,
            #[arg(long)]
            manifest: PathBuf,
            /// Output JSONL (one line per input line); lines already there are skipped.
            #[arg(long)]
            out: Option<PathBuf>,
            /// Images per forward pass.
            #[arg(long, default_value_t = 8)]
            batch: usize,
            #[arg(long, value_enum, default_value = "gpu")]
            backend: BackendArg,
            #[arg(long)]
            json: bool,
        },
        /// Serve the web page (`www/`) on 127.0.0.1, with the demo model under /models/demo/.
        Serve {
            /// Port on 127.0.0.1 (0 picks a free one).
            #[arg(long, default_value_t = 8080)]
            port: u16,
            /// The folder to serve.
            #[arg(long, default_value = "www")]
            root: PathBuf,
            /// The demo model folder served under /models/demo/ [default:
            /// tests/fixtures/models/tiny224 when it exists].
            #[arg(long)]
            demo: Option<PathBuf>,
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
        if parts.len() == 2
            && !parts
                .iter()
                .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            let hub = std::env::var_os("HF_HUB_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
                })
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
        pollster::block_on(Model::load(&src, backend.into()))
            .with_context(|| format!("loading {}", dir.display()))
    }

    fn read_images(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
        paths
            .iter()
            .map(|p| {
                let bytes =
                    std::fs::read(p).with_context(|| format!("reading image {}", p.display()))?;
                Ok((p.display().to_string(), bytes))
            })
            .collect()
    }

    fn inputs(images: &[(String, Vec<u8>)]) -> Vec<ImageInput<'_>> {
        images
            .iter()
            .map(|(n, b)| ImageInput { name: n, bytes: b })
            .collect()
    }

    /// A progress bar on stderr with rate and ETA (hidden when stderr is not a terminal).
    fn progress(total: u64, unit: &str) -> indicatif::ProgressBar {
        let bar = indicatif::ProgressBar::new(total);
        let style = format!("{{bar:30}} {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}");
        if let Ok(s) = indicatif::ProgressStyle::with_template(&style) {
            bar.set_style(s);
        }
        bar
    }

    /// Quotes a CSV field when it needs it (RFC 4180).
    fn csv_field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }

    pub fn run() -> Result<()> {
        match Cli::parse().cmd {
            Cmd::Score {
                model,
                prompt,
                images,
                backend,
                json,
            } => {
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
                        println!(
                            "{:>7.2}%  score {:>8.4}  {}",
                            scores[i].prob * 100.0,
                            scores[i].score,
                            imgs[i].0
                        );
                    }
                }
            }
            Cmd::Embed {
                model,
                text,
                image,
                backend,
                json,
            } => {
                let m = load(&model, backend)?;
                let prompts: Vec<&str> = text.iter().map(String::as_str).collect();
                let t = pollster::block_on(m.text_embeds(&prompts))?;
                let imgs = read_images(&image)?;
                let v = if imgs.is_empty() {
                    Vec::new()
                } else {
                    pollster::block_on(m.image_embeds(&inputs(&imgs)))?
                };
                let out =
                    json!({"text_embeds": t, "image_embeds": v, "logit_scale": m.logit_scale()});
                if json {
                    println!("{out}");
                } else {
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
            }
            Cmd::Eval {
                model,
                dataset,
                limit,
                out,
                csv,
                backend,
                json,
            } => {
                let files = sciscore::eval::parquet_files(&dataset)?;
                let total = sciscore::eval::count_rows(&files)?;
                let total = limit.map_or(total, |l| l.min(total));
                let m = load(&model, backend)?;
                let bar = progress(total as u64, "rows");
                let mut csv_out = match &csv {
                    Some(p) => {
                        let mut f = std::fs::File::create(p)
                            .with_context(|| format!("creating {}", p.display()))?;
                        writeln!(f, "row,category,law,prob_explicit,prob_superficial,correct")?;
                        Some(f)
                    }
                    None => None,
                };
                let mut csv_err = None;
                let report = sciscore::eval::evaluate(&m, &files, limit, |r| {
                    bar.inc(1);
                    match r {
                        Ok(r) => {
                            if let Some(f) = csv_out.as_mut() {
                                let line = format!(
                                    "{},{},{},{},{},{}",
                                    r.row,
                                    csv_field(&r.category),
                                    csv_field(&r.law),
                                    r.prob_explicit,
                                    r.prob_superficial,
                                    r.correct
                                );
                                if let Err(e) = writeln!(f, "{line}") {
                                    csv_err.get_or_insert(e);
                                }
                            }
                        }
                        Err(e) => bar.println(format!("row {}: {}", e.row, e.message)),
                    }
                })?;
                bar.finish_and_clear();
                if let Some(e) = csv_err {
                    bail!("writing the CSV: {e}");
                }
                let summary = json!({
                    "rows": report.rows,
                    "overall_accuracy": report.overall_accuracy,
                    "category_accuracy": report.category_accuracy,
                    "law_accuracy": report.law_accuracy,
                    "errors": report.errors,
                });
                if let Some(p) = &out {
                    std::fs::write(p, serde_json::to_string_pretty(&summary)? + "\n")
                        .with_context(|| format!("writing {}", p.display()))?;
                }
                if json {
                    println!("{summary}");
                } else {
                    println!(
                        "rows {}  overall accuracy {:.2}%",
                        report.rows,
                        report.overall_accuracy * 100.0
                    );
                    for (k, v) in &report.category_accuracy {
                        println!("  category {k:<24} {:.2}%", v * 100.0);
                    }
                    for (k, v) in &report.law_accuracy {
                        println!("  law      {k:<24} {:.2}%", v * 100.0);
                    }
                    if !report.errors.is_empty() {
                        println!(
                            "{} row(s) skipped for bad input (listed above)",
                            report.errors.len()
                        );
                    }
                }
                eprintln!(
                    "time: {:.1}s decoding images (reader thread), {:.1}s in the model ({:.2} rows/s in the model)",
                    report.decode_seconds,
                    report.model_seconds,
                    report.rows as f64 / report.model_seconds.max(1e-9)
                );
            }
            Cmd::Batch {
                model,
                manifest,
                out,
                batch,
                backend,
                json,
            } => {
                if batch == 0 {
                    bail!("--batch must be at least 1");
                }
                let total = sciscore::batch::count_lines(&manifest)?;
                let m = load(&model, backend)?;
                let bar = progress(total as u64, "images");
                let to_stdout = out.is_none();
                let summary = sciscore::batch::run(&m, &manifest, out.as_deref(), batch, |r| {
                    bar.inc(1);
                    if let Some(e) = &r.error {
                        bar.println(format!("line {}: {e}", r.line + 1));
                    }
                    if to_stdout {
                        bar.suspend(|| {
                            println!("{}", serde_json::to_string(r).unwrap_or_default())
                        });
                    }
                })?;
                bar.finish_and_clear();
                if to_stdout {
                    eprintln!("{}", serde_json::to_string(&summary)?);
                } else if json {
                    println!("{}", serde_json::to_string(&summary)?);
                } else {
                    println!(
                        "{} lines: {} scored, {} errors, {} already done",
                        summary.lines, summary.scored, summary.errors, summary.resumed
                    );
                    for (g, m) in &summary.groups {
                        println!(
                            "  group {g:<24} mean score {:.4} over {}",
                            m.mean_score, m.n
                        );
                    }
                }
                eprintln!(
                    "time: {:.1}s decoding images (reader thread), {:.1}s in the model ({:.2} images/s in the model)",
                    summary.decode_seconds,
                    summary.model_seconds,
                    (summary.scored - summary.resumed.min(summary.scored)) as f64 / summary.model_seconds.max(1e-9)
                );
            }
            Cmd::Serve { port, root, demo } => {
                if !root.join("index.html").is_file() {
                    bail!(
                        "{} has no index.html: run from the repository root or pass --root DIR",
                        root.display()
                    );
                }
                if !root.join("pkg/sciscore_bg.wasm").is_file() {
                    eprintln!(
                        "warning: {}/pkg/ has no wasm build yet; scripts/serve builds it",
                        root.display()
                    );
                }
                let demo = demo.or_else(|| {
                    let d = PathBuf::from("tests/fixtures/models/tiny224");
                    d.join("config.json").is_file().then_some(d)
                });
                let site = crate::serve::Site::new(&root, demo.as_deref())?;
                let (listener, addr) = crate::serve::bind(port).with_context(|| {
                    format!("cannot listen on 127.0.0.1:{port} (in use? pass another --port, or 0)")
                })?;
                println!("serving {} on http://{addr}/", root.display());
                if demo.is_some() {
                    println!("with the demo model: http://{addr}/?model=models/demo/");
                }
                std::io::Write::flush(&mut std::io::stdout())?;
                crate::serve::run(listener, site)?;
            }
            Cmd::Bench {
                random,
                layers,
                batch,
                iters,
                backend,
                json,
            } => {
                if batch == 0 {
                    bail!("--batch must be at least 1");
                }
                let (cfg, rows, gpu) = match backend {
                    BackendArg::Cpu => {
                        let (cfg, rows) = pollster::block_on(sciscore::bench::bench_cpu(
                            &random, layers, batch, iters,
                        ))?;
                        (cfg, rows, None)
                    }
                    BackendArg::Gpu => {
                        let b = pollster::block_on(sciscore::bench::bench_gpu(
                            &random, layers, batch, iters, false,
                        ))?;
                        (b.cfg.clone(), b.rows.clone(), Some(b))
                    }
                };
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
                            let v: Vec<String> = g.validation.iter().map(|(w, c)| format!("{w} cos {c:.6}")).collect();
                            println!("validated vs CPU (1 layer): {}", v.join(", "));
                            println!("GPU memory: {:.1} MB; timing: {}", g.gpu_bytes as f64 / 1e6, g.timing);
                        }
                    }
                    for r in rows {
                        if gpu.is_none() {
                            println!("{:<22} {:>10.1} ms  {:>10.1} ms/item  {:>8.1} GFLOP  {:>7.1} GFLOP/s", r.case, r.ms, r.ms_per_item, r.gflop, r.gflops);
                        } else {
                            println!("{:<48} {:>10.2} ms  {:>10.2} ms/item  {:>8.3} GFLOP  {:>7.2} GFLOP/s", r.case, r.ms, r.ms_per_item, r.gflop, r.gflops);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
