//! `sciscore batch`: score many (prompt, image) pairs from a JSONL manifest, streamed, batched,
//! resumable. Each input line `{"prompt": ..., "image": path, "group"?: ...}` gives one output line
//! with `exp(logit_scale) * cos(text, image)`; the summary has the mean score per group (how the
//! Science-T2I authors average SciScore over a model's implicit / explicit / superficial images).
//! Relative image paths are resolved against the manifest's folder. A line may also carry
//! `"role": "implicit" | "explicit" | "superficial"` (its `prompt` being the implicit prompt):
//! the summary then places the implicit-prompt images between the superficial (0) and the
//! explicit (1) ones per group, `(IP - SP) / (EP - SP)`.
//!
//! With a [`Shard`] a process scores only its share of the lines and writes its output under a
//! temporary name (`<out>.partial`), renamed when the shard is complete; [`merge()`] checks and
//! joins the shards' outputs. Cluster use: docs/cluster.md.

mod merge;
mod parquet_out;
mod shard;

pub use merge::{merge, MergeReport};
pub use shard::{detect, out_path, partial_path, Format, Shard, MAX_SHARDS, SHARDS_ENV};

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
    /// `implicit`, `explicit` or `superficial`, when the manifest line gives one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<String>,
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

/// The roles a manifest line may have.
pub const ROLES: [&str; 3] = ["implicit", "explicit", "superficial"];

/// Mean scores of the three roles among some records, and where the implicit-prompt images
/// stand between the superficial (0) and the explicit (1) ones.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoleMeans {
    pub implicit: Option<GroupMean>,
    pub explicit: Option<GroupMean>,
    pub superficial: Option<GroupMean>,
    /// `(IP - SP) / (EP - SP)`; `None` (JSON null) when a role has no score or EP == SP.
    pub position: Option<f64>,
}

/// [`RoleMeans`] over every line with a role, and per group.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoleSummary {
    pub all: RoleMeans,
    pub groups: BTreeMap<String, RoleMeans>,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchSummary {
    /// Non-blank manifest lines (of this shard, in a sharded run).
    pub lines: usize,
    pub scored: usize,
    pub errors: usize,
    /// Lines found already done in `--out` and skipped.
    pub resumed: usize,
    pub groups: BTreeMap<String, GroupMean>,
    /// Present when some line has a role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<RoleSummary>,
    /// `I/N` in a sharded run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub decode_seconds: f64,
    pub model_seconds: f64,
}

/// What to run: the manifest, where the records go and which lines.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub manifest: &'a Path,
    /// The output file; `None`: records only to the callback. With a shard or parquet it is
    /// written as `<out>.partial` (JSONL, resumable) and renamed (converted) when complete.
    pub out: Option<&'a Path>,
    /// Images per forward pass, 1..=[`MAX_BATCH`].
    pub batch: usize,
    /// Only the lines of this shard.
    pub shard: Option<Shard>,
    pub format: Format,
    /// Set to a signal's number (by its handler) to stop after the pass in flight: its records
    /// are written and the run returns [`Error::Interrupted`].
    pub stop: Option<&'a std::sync::atomic::AtomicI32>,
}

impl Job<'_> {
    /// Whether the output is finished under a temporary name and renamed when complete.
    fn atomic(&self) -> bool {
        self.out.is_some() && (self.shard.is_some() || self.format == Format::Parquet)
    }

    fn owns(&self, line: usize) -> bool {
        self.shard.is_none_or(|s| s.owns(line))
    }
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
    check_job(&Job {
        manifest,
        out,
        batch: 1,
        shard: None,
        format: Format::Jsonl,
        stop: None,
    })
    .map(|c| c.lines)
}

/// What [`check_job`] found.
pub struct Checked {
    /// Non-blank manifest lines of the job (of its shard).
    pub lines: usize,
    /// The summary of an output that is already complete: nothing is left to score.
    pub finished: Option<BatchSummary>,
}

/// [`check`] for a [`Job`]: also checks that an existing finished output or `<out>.partial` is
/// this job's (its lines are the shard's), and tells whether the job is already done.
pub fn check_job(job: &Job) -> Result<Checked> {
    let (lines, start) = prepare(job)?;
    let finished = match start {
        Start::Finished(records) => {
            Some(summarize(job, lines, records.len(), &records, (0.0, 0.0)))
        }
        _ => None,
    };
    Ok(Checked { lines, finished })
}

/// What an existing output holds.
struct Previous {
    records: Vec<Record>,
    /// Bytes of its complete lines; a torn last line lies past them.
    complete: u64,
    /// Its last line is torn (an interrupted write).
    torn: bool,
}

/// Where a run starts.
enum Start {
    /// Nothing written yet (or no output).
    Fresh,
    /// Records of an earlier run in the file the run appends to.
    Resume(Previous),
    /// The finished output of an atomic job exists and holds every line: nothing to do.
    Finished(Vec<Record>),
}

/// [`check_job`], also returning what the output holds.
fn prepare(job: &Job) -> Result<(usize, Start)> {
    let (total, lines) = count_lines(job)?;
    if total == 0 {
        return Err(Error::Invalid(format!(
            "the manifest {} is empty",
            job.manifest.display()
        )));
    }
    let Some(o) = job.out else {
        return Ok((lines, Start::Fresh));
    };
    check_out(job.manifest, o)?;
    if !job.atomic() {
        return Ok((
            lines,
            read_out(o, "--out")?.map_or(Start::Fresh, Start::Resume),
        ));
    }
    let partial = partial_path(o);
    check_out(job.manifest, &partial)?;
    let folder = o.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = folder.filter(|d| !d.is_dir()) {
        return Err(Error::Invalid(format!(
            "the folder {} of --out does not exist; create it first",
            d.display()
        )));
    }
    if std::fs::symlink_metadata(o).is_ok() {
        regular(o, "--out")?;
        let records = read_output(o)?;
        check_lines(job, o, &records)?;
        if records.len() != lines {
            return Err(Error::Invalid(format!(
                "{} exists but holds {} of this job's {lines} lines (was the manifest changed?); \
                 remove it to score them again",
                o.display(),
                records.len()
            )));
        }
        return Ok((lines, Start::Finished(records)));
    }
    let previous = read_out(&partial, "the unfinished output")?;
    if let Some(p) = &previous {
        check_lines(job, &partial, &p.records)?;
    }
    Ok((lines, previous.map_or(Start::Fresh, Start::Resume)))
}

/// Every record of `path` is a line of this job, at most once.
fn check_lines(job: &Job, path: &Path, records: &[Record]) -> Result<()> {
    let mut seen = HashSet::new();
    for r in records {
        if !job.owns(r.line) {
            return Err(Error::Invalid(format!(
                "{} holds line {} (from 1), which is not in shard {} (was --shard or the shard \
                 count changed?); pass the shard it was written for, or remove it",
                path.display(),
                r.line + 1,
                job.shard.map(|s| s.to_string()).unwrap_or_default()
            )));
        }
        if !seen.insert(r.line) {
            return Err(Error::Invalid(format!(
                "{} holds line {} (from 1) twice (did two processes run this shard at once?); \
                 remove it to score the shard again",
                path.display(),
                r.line + 1
            )));
        }
    }
    Ok(())
}

/// Non-blank lines of the manifest, all of them and the job's (for progress), without parsing
/// them.
fn count_lines(job: &Job) -> Result<(usize, usize)> {
    let manifest = job.manifest;
    let mut reader = std::io::BufReader::new(open_regular(manifest, "the manifest")?);
    let mut buf = Vec::new();
    let (mut n, mut all, mut ours) = (0, 0, 0);
    while let Some(l) = next_line(&mut reader, MAX_LINE_BYTES, &mut buf).map_err(io(manifest))? {
        let used = l.too_long || !is_blank(&buf);
        all += usize::from(used);
        ours += usize::from(used && job.owns(n));
        n += 1;
    }
    Ok((all, ours))
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
/// (torn by an interrupted run). Lines are read as bytes, so a tear inside a UTF-8 character
/// costs only the torn line. `what` names the file in messages.
fn read_out(out: &Path, what: &str) -> Result<Option<Previous>> {
    if std::fs::symlink_metadata(out).is_err() {
        return Ok(None);
    }
    let not_ours = |why: String| {
        Error::Invalid(format!(
            "{what} {} is not sciscore batch output ({why}); refusing to add to it: pass a new \
             file, or the output of an earlier run to resume it",
            out.display()
        ))
    };
    let mut reader = std::io::BufReader::new(open_regular(out, what)?);
    let (mut records, mut complete, mut n, mut torn) = (Vec::new(), 0u64, 0usize, false);
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
            Err(e) if !l.ended && buf.starts_with(b"{") && e.is_eof() => {
                torn = true;
                break;
            }
            _ => return Err(not_ours(format!("line {} is not a record of a run", n + 1))),
        }
        complete += l.len;
        n += 1;
    }
    Ok(Some(Previous {
        records,
        complete,
        torn,
    }))
}

/// The records of a finished output, JSONL or parquet (told by its first bytes). An unfinished
/// one (`*.partial`, or a torn last line) is refused.
pub fn read_output(path: &Path) -> Result<Vec<Record>> {
    regular(path, "the output")?;
    if path.to_string_lossy().ends_with(".partial") {
        return Err(Error::Invalid(format!(
            "{} is an unfinished shard output (its shard is still running or was interrupted): \
             rerun that shard to finish it",
            path.display()
        )));
    }
    if parquet_out::is_parquet(path) {
        return parquet_out::read(path);
    }
    match read_out(path, "the output")? {
        Some(p) if p.torn => Err(Error::Invalid(format!(
            "{} ends in a torn line: it is unfinished; rerun the batch that writes it",
            path.display()
        ))),
        Some(p) => Ok(p.records),
        None => Err(Error::Io {
            name: path.display().to_string(),
            message: "no such file".into(),
        }),
    }
}

struct Item {
    rec: Record,
    /// (3, S, S) or the reason it could not be read.
    pixels: std::result::Result<Vec<f32>, String>,
}

/// Manifest line `line` (its bytes, or too long) as a record without a score, with the reason
/// it cannot be scored in `error` (the image itself is not read here).
fn parse_line(line: usize, buf: &[u8], too_long: bool) -> Record {
    let v: std::result::Result<Value, String> = if too_long {
        Err(format!("the line is longer than {MAX_LINE_BYTES} bytes"))
    } else {
        match std::str::from_utf8(buf) {
            Ok(s) => Ok(serde_json::from_str(s).unwrap_or(Value::Null)),
            Err(e) => Err(format!(
                "the line is not valid UTF-8 (byte {})",
                e.valid_up_to()
            )),
        }
    };
    let field = |k: &str| {
        v.as_ref()
            .ok()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let role = v
        .as_ref()
        .ok()
        .and_then(|v| v.get("role"))
        .filter(|r| !r.is_null());
    let error = match (&v, field("prompt"), field("image"), role) {
        (Err(e), _, _, _) => Some(e.clone()),
        (Ok(_), Some(_), Some(_), None) => None,
        (Ok(_), Some(_), Some(_), Some(r)) if r.as_str().is_some_and(|r| ROLES.contains(&r)) => {
            None
        }
        (Ok(_), Some(_), Some(_), Some(r)) => Some(format!(
            "role {} is not one of implicit, explicit, superficial",
            shard::shown(&r.as_str().map_or_else(|| r.to_string(), str::to_string))
        )),
        _ => Some("expected {\"prompt\": string, \"image\": path} on this line".to_string()),
    };
    Record {
        line,
        prompt: field("prompt").unwrap_or_default(),
        image: field("image").unwrap_or_default(),
        group: field("group"),
        role: field("role").filter(|r| ROLES.contains(&r.as_str())),
        score: None,
        error,
    }
}

/// Reads the manifest's non-blank lines, each with `f(line, bytes, too_long)`; `line` counts
/// physical lines, blank ones included. `f` returns false to stop.
fn each_line(manifest: &Path, mut f: impl FnMut(usize, &[u8], bool) -> bool) -> Result<()> {
    let mut reader = std::io::BufReader::new(open_regular(manifest, "the manifest")?);
    let mut buf = Vec::new();
    let mut n = 0usize;
    while let Some(l) = next_line(&mut reader, MAX_LINE_BYTES, &mut buf).map_err(io(manifest))? {
        n += 1;
        if (l.too_long || !is_blank(&buf)) && !f(n - 1, &buf, l.too_long) {
            break;
        }
    }
    Ok(())
}

/// Parses and decodes manifest lines on a reader thread, skipping `done` lines and those of
/// other shards.
fn read_manifest(
    manifest: PathBuf,
    done: HashSet<usize>,
    shard: Option<Shard>,
    pre: Arc<crate::models::clip::config::PreprocessorConfig>,
    tx: mpsc::SyncSender<(Item, f64)>,
) -> Result<()> {
    let base = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    each_line(&manifest, |line_no, buf, too_long| {
        if done.contains(&line_no) || shard.is_some_and(|s| !s.owns(line_no)) {
            return true;
        }
        let t0 = std::time::Instant::now();
        let rec = parse_line(line_no, buf, too_long);
        let pixels = match &rec.error {
            Some(e) => Err(e.clone()),
            None => read_image_file(&base.join(&rec.image))
                .and_then(|b| image_to_pixels(&rec.image, &b, &pre))
                .map_err(|e| e.to_string()),
        };
        let mut rec = rec;
        if let Err(e) = &pixels {
            rec.error = Some(e.clone());
        }
        tx.send((Item { rec, pixels }, t0.elapsed().as_secs_f64()))
            .is_ok()
    })
}

/// Scores the manifest with `model`, `batch` images per pass, appending records to `out` (or
/// handing them only to `on_record` when there is no `out`).
pub fn run(
    model: &Model,
    manifest: &Path,
    out: Option<&Path>,
    batch: usize,
    on_record: impl FnMut(&Record),
) -> Result<BatchSummary> {
    let job = Job {
        manifest,
        out,
        batch,
        shard: None,
        format: Format::Jsonl,
        stop: None,
    };
    run_job(model, &job, on_record)
}

fn write_err(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Output {
        name: p.display().to_string(),
        message: e.to_string(),
    }
}

/// Runs a [`Job`]: its lines are scored, `batch` images per pass, and each record is appended to
/// its output (or `<out>.partial`, renamed when complete) and handed to `on_record`.
pub fn run_job(
    model: &Model,
    job: &Job,
    mut on_record: impl FnMut(&Record),
) -> Result<BatchSummary> {
    let batch = job.batch;
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(Error::Invalid(format!(
            "the batch size {batch} is not in 1..={MAX_BATCH}"
        )));
    }
    let (total, start) = prepare(job)?;
    let found = match start {
        Start::Finished(records) => {
            if let Some(o) = job.out {
                // A run that stopped between the rename and removing its journal.
                let _ = std::fs::remove_file(partial_path(o));
            }
            return Ok(summarize(job, total, records.len(), &records, (0.0, 0.0)));
        }
        Start::Resume(p) => Some(p),
        Start::Fresh => None,
    };
    let target = job.out.map(|o| {
        if job.atomic() {
            partial_path(o)
        } else {
            o.to_path_buf()
        }
    });
    let mut writer = None;
    let mut previous = Vec::new();
    if let Some(o) = &target {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(o)
            .map_err(write_err(o))?;
        if let Some(p) = found {
            // Cut a torn last line: the run writes that record again.
            if f.metadata().map_err(write_err(o))?.len() > p.complete {
                f.set_len(p.complete).map_err(write_err(o))?;
            }
            previous = p.records;
        }
        writer = Some((f, o));
    }
    let done: HashSet<usize> = previous.iter().map(|r| r.line).collect();
    let pre = Arc::new(model.preprocessor().clone());
    let (tx, rx) = mpsc::sync_channel(batch * 2);
    let reader = {
        let (m, d, s) = (job.manifest.to_path_buf(), done.clone(), job.shard);
        std::thread::spawn(move || read_manifest(m, d, s, pre, tx))
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
        let pixels: Vec<_> = pending.iter().map(|i| i.pixels.as_ref()).collect();
        let feats: Vec<_> = pollster::block_on(model.embed_pixels_each(pixels))?
            .into_iter()
            .map(|f| f.ok())
            .collect();
        for (item, f) in pending.iter_mut().zip(feats) {
            if let Some(f) = f {
                let t = pollster::block_on(model.text_embeds(&[&item.rec.prompt]))?.remove(0);
                item.rec.score = Some(score::scores(&t, &[f], model.logit_scale())[0]);
            }
        }
        model_s += t0.elapsed().as_secs_f64();
        for item in pending.drain(..) {
            if let Some((w, o)) = writer.as_mut() {
                // One write per record, so an interrupted run tears at most the last line.
                let line = serde_json::to_string(&item.rec).expect("records serialize") + "\n";
                w.write_all(line.as_bytes()).map_err(write_err(o))?;
            }
            on_record(&item.rec);
            records.push(item.rec);
        }
        if end {
            break;
        }
        let signal = job
            .stop
            .map_or(0, |s| s.load(std::sync::atomic::Ordering::Relaxed));
        if signal != 0 {
            // Dropping the receiver ends the reader thread at its next line.
            return Err(Error::Interrupted(signal));
        }
    }
    reader
        .join()
        .map_err(|_| Error::Invalid("the manifest reader thread panicked".into()))??;
    if let (Some((w, partial)), Some(o), true) = (writer, job.out, job.atomic()) {
        finish(w, partial, o, job.format, &records)?;
    }
    Ok(summarize(
        job,
        total,
        resumed,
        &records,
        (decode_s, model_s),
    ))
}

/// Makes a complete `<out>.partial` the finished `out`: synced, then renamed (JSONL) or converted
/// (parquet, written under `<out>.partial.tmp` and renamed), so `out` exists only complete.
fn finish(
    w: std::fs::File,
    partial: &Path,
    out: &Path,
    format: Format,
    records: &[Record],
) -> Result<()> {
    w.sync_all().map_err(write_err(partial))?;
    drop(w);
    match format {
        Format::Jsonl => std::fs::rename(partial, out).map_err(write_err(out))?,
        Format::Parquet => {
            let mut tmp = partial.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            parquet_out::write(&tmp, records)?;
            std::fs::rename(&tmp, out).map_err(write_err(out))?;
            std::fs::remove_file(partial).map_err(write_err(partial))?;
        }
    }
    // The rename is durable once the folder is synced (where a folder can be opened).
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The mean score of `(n, sum)`.
fn mean((n, s): (usize, f64)) -> GroupMean {
    GroupMean {
        n,
        mean_score: s / n as f64,
    }
}

/// [`RoleMeans`] of the scored records with a role among `records`.
fn role_means<'a>(records: impl Iterator<Item = &'a Record>) -> RoleMeans {
    let mut sums = [(0usize, 0f64); 3];
    for r in records {
        if let (Some(role), Some(s)) = (&r.role, r.score) {
            if let Some(i) = ROLES.iter().position(|x| x == role) {
                sums[i].0 += 1;
                sums[i].1 += s as f64;
            }
        }
    }
    let [ip, ep, sp] = sums.map(|x| (x.0 > 0).then(|| mean(x)));
    let position = match (&ip, &ep, &sp) {
        (Some(i), Some(e), Some(s)) => {
            Some((i.mean_score - s.mean_score) / (e.mean_score - s.mean_score))
                .filter(|p| p.is_finite())
        }
        _ => None,
    };
    RoleMeans {
        implicit: ip,
        explicit: ep,
        superficial: sp,
        position,
    }
}

/// The summary of `records` (`resumed` of them from an earlier run).
fn summarize(
    job: &Job,
    lines: usize,
    resumed: usize,
    records: &[Record],
    (decode_seconds, model_seconds): (f64, f64),
) -> BatchSummary {
    let mut groups: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for r in records {
        if let (Some(g), Some(s)) = (&r.group, r.score) {
            let e = groups.entry(g.clone()).or_default();
            e.0 += 1;
            e.1 += s as f64;
        }
    }
    let roles = records.iter().any(|r| r.role.is_some()).then(|| {
        let mut by_group: BTreeMap<&String, Vec<&Record>> = BTreeMap::new();
        for r in records.iter().filter(|r| r.role.is_some()) {
            if let Some(g) = &r.group {
                by_group.entry(g).or_default().push(r);
            }
        }
        RoleSummary {
            all: role_means(records.iter()),
            groups: by_group
                .into_iter()
                .map(|(g, rs)| (g.clone(), role_means(rs.into_iter())))
                .collect(),
        }
    });
    BatchSummary {
        lines,
        scored: records.iter().filter(|r| r.score.is_some()).count(),
        errors: records.iter().filter(|r| r.error.is_some()).count(),
        resumed,
        groups: groups.into_iter().map(|(k, v)| (k, mean(v))).collect(),
        roles,
        shard: job.shard.map(|s| s.to_string()),
        decode_seconds,
        model_seconds,
    }
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
