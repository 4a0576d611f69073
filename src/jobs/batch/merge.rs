//! `sciscore merge`: the outputs of a sharded run joined into one, in manifest order, after
//! checking that every non-blank manifest line is there exactly once and that each record is
//! the manifest's line (its prompt and image), so outputs of another manifest are not mixed in.

use super::{
    check_out, each_line, parquet_out, parse_line, partial_path, read_output, same_regular_file,
    summarize, write_err, BatchSummary, Format, Job, Record,
};
use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a merge found and wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeReport {
    #[serde(flatten)]
    pub summary: BatchSummary,
    /// Shard outputs read.
    pub shards: usize,
    /// 0-based manifest lines whose record has an error (an unreadable image, a bad line).
    pub failed: Vec<usize>,
}

/// At most this many line numbers of each kind in a message.
const LISTED: usize = 20;

fn listed(lines: &[usize]) -> String {
    let mut s: Vec<String> = lines
        .iter()
        .take(LISTED)
        .map(|l| (l + 1).to_string())
        .collect();
    if lines.len() > LISTED {
        s.push(format!("... ({} in all)", lines.len()));
    }
    s.join(", ")
}

/// Joins `inputs` (JSONL or parquet shard outputs) into `out` in manifest order and returns the
/// summary `batch` prints. Refuses, writing nothing, when a non-blank manifest line is missing
/// or appears more than once, or a record is not its manifest line; `out` is written under
/// `<out>.partial` and renamed.
pub fn merge(
    manifest: &Path,
    inputs: &[PathBuf],
    out: &Path,
    format: Format,
) -> Result<MergeReport> {
    if inputs.is_empty() {
        return Err(Error::Invalid("merge: no shard outputs given".into()));
    }
    check_out(manifest, out)?;
    if let Some(i) = inputs.iter().find(|i| same_regular_file(i, out)) {
        return Err(Error::Invalid(format!(
            "--out {} is the shard output {}; write the merged output to another file",
            out.display(),
            i.display()
        )));
    }
    // The manifest's lines as records without scores: what each shard's record must match.
    let mut expected: Vec<Option<Record>> = Vec::new();
    let mut lines = 0;
    each_line(manifest, |n, buf, too_long| {
        expected.resize(n + 1, None);
        expected[n] = Some(parse_line(n, buf, too_long));
        lines += 1;
        true
    })?;
    if lines == 0 {
        return Err(Error::Invalid(format!(
            "the manifest {} is empty",
            manifest.display()
        )));
    }
    // Where each line was found: the input's index.
    let mut found: Vec<Option<usize>> = vec![None; expected.len()];
    let mut merged: Vec<Option<Record>> = vec![None; expected.len()];
    let mut duplicated: Vec<usize> = Vec::new();
    let mut dup_example = None;
    for (k, input) in inputs.iter().enumerate() {
        for r in read_output(input)? {
            let want = expected.get(r.line).and_then(Option::as_ref);
            let Some(want) = want else {
                return Err(Error::Invalid(format!(
                    "{} holds line {} (from 1), which is not a non-blank line of the manifest {} \
                     (is it the output of another manifest?)",
                    input.display(),
                    r.line + 1,
                    manifest.display()
                )));
            };
            if (&want.prompt, &want.image) != (&r.prompt, &r.image) {
                return Err(Error::Invalid(format!(
                    "{}: the record of line {} (from 1) has another prompt or image than the \
                     manifest {} (is it the output of another manifest?)",
                    input.display(),
                    r.line + 1,
                    manifest.display()
                )));
            }
            match found[r.line] {
                Some(first) => {
                    if duplicated.last() != Some(&r.line) {
                        duplicated.push(r.line);
                    }
                    dup_example.get_or_insert((r.line, first, k));
                }
                None => {
                    found[r.line] = Some(k);
                    let line = r.line;
                    merged[line] = Some(r);
                }
            }
        }
    }
    duplicated.sort_unstable();
    duplicated.dedup();
    let missing: Vec<usize> = (0..expected.len())
        .filter(|&n| expected[n].is_some() && found[n].is_none())
        .collect();
    if !missing.is_empty() || !duplicated.is_empty() {
        let mut why = Vec::new();
        if !missing.is_empty() {
            why.push(format!(
                "{} manifest line(s) in no shard output (lines from 1: {})",
                missing.len(),
                listed(&missing)
            ));
        }
        if let Some((line, a, b)) = dup_example {
            why.push(format!(
                "{} line(s) in more than one record (lines from 1: {}; line {} is in {} and {})",
                duplicated.len(),
                listed(&duplicated),
                line + 1,
                inputs[a].display(),
                inputs[b].display()
            ));
        }
        return Err(Error::Invalid(format!(
            "merge: {}; {} not written (rerun the missing shards; remove outputs of an old run)",
            why.join("; "),
            out.display()
        )));
    }
    let records: Vec<Record> = merged.into_iter().flatten().collect();
    let partial = partial_path(out);
    match format {
        Format::Jsonl => {
            let f = std::fs::File::create(&partial).map_err(write_err(&partial))?;
            let mut w = std::io::BufWriter::new(f);
            for r in &records {
                let line = serde_json::to_string(r).expect("records serialize") + "\n";
                w.write_all(line.as_bytes()).map_err(write_err(&partial))?;
            }
            let f = w
                .into_inner()
                .map_err(|e| write_err(&partial)(e.into_error()))?;
            f.sync_all().map_err(write_err(&partial))?;
        }
        Format::Parquet => parquet_out::write(&partial, &records)?,
    }
    std::fs::rename(&partial, out).map_err(write_err(out))?;
    let job = Job {
        manifest,
        out: Some(out),
        batch: 1,
        shard: None,
        format,
        stop: None,
    };
    Ok(MergeReport {
        summary: summarize(&job, lines, 0, &records, (0.0, 0.0)),
        shards: inputs.len(),
        failed: records
            .iter()
            .filter(|r| r.error.is_some())
            .map(|r| r.line)
            .collect(),
    })
}
