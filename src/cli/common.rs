//! What several subcommands share: the `--backend` and `--format` flags, the model from
//! `--model`, image files to pixels, progress bars, bounded number flags and escaped JSON lines.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use sciscore::{shown, Backend, DirSource, ImageInput, Model};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
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
pub enum BackendArg {
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

/// A folder, or `org/name` resolved from the local Hugging Face cache (no download here).
pub fn resolve_model(model: &str) -> Result<PathBuf> {
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
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
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

/// The model of `--model` (a folder or a cached repo id) on `--backend`.
pub fn load(model: &str, backend: BackendArg) -> Result<Model> {
    let dir = resolve_model(model)?;
    let src = DirSource::new(&dir)?;
    pollster::block_on(Model::load(&src, backend.into()))
        .with_context(|| format!("loading {}", dir.display()))
}

/// Preprocessed pixels of each image file, (n, 3, S, S): read, decoded and preprocessed one
/// at a time, so only one file's bytes are in memory at once.
pub fn image_pixels(m: &Model, paths: &[PathBuf]) -> Result<Vec<f32>> {
    let mut pixels = Vec::new();
    for p in paths {
        pixels.extend(file_pixels(m, p)?);
    }
    Ok(pixels)
}

/// One image file's preprocessed pixels, (3, S, S), or why it could not be read.
pub fn file_pixels(m: &Model, path: &std::path::Path) -> sciscore::Result<Vec<f32>> {
    let name = path.display().to_string();
    let bytes = sciscore::preprocess::read_image_file(path)?;
    m.pixels(ImageInput {
        name: &name,
        bytes: &bytes,
    })
}

/// A progress bar on stderr with rate and ETA (hidden when stderr is not a terminal).
pub fn progress(total: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    let style = format!("{{bar:30}} {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}");
    if let Ok(s) = indicatif::ProgressStyle::with_template(&style) {
        bar.set_style(s);
    }
    bar
}

/// A value parser for a whole number in `lo..=hi` whose error states the bound.
pub fn whole(
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
pub fn json_line(v: &impl serde::Serialize) -> Result<String> {
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
pub fn note(bar: &indicatif::ProgressBar, msg: &str) {
    if bar.is_hidden() {
        eprintln!("{}", shown(msg));
    } else {
        bar.println(shown(msg));
    }
}
