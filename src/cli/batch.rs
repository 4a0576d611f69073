//! `sciscore batch`: a JSONL manifest scored line by line, resumable, one shard of it where asked;
//! SIGTERM / SIGINT stop it after the pass in flight.

use super::common::{json_line, load, note, progress, whole, BackendArg, FormatArg};
use super::interrupt;
use anyhow::{bail, Context, Result};
use sciscore::{batch, shown};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        model,
        manifest,
        out,
        shard,
        shards,
        format,
        batch,
        backend,
        json,
    } = a;
    let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    let detected = batch::detect(shard.as_deref(), shards.as_deref(), env)?;
    if matches!(format, FormatArg::Parquet) && out.is_none() {
        bail!("--format parquet needs --out (records go to stdout as JSONL without it)");
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
        stop: Some(&interrupt::STOP),
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
    interrupt::catch();
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
    Ok(())
}

/// Prints a batch summary: one JSON line with `json`, else text (with the lines whose
/// record failed, for merge).
pub fn print_summary(
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
        let mut shown_lines: Vec<String> = f.iter().take(20).map(|l| (l + 1).to_string()).collect();
        if f.len() > 20 {
            shown_lines.push(format!("... ({} in all)", f.len()));
        }
        println!("  failed lines (from 1): {}", shown_lines.join(", "));
    }
    Ok(())
}
