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
            #[arg(long, value_parser = whole(1, usize::MAX))]
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
            #[arg(long, default_value_t = 8, value_parser = whole(1, sciscore::batch::MAX_BATCH))]
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
        },
        /// Region maps: which parts of each image its score for a prompt comes from.
        Explain(ExplainArgs),
    }

    #[derive(clap::Args)]
    struct ExplainArgs {
        #[arg(long)]
        model: String,
        #[arg(long)]
        prompt: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Also the occlusion map on a G x G grid of cells (1 to 32; 7 is a good start).
        #[arg(long, value_name = "G", allow_hyphen_values = true)]
        occlusion: Option<String>,
        /// Write per image a PNG of the crop with each map blended over it and a colour scale.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "gpu")]
        backend: BackendArg,
        #[arg(long)]
        json: bool,
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

    /// Preprocessed pixels of each image file, (n, 3, S, S): read, decoded and preprocessed one
    /// at a time, so only one file's bytes are in memory at once.
    fn image_pixels(m: &Model, paths: &[PathBuf]) -> Result<Vec<f32>> {
        let mut pixels = Vec::new();
        for p in paths {
            let name = p.display().to_string();
            let bytes = sciscore::preprocess::read_image_file(p)?;
            pixels.extend(m.pixels(ImageInput {
                name: &name,
                bytes: &bytes,
            })?);
        }
        Ok(pixels)
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

    /// A value parser for a whole number in `lo..=hi` whose error states the bound.
    fn whole(
        lo: usize,
        hi: usize,
    ) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone + Send + Sync + 'static {
        move |s| match s.parse::<usize>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ if hi == usize::MAX => Err(format!("expected a whole number >= {lo}")),
            _ => Err(format!("expected a whole number in {lo}..={hi}")),
        }
    }

    /// Text read from a file (manifest strings, parquet cells) made safe for a terminal: control
    /// characters, escape sequences among them, are shown escaped (`\u{1b}`).
    fn shown(s: &str) -> std::borrow::Cow<'_, str> {
        if !s.chars().any(char::is_control) {
            return s.into();
        }
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    }

    /// One line of JSON, with DEL and the C1 controls escaped too (serde_json escapes only
    /// U+0000..U+001F), so file contents printed to a terminal cannot drive it.
    fn json_line(v: &impl serde::Serialize) -> Result<String> {
        struct Escaping;
        impl serde_json::ser::Formatter for Escaping {
            fn write_string_fragment<W: ?Sized + std::io::Write>(
                &mut self,
                w: &mut W,
                fragment: &str,
            ) -> std::io::Result<()> {
                for (i, c) in fragment.char_indices() {
                    if c.is_control() {
                        write!(w, "\\u{:04x}", c as u32)?;
                    } else {
                        w.write_all(&fragment.as_bytes()[i..i + c.len_utf8()])?;
                    }
                }
                Ok(())
            }
        }
        let mut out = Vec::new();
        v.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out, Escaping,
        ))?;
        Ok(String::from_utf8(out)?)
    }

    /// A per-item message on stderr, above the progress bar on a terminal (where a hidden bar
    /// would drop it otherwise).
    fn note(bar: &indicatif::ProgressBar, msg: &str) {
        if bar.is_hidden() {
            eprintln!("{}", shown(msg));
        } else {
            bar.println(shown(msg));
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
                let pixels = image_pixels(&m, &images)?;
                let scores = pollster::block_on(m.score_pixels(&prompt, &pixels, images.len()))?;
                let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
                if json {
                    let results: Vec<_> = names
                        .iter()
                        .zip(&scores)
                        .map(|(name, s)| json!({"image": name, "score": s.score, "prob": s.prob}))
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
                            names[i]
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
                let v = if image.is_empty() {
                    Vec::new()
                } else {
                    let pixels = image_pixels(&m, &image)?;
                    pollster::block_on(m.embed_pixels(&pixels, image.len()))?
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
                let outputs: Vec<(&str, &Path)> = [("--out", &out), ("--csv", &csv)]
                    .into_iter()
                    .filter_map(|(flag, p)| Some((flag, p.as_deref()?)))
                    .collect();
                sciscore::eval::check_outputs(&files, &outputs)?;
                // Outputs are opened before the work, so a bad path fails now and not after the
                // run; --out keeps its old contents until there is a new summary.
                let mut out_file = match &out {
                    Some(p) => Some(
                        std::fs::OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(false)
                            .open(p)
                            .with_context(|| format!("opening --out {}", p.display()))?,
                    ),
                    None => None,
                };
                let mut csv_out = match &csv {
                    Some(p) => {
                        let mut f = std::fs::File::create(p)
                            .with_context(|| format!("creating --csv {}", p.display()))?;
                        writeln!(f, "row,category,law,prob_explicit,prob_superficial,correct")
                            .with_context(|| format!("writing --csv {}", p.display()))?;
                        Some(f)
                    }
                    None => None,
                };
                let m = load(&model, backend)?;
                let bar = progress(total as u64, "rows");
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
                        Err(e) => note(&bar, &format!("row {}: {}", e.row, e.message)),
                    }
                })?;
                bar.finish_and_clear();
                let summary = json!({
                    "rows": report.rows,
                    "overall_accuracy": report.overall_accuracy,
                    "category_accuracy": report.category_accuracy,
                    "law_accuracy": report.law_accuracy,
                    "errors": report.errors,
                });
                // The summary goes to stdout first: a failing output file must not lose it.
                if json {
                    println!("{}", json_line(&summary)?);
                } else {
                    println!(
                        "rows {}  overall accuracy {:.2}%",
                        report.rows,
                        report.overall_accuracy * 100.0
                    );
                    for (k, v) in &report.category_accuracy {
                        println!("  category {:<24} {:.2}%", shown(k), v * 100.0);
                    }
                    for (k, v) in &report.law_accuracy {
                        println!("  law      {:<24} {:.2}%", shown(k), v * 100.0);
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
                if let (Some(e), Some(p)) = (csv_err, &csv) {
                    bail!("writing --csv {}: {e}", p.display());
                }
                if let (Some(f), Some(p)) = (out_file.as_mut(), &out) {
                    let text = serde_json::to_string_pretty(&summary)? + "\n";
                    let write = |f: &mut std::fs::File| -> std::io::Result<()> {
                        if f.metadata()?.is_file() {
                            f.set_len(0)?;
                        }
                        f.write_all(text.as_bytes())
                    };
                    write(f).with_context(|| format!("writing --out {}", p.display()))?;
                }
            }
            Cmd::Batch {
                model,
                manifest,
                out,
                batch,
                backend,
                json,
            } => {
                let total = sciscore::batch::check(&manifest, out.as_deref())?;
                let m = load(&model, backend)?;
                let bar = progress(total as u64, "images");
                let to_stdout = out.is_none();
                let mut print_err = None;
                let summary = sciscore::batch::run(&m, &manifest, out.as_deref(), batch, |r| {
                    bar.inc(1);
                    if let Some(e) = &r.error {
                        note(&bar, &format!("line {}: {e}", r.line + 1));
                    }
                    if to_stdout {
                        match json_line(r) {
                            Ok(line) => bar.suspend(|| println!("{line}")),
                            Err(e) => {
                                print_err.get_or_insert(e);
                            }
                        }
                    }
                })?;
                bar.finish_and_clear();
                if let Some(e) = print_err {
                    return Err(e);
                }
                if to_stdout {
                    eprintln!("{}", json_line(&summary)?);
                } else if json {
                    println!("{}", json_line(&summary)?);
                } else {
                    println!(
                        "{} lines: {} scored, {} errors, {} already done",
                        summary.lines, summary.scored, summary.errors, summary.resumed
                    );
                    for (g, m) in &summary.groups {
                        println!(
                            "  group {:<24} mean score {:.4} over {}",
                            shown(g),
                            m.mean_score,
                            m.n
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
                occlusion,
                backend,
                json,
            } => {
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
            Cmd::Explain(args) => explain(args)?,
        }
        Ok(())
    }

    // ---- `sciscore explain` ----

    /// `sciscore explain`: the patch map of each image (and with `--occlusion G` its occlusion
    /// map), as JSON or text, and with `--out-dir` as pictures. An image that cannot be decoded
    /// gets an `error` entry and the others are still explained; the command then exits
    /// non-zero, as `score` does on such an image.
    fn explain(a: ExplainArgs) -> Result<()> {
        use sciscore::explain::{self as ex, MAX_OCCLUSION_GRID};
        let grid = match &a.occlusion {
            None => None,
            Some(g) => match g.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_OCCLUSION_GRID).contains(&n) => Some(n),
                _ => bail!(
                    "--occlusion {}: expected a whole number in 1..={MAX_OCCLUSION_GRID} (cells a side)",
                    shown(g)
                ),
            },
        };
        if let Some(dir) = &a.out_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --out-dir {}", dir.display()))?;
        }
        let m = load(&a.model, a.backend)?;
        let s = m.config().vision.image_size;
        if let Some(g) = grid {
            ex::check_occlusion_grid(g, s)?;
        }
        // Decode each image; one that fails keeps its error and the others go on.
        let mut pixels = Vec::new();
        let mut decoded: Vec<std::result::Result<usize, String>> = Vec::new();
        for p in &a.images {
            let name = p.display().to_string();
            let px = sciscore::preprocess::read_image_file(p).and_then(|bytes| {
                m.pixels(ImageInput {
                    name: &name,
                    bytes: &bytes,
                })
            });
            match px {
                Ok(px) => {
                    decoded.push(Ok(pixels.len() / (3 * s * s)));
                    pixels.extend(px);
                }
                Err(e) => decoded.push(Err(e.to_string())),
            }
        }
        let n_ok = pixels.len() / (3 * s * s);
        let maps = if n_ok > 0 {
            pollster::block_on(m.patch_maps(&a.prompt, &pixels, n_ok))?
        } else {
            Vec::new()
        };
        let one = |k: usize| &pixels[k * 3 * s * s..(k + 1) * 3 * s * s];
        let mut occlusion = Vec::new();
        if let Some(g) = grid {
            let bar = progress((n_ok * g * g) as u64, "occluded images");
            for (k, x) in maps.iter().enumerate() {
                let mut report = |done: usize, _total: usize| {
                    bar.set_position((k * g * g + done) as u64);
                    true
                };
                occlusion.push(pollster::block_on(m.occlusion_map(
                    &a.prompt,
                    one(k),
                    g,
                    x.score,
                    &mut report,
                ))?);
            }
            bar.finish_and_clear();
        }
        let mut results = Vec::new();
        let mut failed = 0;
        for (i, (path, d)) in a.images.iter().zip(&decoded).enumerate() {
            let name = path.display().to_string();
            let k = match d {
                Ok(k) => *k,
                Err(e) => {
                    failed += 1;
                    results.push(json!({"image": name, "error": e}));
                    continue;
                }
            };
            let x = &maps[k];
            let mut r = json!({
                "image": name,
                "score": x.score,
                "patch_grid": x.patch_map.grid,
                "patch_map": x.patch_map.values,
            });
            if let Some(o) = occlusion.get(k) {
                r["occlusion"] = json!({"grid": o.grid[0], "drop": o.values});
            }
            if let Some(dir) = &a.out_dir {
                let crop = ex::crop_rgb(one(k), s, m.preprocessor());
                let mut files = Vec::new();
                for (kind, map) in [
                    ("patch", Some(&x.patch_map)),
                    ("occlusion", occlusion.get(k)),
                ] {
                    if let Some(map) = map {
                        let img = ex::render_overlay(&crop, map, 0.55);
                        let file = ex::write_png(dir, &ex::picture_name(path, i, kind), &img)?;
                        files.push(file.display().to_string());
                    }
                }
                r["files"] = json!(files);
            }
            results.push(r);
        }
        if a.json {
            println!(
                "{}",
                json_line(&json!({"prompt": a.prompt, "results": results}))?
            );
        } else {
            print_explanations(&a.prompt, &results);
        }
        if failed > 0 {
            bail!(
                "{failed} of {} images could not be explained (see their errors above)",
                a.images.len()
            );
        }
        Ok(())
    }

    /// The human form of `explain`'s results: per image its score, where the patch map peaks and
    /// dips, and the occlusion map as a table.
    fn print_explanations(prompt: &str, results: &[serde_json::Value]) {
        println!("prompt: {}", shown(prompt));
        let floats = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default()
        };
        for r in results {
            let image = shown(r["image"].as_str().unwrap_or_default()).into_owned();
            if let Some(e) = r["error"].as_str() {
                println!("{image}: error: {}", shown(e));
                continue;
            }
            let (map, gw) = (
                floats(&r["patch_map"]),
                r["patch_grid"][1].as_u64().unwrap_or(1) as usize,
            );
            let at = |i: usize| format!("row {}, col {}", i / gw.max(1), i % gw.max(1));
            let (lo, hi) = map.iter().enumerate().fold((0, 0), |(lo, hi), (i, &v)| {
                (
                    if v < map[lo] { i } else { lo },
                    if v > map[hi] { i } else { hi },
                )
            });
            println!(
                "{image}: score {:.4}",
                r["score"].as_f64().unwrap_or(f64::NAN)
            );
            if !map.is_empty() {
                println!(
                    "  patch map {}x{}: highest {:.2} at {}, lowest {:.2} at {}",
                    r["patch_grid"][0],
                    gw,
                    map[hi],
                    at(hi),
                    map[lo],
                    at(lo)
                );
            }
            if let Some(g) = r["occlusion"]["grid"].as_u64() {
                println!("  occlusion {g}x{g} (score drop when the cell is greyed out):");
                for row in floats(&r["occlusion"]["drop"]).chunks(g as usize) {
                    let cells: Vec<String> = row.iter().map(|v| format!("{v:>7.2}")).collect();
                    println!("  {}", cells.join(""));
                }
            }
            for f in r["files"].as_array().into_iter().flatten() {
                println!("  wrote {}", shown(f.as_str().unwrap_or_default()));
            }
        }
    }
}
