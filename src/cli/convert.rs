//! `sciscore convert`: a copy of a model folder with f16 weights.

use super::common::{json_line, resolve_model};
use anyhow::Result;
use std::path::PathBuf;

/// Weight types `convert` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DTypeArg {
    F16,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: String,
    /// The new model folder (must not exist yet, or be empty).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum)]
    dtype: DTypeArg,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        model,
        out,
        dtype: DTypeArg::F16,
        json,
    } = a;
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
    Ok(())
}
