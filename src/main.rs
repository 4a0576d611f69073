//! `sciscore`: the command-line tool (contracts: docs/contracts.md). JSON on stdout with `--json`, a
//! one-line error on stderr and a non-zero exit on failure: 75 where a retry may succeed, 1
//! where it cannot (see [`cli::exit_code`]).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = cli::run() {
        // Context added here quotes paths and flags the user gave: escaped like the library's.
        eprintln!("error: {}", sciscore::shown(&format!("{e:#}")));
        std::process::exit(cli::exit_code(&e));
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod serve;

/// SIGTERM and SIGINT as a request to stop (`batch`): the handler only records the signal; a
/// second one ends the process at once, as without the handler.
#[cfg(not(target_arch = "wasm32"))]
mod interrupt {
    use std::sync::atomic::{AtomicI32, Ordering};

    /// The signal received, 0 before any.
    pub static STOP: AtomicI32 = AtomicI32::new(0);

    #[cfg(unix)]
    mod sys {
        pub const SIGINT: i32 = 2;
        pub const SIGTERM: i32 = 15;
        /// `SIG_DFL`.
        pub const DEFAULT: usize = 0;
        extern "C" {
            // POSIX signal(2); `sighandler_t` is a pointer-sized function address.
            pub fn signal(signum: i32, handler: usize) -> usize;
        }
    }

    #[cfg(unix)]
    extern "C" fn on_signal(signum: i32) {
        // Only async-signal-safe work here: an atomic store and signal(2).
        STOP.store(signum, Ordering::Relaxed);
        // SAFETY: signal(2) with SIG_DFL is async-signal-safe and takes any valid signal number.
        unsafe {
            sys::signal(signum, sys::DEFAULT);
        }
    }

    /// Installs the handler for SIGTERM and SIGINT (where there are signals).
    pub fn catch() {
        #[cfg(unix)]
        for s in [sys::SIGINT, sys::SIGTERM] {
            let handler: extern "C" fn(i32) = on_signal;
            // SAFETY: `on_signal` only stores an atomic and restores the default action.
            unsafe {
                sys::signal(s, handler as usize);
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use anyhow::{bail, Context, Result};
    use clap::{Parser, Subcommand, ValueEnum};
    use sciscore::{shown, Backend, DirSource, ImageInput, Model, ScoreMatrix};
    use serde_json::json;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    #[derive(Parser)]
    #[command(
        name = "sciscore",
        version,
        about = "Scientific-accuracy scores for images with SciScore and other CLIP reward models",
        after_help = EXIT_CODES
    )]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    /// Exit status for "run me again": the GPU device was lost or is missing here, an output
    /// could not be written, or a signal stopped the run (EX_TEMPFAIL of sysexits.h).
    pub const EXIT_RETRY: i32 = 75;
    /// Exit status for "do not retry": a bad model folder, manifest or argument (as before
    /// there were retry codes, every error exited 1).
    pub const EXIT_FAIL: i32 = 1;

    /// The exit status of a failed command, from the library's [`sciscore::Error`] in its chain
    /// (see `Error::retryable`); errors of the CLI itself are not retryable.
    pub fn exit_code(e: &anyhow::Error) -> i32 {
        let lib = e.chain().find_map(|c| c.downcast_ref::<sciscore::Error>());
        if lib.is_some_and(sciscore::Error::retryable) {
            EXIT_RETRY
        } else {
            EXIT_FAIL
        }
    }

    const EXIT_CODES: &str = "Exit status: 0 done; 75 retry (the GPU device was lost or is \
        missing on this machine, an output could not be written, or SIGTERM/SIGINT stopped the \
        run after the pass in flight; a rerun resumes); 1 do not retry (bad model folder, \
        manifest or arguments; the message says which); 2 bad command line.";

    #[derive(Clone, Copy, ValueEnum)]
    enum FormatArg {
        Jsonl,
        Parquet,
    }

    impl From<FormatArg> for sciscore::batch::Format {
        fn from(f: FormatArg) -> Self {
            match f {
                FormatArg::Jsonl => Self::Jsonl,
                FormatArg::Parquet => Self::Parquet,
            }
        }
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum BackendArg {
        Gpu,
        Cpu,
    }

    /// Weight types `convert` writes.
    #[derive(Clone, Copy, ValueEnum)]
    enum DTypeArg {
        F16,
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
        /// Score images against one prompt (probabilities: softmax over these images), or
        /// against several (a prompts x images matrix).
        Score {
            /// A Hugging Face CLIPModel folder, or a repo id found in the local Hugging Face cache.
            #[arg(long)]
            model: String,
            /// Repeat for several prompts: the JSON adds "prompts" and "matrix" (rows prompts,
            /// columns images); "prompt" and "results" stay the first prompt's.
            #[arg(long, required = true)]
            prompt: Vec<String>,
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
        /// Score a JSONL manifest of {"prompt", "image", "group"?, "role"?} lines; resumable
        /// with --out; one shard of the lines with --shard or a Slurm / Kubernetes array index.
        #[command(after_help = EXIT_CODES)]
        Batch {
            #[arg(long)]
            model: String,
            #[arg(long)]
            manifest: PathBuf,
            /// Output (one record per input line); lines already there are skipped. With a shard:
            /// a folder (gets scores-{shard}-of-{count}.jsonl) or a name with {shard} and
            /// {count}, written as <name>.partial and renamed when the shard is complete.
            #[arg(long)]
            out: Option<PathBuf>,
            /// Score only shard I of N: manifest lines k (0-based, blank lines counted) with
            /// k mod N == I. Default: SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX when set.
            #[arg(long, value_name = "I/N")]
            shard: Option<String>,
            /// The shard count where the environment has only an index (Kubernetes'
            /// JOB_COMPLETION_INDEX; or set SCISCORE_SHARDS).
            #[arg(long, value_name = "N")]
            shards: Option<String>,
            /// Output format: JSONL, or parquet (same columns; written when the run completes).
            #[arg(long, value_enum, default_value = "jsonl")]
            format: FormatArg,
            /// Images per forward pass.
            #[arg(long, default_value_t = 8, value_parser = whole(1, sciscore::batch::MAX_BATCH))]
            batch: usize,
            #[arg(long, value_enum, default_value = "gpu")]
            backend: BackendArg,
            #[arg(long)]
            json: bool,
        },
        /// Write a copy of a model folder with f16 weights (half the download; loads in
        /// sciscore and in `transformers`).
        Convert {
            #[arg(long)]
            model: String,
            /// The new model folder (must not exist yet, or be empty).
            #[arg(long)]
            out: PathBuf,
            #[arg(long, value_enum)]
            dtype: DTypeArg,
            #[arg(long)]
            json: bool,
        },
        /// Join the outputs of a sharded batch into one, in manifest order, checking that every
        /// manifest line is there exactly once; prints the summary batch prints.
        #[command(after_help = EXIT_CODES)]
        Merge {
            /// The manifest the shards scored.
            #[arg(long)]
            manifest: PathBuf,
            /// The merged output (written as <out>.partial, renamed when complete).
            #[arg(long)]
            out: PathBuf,
            /// Output format (the shards may be JSONL or parquet, told by their contents).
            #[arg(long, value_enum, default_value = "jsonl")]
            format: FormatArg,
            #[arg(long)]
            json: bool,
            /// The shards' outputs.
            #[arg(required = true)]
            shards: Vec<PathBuf>,
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

    /// The command line, or exit: a usage error is one line on stderr (clap's own adds the usage
    /// and a tip over several), naming the flag or value, with status 2 as clap uses.
    fn parse_args() -> Cli {
        match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) if !e.use_stderr() => e.exit(), // --help, --version
            Err(e) => {
                let text = e.render().to_string();
                // The message runs to the first blank line (a list of missing arguments spans
                // several); usage and tips follow it.
                let message: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .skip_while(|l| l.is_empty())
                    .take_while(|l| !l.is_empty())
                    .collect();
                let message = message.join(" ");
                let message = message.strip_prefix("error: ").unwrap_or(&message);
                eprintln!("error: {} (see `sciscore --help`)", shown(message));
                std::process::exit(2);
            }
        }
    }

    /// `score --json`: the first prompt's `{"prompt", "results"}`, plus `"prompts"` and
    /// `"matrix"` when there are several.
    fn score_json(prompts: &[String], names: &[String], m: &ScoreMatrix) -> serde_json::Value {
        let results: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                json!({"image": name, "score": m.scores[0][i], "prob": m.probs_over_images[0][i]})
            })
            .collect();
        let mut out = json!({"prompt": prompts[0], "results": results});
        if prompts.len() > 1 {
            out["prompts"] = json!(prompts);
            out["matrix"] = json!(m);
        }
        out
    }

    /// One prompt: its images from most to least probable.
    fn print_ranking(prompt: &str, names: &[String], m: &ScoreMatrix) {
        println!("prompt: {prompt}");
        let (scores, probs) = (&m.scores[0], &m.probs_over_images[0]);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        for i in order {
            println!(
                "{:>7.2}%  score {:>8.4}  {}",
                probs[i] * 100.0,
                scores[i],
                names[i]
            );
        }
    }

    /// Several prompts: a table of prompts (rows) by images (columns), each cell
    /// `score  p(image | prompt)  p(prompt | image)`, with the best of each row and column marked.
    fn print_matrix(prompts: &[String], names: &[String], m: &ScoreMatrix) {
        let argmax = |xs: &mut dyn Iterator<Item = f32>| {
            xs.enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, x)| if x > b.1 { (i, x) } else { b },
                )
                .0
        };
        let best_image: Vec<usize> = m
            .scores
            .iter()
            .map(|row| argmax(&mut row.iter().copied()))
            .collect();
        let best_prompt: Vec<usize> = (0..names.len())
            .map(|i| argmax(&mut m.scores.iter().map(|row| row[i])))
            .collect();
        for (p, text) in prompts.iter().enumerate() {
            println!("P{}  {text}", p + 1);
        }
        for (i, name) in names.iter().enumerate() {
            println!("I{}  {name}", i + 1);
        }
        println!(
            "cells: score, probability over the images (per prompt) / over the prompts (per image); \
             * best image of the prompt, + best prompt of the image"
        );
        // Each cell: `{:>8.4} {:>6.2}% / {:>6.2}% ` and two marks.
        const CELL: usize = 29;
        let mut head = format!("{:<4}", "");
        for i in 0..names.len() {
            head += &format!(" | {:<CELL$}", format!("I{}", i + 1));
        }
        println!("{head}");
        println!("{}", "-".repeat(head.len()));
        for (p, &best_i) in best_image.iter().enumerate() {
            let mut line = format!("{:<4}", format!("P{}", p + 1));
            for (i, &best_p) in best_prompt.iter().enumerate() {
                let marks = format!(
                    "{}{}",
                    if best_i == i { "*" } else { "" },
                    if best_p == p { "+" } else { "" }
                );
                line += &format!(
                    " | {:>8.4} {:>6.2}% / {:>6.2}% {marks:<2}",
                    m.scores[p][i],
                    m.probs_over_images[p][i] * 100.0,
                    m.probs_over_prompts[p][i] * 100.0
                );
            }
            println!("{}", line.trim_end());
        }
    }

    /// Prints a batch summary: one JSON line with `json`, else text (with the lines whose
    /// record failed, for merge).
    fn print_summary(
        summary: &sciscore::batch::BatchSummary,
        json: bool,
        failed: Option<&[usize]>,
    ) -> Result<()> {
        if json {
            println!("{}", json_line(summary)?);
            return Ok(());
        }
        let of_shard = summary.shard.as_ref().map(|s| format!(" of shard {s}"));
        println!(
            "{} lines{}: {} scored, {} errors, {} already done",
            summary.lines,
            of_shard.unwrap_or_default(),
            summary.scored,
            summary.errors,
            summary.resumed
        );
        for (g, m) in &summary.groups {
            println!(
                "  group {:<24} mean score {:.4} over {}",
                shown(g),
                m.mean_score,
                m.n
            );
        }
        if let Some(roles) = &summary.roles {
            println!("  roles: mean score per role; position = (implicit - superficial) / (explicit - superficial)");
            let row = |name: &str, r: &sciscore::batch::RoleMeans| {
                let m = |g: &Option<sciscore::batch::GroupMean>| {
                    g.as_ref().map_or("-".to_string(), |g| {
                        format!("{:.4} ({})", g.mean_score, g.n)
                    })
                };
                let pos = r.position.map_or("n/a".to_string(), |p| format!("{p:.4}"));
                println!(
                    "  {:<30} implicit {}  explicit {}  superficial {}  position {pos}",
                    shown(name),
                    m(&r.implicit),
                    m(&r.explicit),
                    m(&r.superficial)
                );
            };
            row("all", &roles.all);
            for (g, r) in &roles.groups {
                row(&format!("group {g}"), r);
            }
        }
        if let Some(f) = failed.filter(|f| !f.is_empty()) {
            let mut shown_lines: Vec<String> =
                f.iter().take(20).map(|l| (l + 1).to_string()).collect();
            if f.len() > 20 {
                shown_lines.push(format!("... ({} in all)", f.len()));
            }
            println!("  failed lines (from 1): {}", shown_lines.join(", "));
        }
        Ok(())
    }

    pub fn run() -> Result<()> {
        match parse_args().cmd {
            Cmd::Score {
                model,
                prompt: prompts,
                images,
                backend,
                json,
            } => {
                let m = load(&model, backend)?;
                let pixels = image_pixels(&m, &images)?;
                let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
                let matrix =
                    pollster::block_on(m.score_matrix_pixels(&texts, &pixels, images.len()))?;
                let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
                if json {
                    println!("{}", score_json(&prompts, &names, &matrix));
                } else if prompts.len() == 1 {
                    print_ranking(&prompts[0], &names, &matrix);
                } else {
                    print_matrix(&prompts, &names, &matrix);
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
                shard,
                shards,
                format,
                batch,
                backend,
                json,
            } => {
                use sciscore::batch;
                let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
                let detected = batch::detect(shard.as_deref(), shards.as_deref(), env)?;
                if matches!(format, FormatArg::Parquet) && out.is_none() {
                    bail!(
                        "--format parquet needs --out (records go to stdout as JSONL without it)"
                    );
                }
                if let Some(dir) = out.as_ref().filter(|o| o.to_string_lossy().ends_with('/')) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating the --out folder {}", dir.display()))?;
                }
                let out = match (&out, &detected) {
                    (Some(o), Some((s, _))) => Some(batch::out_path(o, *s, format.into())?),
                    _ => out,
                };
                if let Some((s, how)) = &detected {
                    let to = out.as_ref().map(|o| format!(", writing {}", o.display()));
                    eprintln!("shard {s} (from {how}){}", shown(&to.unwrap_or_default()));
                }
                let job = batch::Job {
                    manifest: &manifest,
                    out: out.as_deref(),
                    batch,
                    shard: detected.map(|(s, _)| s),
                    format: format.into(),
                    stop: Some(&crate::interrupt::STOP),
                };
                let checked = batch::check_job(&job)?;
                if let (Some(summary), Some(o)) = (checked.finished, &out) {
                    eprintln!("{} is complete already: nothing to score", o.display());
                    print_summary(&summary, json, None)?;
                    return Ok(());
                }
                let m = load(&model, backend)?;
                // From here a SIGTERM (preemption) or Ctrl-C stops after the pass in flight,
                // its records written, with the retry status.
                crate::interrupt::catch();
                let bar = progress(checked.lines as u64, "images");
                let to_stdout = out.is_none();
                let mut print_err = None;
                let summary = batch::run_job(&m, &job, |r| {
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
                } else {
                    print_summary(&summary, json, None)?;
                }
                eprintln!(
                    "time: {:.1}s decoding images (reader thread), {:.1}s in the model ({:.2} images/s in the model)",
                    summary.decode_seconds,
                    summary.model_seconds,
                    (summary.scored - summary.resumed.min(summary.scored)) as f64 / summary.model_seconds.max(1e-9)
                );
            }
            Cmd::Convert {
                model,
                out,
                dtype: DTypeArg::F16,
                json,
            } => {
                let dir = resolve_model(&model)?;
                let bar = (!json).then(|| {
                    let bar = indicatif::ProgressBar::new(0);
                    let style = "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";
                    if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
                        bar.set_style(s);
                    }
                    bar
                });
                let done = sciscore::convert::to_f16(&dir, &out, |done, total| {
                    if let Some(bar) = &bar {
                        bar.set_length(total);
                        bar.set_position(done);
                    }
                })?;
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                if json {
                    println!("{}", json_line(&done)?);
                } else {
                    println!(
                        "{}: {} tensors, {} now f16; {:.1} MB -> {:.1} MB",
                        out.display(),
                        done.tensors,
                        done.to_f16,
                        done.bytes_in as f64 / 1e6,
                        done.bytes_out as f64 / 1e6
                    );
                    for name in &done.kept_f32 {
                        println!("  kept in f32 (values beyond f16's range): {name}");
                    }
                }
            }
            Cmd::Merge {
                manifest,
                out,
                format,
                json,
                shards,
            } => {
                let report = sciscore::batch::merge(&manifest, &shards, &out, format.into())?;
                if json {
                    println!("{}", json_line(&report)?);
                } else {
                    print_summary(&report.summary, false, Some(&report.failed))?;
                    println!(
                        "merged {} shard output(s) into {}",
                        report.shards,
                        shown(&out.display().to_string())
                    );
                }
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
