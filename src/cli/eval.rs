//! `sciscore eval`: the Science-T2I-S/-C benchmark over parquet files, with a JSON summary and
//! optional per-row CSV.

use super::common::{json_line, load, note, progress, whole, BackendArg};
use anyhow::{bail, Context, Result};
use sciscore::shown;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        model,
        dataset,
        limit,
        out,
        csv,
        backend,
        json,
    } = a;
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
    Ok(())
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
