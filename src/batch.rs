//! `sciscore batch`: score many (prompt, image) pairs from a JSONL manifest, streamed, batched,
//! resumable. Each input line `{"prompt": ..., "image": path, "group"?: ...}` gives one output line
//! with `exp(logit_scale) * cos(text, image)`; the summary has the mean score per group (how the
//! Science-T2I authors average SciScore over a model's implicit / explicit / superficial images).
//! Relative image paths are resolved against the manifest's folder.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::preprocess::image_to_pixels;
use crate::score;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

/// One output line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// 0-based line number in the manifest.
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

/// Lines of the manifest (for progress), without parsing them.
pub fn count_lines(manifest: &Path) -> Result<usize> {
    let f = open(manifest)?;
    Ok(std::io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .filter(|l| !l.trim().is_empty())
        .count())
}

fn open(p: &Path) -> Result<std::fs::File> {
    std::fs::File::open(p).map_err(|e| Error::Io {
        name: p.display().to_string(),
        message: e.to_string(),
    })
}

/// Records already in `out` (a previous, possibly interrupted run). A torn last line is cut off.
fn resume(out: &Path) -> Result<Vec<Record>> {
    let io = |e: std::io::Error| Error::Io {
        name: out.display().to_string(),
        message: e.to_string(),
    };
    let Ok(text) = std::fs::read_to_string(out) else {
        return Ok(Vec::new());
    };
    let keep = text.rfind('\n').map_or(0, |i| i + 1);
    if keep < text.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .map_err(io)?;
        f.set_len(keep as u64).map_err(io)?;
    }
    Ok(text[..keep]
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .collect())
}

struct Item {
    rec: Record,
    /// (3, S, S) or the reason it could not be read.
    pixels: std::result::Result<Vec<f32>, String>,
}

/// Parses and decodes manifest lines on a reader thread, skipping `done` lines.
fn read_manifest(
    manifest: PathBuf,
    done: HashSet<usize>,
    pre: Arc<crate::config::PreprocessorConfig>,
    tx: mpsc::SyncSender<(Item, f64)>,
) -> Result<()> {
    let base = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let reader = std::io::BufReader::new(open(&manifest)?);
    let mut line_no = 0usize;
    for line in reader.lines() {
        let line = line.map_err(|e| Error::Io {
            name: manifest.display().to_string(),
            message: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let n = line_no;
        line_no += 1;
        if done.contains(&n) {
            continue;
        }
        let t0 = std::time::Instant::now();
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let mut rec = Record {
            line: n,
            prompt: field("prompt").unwrap_or_default(),
            image: field("image").unwrap_or_default(),
            group: field("group"),
            score: None,
            error: None,
        };
        let pixels = match (field("prompt"), field("image")) {
            (Some(_), Some(img)) => {
                let path = base.join(&img);
                std::fs::read(&path)
                    .map_err(|e| format!("cannot read image {}: {e}", path.display()))
                    .and_then(|b| image_to_pixels(&img, &b, &pre).map_err(|e| e.to_string()))
            }
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
    let total = count_lines(manifest)?;
    if total == 0 {
        return Err(Error::Invalid(format!(
            "the manifest {} is empty",
            manifest.display()
        )));
    }
    let previous = match out {
        Some(o) => resume(o)?,
        None => Vec::new(),
    };
    let done: HashSet<usize> = previous.iter().map(|r| r.line).collect();
    let mut writer = match out {
        Some(o) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(o)
                .map_err(|e| Error::Io {
                    name: o.display().to_string(),
                    message: e.to_string(),
                })?,
        ),
        None => None,
    };
    let pre = Arc::new(model.preprocessor().clone());
    let (tx, rx) = mpsc::sync_channel(batch.max(1) * 2);
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
        if pending.len() < batch.max(1) && !end {
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
            if let Some(w) = writer.as_mut() {
                let line = serde_json::to_string(&item.rec).expect("records serialize");
                writeln!(w, "{line}").map_err(|e| Error::Io {
                    name: "--out".into(),
                    message: e.to_string(),
                })?;
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
