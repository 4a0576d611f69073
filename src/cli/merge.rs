//! `sciscore merge`: the outputs of a sharded batch joined in manifest order, every manifest line
//! checked to be there exactly once.

use super::batch::print_summary;
use super::common::{json_line, FormatArg};
use anyhow::Result;
use sciscore::shown;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        manifest,
        out,
        format,
        json,
        shards,
    } = a;
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
    Ok(())
}
