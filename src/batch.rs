//! `sciscore batch`: score many (prompt, image) pairs from a JSONL manifest, streamed, batched,
//! resumable. Each input line `{"prompt": ..., "image": path, "group"?: ...}` gives one output line
//! with `exp(logit_scale) * cos(text, image)`; the summary has the mean score per group (how the
//! Science-T2I authors average SciScore over a model's implicit / explicit / superficial images).
//! Relative image paths are resolved against the manifest's folder.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::preprocess::{image_to_pixels, read_image_file};
use crate::score;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

/// One output line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// 0-based line number in the manifest, blank lines counted (they get no record).
    pub line: usize,
    pub prompt: String,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// Mean score of a group.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupMean {
    pub n: usize,
    pub mean_score: f64,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchSummary {
    pub lines: usize,
    pub scored: usize,
    pub errors: usize,
    /// Lines found already done in `--out` and skipped.
    pub resumed: usize,
    pub groups: BTreeMap<String, GroupMean>,
    pub decode_seconds: f64,
    pub model_seconds: f64,
}

/// The most images per forward pass: the reader thread keeps up to twice this many decoded.
pub const MAX_BATCH: usize = 1024;

/// The longest manifest line read; a longer one is that line's error (a manifest line is a short
/// JSON object, and this keeps a file with no newlines from filling memory).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The longest `--out` line accepted as a record: a record repeats its manifest line's strings
/// (the image path twice, in `image` and in `error`).
const MAX_RECORD_BYTES: usize = 4 * MAX_LINE_BYTES;

/// Checks the manifest and `out` before any work and returns the manifest's non-blank lines.
///
/// The manifest must be a regular file with a non-blank line. `out`, if it exists, must be a
/// regular file other than the manifest, holding only records of an earlier run (its last line
/// may be torn).
pub fn check(manifest: &Path, out: Option<&Path>) -> Result<usize> {
    prepare(manifest, out).map(|(total, _)| total)
}

/// What an existing `--out` holds.
struct Previous {
    records: Vec<Record>,
    /// Bytes of its complete lines; a torn last line lies past them.
    complete: u64,
}

/// [`check`], also returning what [`read_out`] found.
fn prepare(manifest: &Path, out: Option<&Path>) -> Result<(usize, Option<Previous>)> {
    let total = count_lines(manifest)?;
    if total == 0 {
        return Err(Error::Invalid(format!(
            "the manifest {} is empty",
            manifest.display()
        )));
    }
    let Some(o) = out else {
        return Ok((total, None));
    };
    check_out(manifest, o)?;
    Ok((total, read_out(o)?))
}

/// Non-blank lines of the manifest (for progress), without parsing them.
fn count_lines(manifest: &Path) -> Result<usize> {
    let mut reader = std::io::BufReader::new(open_regular(manifest, "the manifest")?);
    let mut buf = Vec::new();
    let mut n = 0;
    while let Some(l) = next_line(&mut reader, MAX_LINE_BYTES, &mut buf).map_err(io(manifest))? {
        n += usize::from(l.too_long || !is_blank(&buf));
    }
    Ok(n)
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        name: p.display().to_string(),
        message: e.to_string(),
    }
}

/// Refuses what is not a regular file (a directory, `/dev/zero`, a pipe) before opening it.
fn regular(p: &Path, what: &str) -> Result<()> {
    let m = std::fs::metadata(p).map_err(io(p))?;
    if m.is_dir() {
        return Err(Error::Invalid(format!(
            "{what} {} is a directory, not a file",
            p.display()
        )));
    }
    if !m.is_file() {
        return Err(Error::Invalid(format!(
            "{what} {} is not a regular file",
            p.display()
        )));
    }
    Ok(())
}

fn open_regular(p: &Path, what: &str) -> Result<std::fs::File> {
    regular(p, what)?;
    std::fs::File::open(p).map_err(io(p))
}

/// Whether `a` and `b` are one regular file (same device and inode, whatever the spelling or
/// links); false when either is missing or not a regular file (so nothing is opened that
/// could block, such as a pipe).
pub(crate) fn same_regular_file(a: &Path, b: &Path) -> bool {
    let regular = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file());
    regular(a) && regular(b) && same_file::is_same_file(a, b).unwrap_or(false)
}

/// `out` is not the manifest, and is a regular file if it exists.
fn check_out(manifest: &Path, out: &Path) -> Result<()> {
    if same_regular_file(manifest, out) {
        return Err(Error::Invalid(format!(
            "--out {} is the manifest {} itself; write the scores to another file",
            out.display(),
            manifest.display()
        )));
    }
    if std::fs::symlink_metadata(out).is_ok() {
        regular(out, "--out")?;
    }
    Ok(())
}

/// One line read by [`next_line`].
struct Line {
    /// Longer than the cap: its bytes were skipped, not kept.
    too_long: bool,
    /// Ended by `\n` (not the end of the file).
    ended: bool,
    /// Bytes consumed, the `\n` included.
    len: u64,
}

/// Reads the next line into `buf` (without its `\n`), keeping at most `cap` bytes of it; `None`
/// at the end of the input.
fn next_line(r: &mut impl BufRead, cap: usize, buf: &mut Vec<u8>) -> std::io::Result<Option<Line>> {
    buf.clear();
    let (mut too_long, mut len) = (false, 0u64);
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            let ended = false; // the input ended without a final newline
            return Ok((len > 0).then_some(Line {
                too_long,
                ended,
                len,
            }));
        }
        let newline = chunk.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(chunk.len());
        if !too_long {
            if buf.len() + take > cap {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        let used = take + usize::from(newline.is_some());
        r.consume(used);
        len += used as u64;
        if newline.is_some() {
            return Ok(Some(Line {
                too_long,
                ended: true,
                len,
            }));
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// What `out` holds from a previous, possibly interrupted run; `None` when it does not exist.
/// Refuses a file that is not sciscore output, so that nothing else is appended to or cut: every
/// complete line must be a record, and a last line without `\n` must be the beginning of one
/// (torn by an interrupted run).
fn read_out(out: &Path) -> Result<Option<Previous>> {
    if std::fs::symlink_metadata(out).is_err() {
        return Ok(None);
    }
    let not_ours = |what: String| {
        Error::Invalid(format!(
            "--out {} is not sciscore batch output ({what}); refusing to add to it: pass a new \
             file, or the output of an earlier run to resume it",
            out.display()
        ))
    };
    let mut reader = std::io::BufReader::new(open_regular(out, "--out")?);
    let (mut records, mut complete, mut n) = (Vec::new(), 0u64, 0usize);
    let mut buf = Vec::new();
    while let Some(l) = next_line(&mut reader, MAX_RECORD_BYTES, &mut buf).map_err(io(out))? {
        if l.too_long {
            return Err(not_ours(format!(
                "line {} is over {MAX_RECORD_BYTES} bytes",
                n + 1
            )));
        }
        match serde_json::from_slice::<Record>(&buf) {
            Ok(r) if l.ended => records.push(r),
            // A torn line is a prefix of a record: it starts as one and the JSON stops early.
            Err(e) if !l.ended && buf.starts_with(b"{") && e.is_eof() => break,
            _ => return Err(not_ours(format!("line {} is not a record of a run", n + 1))),
        }
        complete += l.len;
        n += 1;
    }
    Ok(Some(Previous { records, complete }))
}

struct Item {
    rec: Record,
    /// (3, S, S) or the reason it could not be read.
    pixels: std::result::Result<Vec<f32>, String>,
}

/// Parses and decodes manifest lines on a reader thread, skipping blank and `done` lines.
/// `line` counts physical lines, blank ones included.
fn read_manifest(
    manifest: PathBuf,
    done: HashSet<usize>,
    pre: Arc<crate::config::PreprocessorConfig>,
    tx: mpsc::SyncSender<(Item, f64)>,
) -> Result<()> {
    let base = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut reader = std::io::BufReader::new(open_regular(&manifest, "the manifest")?);
    let mut buf = Vec::new();
    let mut n = 0usize;
    while let Some(l) = next_line(&mut reader, MAX_LINE_BYTES, &mut buf).map_err(io(&manifest))? {
        let line_no = n;
        n += 1;
        if (!l.too_long && is_blank(&buf)) || done.contains(&line_no) {
            continue;
        }
        let t0 = std::time::Instant::now();
        let v: std::result::Result<Value, String> = if l.too_long {
            Err(format!("the line is longer than {MAX_LINE_BYTES} bytes"))
        } else {
            match std::str::from_utf8(&buf) {
                Ok(s) => Ok(serde_json::from_str(s).unwrap_or(Value::Null)),
                Err(e) => Err(format!(
                    "the line is not valid UTF-8 (byte {})",
                    e.valid_up_to()
                )),
            }
        };
        let v = v.as_ref();
        let field = |k: &str| {
            v.ok()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let mut rec = Record {
            line: line_no,
            prompt: field("prompt").unwrap_or_default(),
            image: field("image").unwrap_or_default(),
            group: field("group"),
            score: None,
            error: None,
        };
        let pixels = match (v, field("prompt"), field("image")) {
            (Err(e), _, _) => Err(e.clone()),
            (Ok(_), Some(_), Some(img)) => read_image_file(&base.join(&img))
                .and_then(|b| image_to_pixels(&img, &b, &pre))
                .map_err(|e| e.to_string()),
            _ => Err("expected {\"prompt\": string, \"image\": path} on this line".to_string()),
        };
        if let Err(e) = &pixels {
            rec.error = Some(e.clone());
        }
        if tx
            .send((Item { rec, pixels }, t0.elapsed().as_secs_f64()))
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// Scores the manifest with `model`, `batch` images per pass, appending records to `out` (or
/// handing them only to `on_record` when there is no `out`).
pub fn run(
    model: &Model,
    manifest: &Path,
    out: Option<&Path>,
    batch: usize,
    mut on_record: impl FnMut(&Record),
) -> Result<BatchSummary> {
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(Error::Invalid(format!(
            "the batch size {batch} is not in 1..={MAX_BATCH}"
        )));
    }
    let (total, found) = prepare(manifest, out)?;
    let mut writer = None;
    let mut previous = Vec::new();
    if let Some(o) = out {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(o)
            .map_err(io(o))?;
        if let Some(p) = found {
            // Cut a torn last line: the run writes that record again.
            if f.metadata().map_err(io(o))?.len() > p.complete {
                f.set_len(p.complete).map_err(io(o))?;
            }
            previous = p.records;
        }
        writer = Some((f, o));
    }
    let done: HashSet<usize> = previous.iter().map(|r| r.line).collect();
    let pre = Arc::new(model.preprocessor().clone());
    let (tx, rx) = mpsc::sync_channel(batch * 2);
    let reader = {
        let (m, d) = (manifest.to_path_buf(), done.clone());
        std::thread::spawn(move || read_manifest(m, d, pre, tx))
    };
    let mut records: Vec<Record> = previous;
    let resumed = records.len();
    let (mut decode_s, mut model_s) = (0.0, 0.0);
    let mut pending: Vec<Item> = Vec::new();
    let mut rx = rx.into_iter();
    loop {
        let next = rx.next();
        let end = next.is_none();
        if let Some((item, dt)) = next {
            decode_s += dt;
            pending.push(item);
        }
        if pending.len() < batch && !end {
            continue;
        }
        let t0 = std::time::Instant::now();
        let ok: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].pixels.is_ok())
            .collect();
        if !ok.is_empty() {
            let mut pixels = Vec::new();
            for &i in &ok {
                pixels.extend_from_slice(pending[i].pixels.as_ref().expect("ok"));
            }
            let feats = pollster::block_on(model.embed_pixels(&pixels, ok.len()))?;
            for (&i, f) in ok.iter().zip(&feats) {
                let t = pollster::block_on(model.text_embeds(&[&pending[i].rec.prompt]))?.remove(0);
                pending[i].rec.score =
                    Some(score::scores(&t, std::slice::from_ref(f), model.logit_scale())[0]);
            }
        }
        model_s += t0.elapsed().as_secs_f64();
        for item in pending.drain(..) {
            if let Some((w, o)) = writer.as_mut() {
                // One write per record, so an interrupted run tears at most the last line.
                let line = serde_json::to_string(&item.rec).expect("records serialize") + "\n";
                w.write_all(line.as_bytes()).map_err(io(o))?;
            }
            on_record(&item.rec);
            records.push(item.rec);
        }
        if end {
            break;
        }
    }
    reader
        .join()
        .map_err(|_| Error::Invalid("the manifest reader thread panicked".into()))??;
    let mut groups: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for r in &records {
        if let (Some(g), Some(s)) = (&r.group, r.score) {
            let e = groups.entry(g.clone()).or_default();
            e.0 += 1;
            e.1 += s as f64;
        }
    }
    Ok(BatchSummary {
        lines: total,
        scored: records.iter().filter(|r| r.score.is_some()).count(),
        errors: records.iter().filter(|r| r.error.is_some()).count(),
        resumed,
        groups: groups
            .into_iter()
            .map(|(k, (n, s))| {
                (
                    k,
                    GroupMean {
                        n,
                        mean_score: s / n as f64,
                    },
                )
            })
            .collect(),
        decode_seconds: decode_s,
        model_seconds: model_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<(Vec<u8>, bool, bool, u64)> {
        // A tiny buffer, so lines span several fills.
        let mut r = std::io::BufReader::with_capacity(3, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(l) = next_line(&mut r, cap, &mut buf).unwrap() {
            out.push((buf.clone(), l.too_long, l.ended, l.len));
        }
        out
    }

    #[test]
    fn next_line_caps_long_lines_and_reports_a_torn_end() {
        let got = lines(b"ab\n\nabcdefgh\nxyz", 4);
        assert_eq!(
            got,
            [
                (b"ab".to_vec(), false, true, 3),
                (vec![], false, true, 1),
                (vec![], true, true, 9),
                (b"xyz".to_vec(), false, false, 3),
            ]
        );
        assert!(lines(b"", 4).is_empty());
        // A line of exactly the cap is kept.
        assert_eq!(lines(b"abcd\n", 4), [(b"abcd".to_vec(), false, true, 5)]);
    }
}
