//! `sciscore eval`: the Science-T2I-S/-C benchmark over its Hugging Face parquet shards, with the
//! semantics of the authors' eval script: per row, the implicit prompt against
//! `[explicit_image[0], superficial_image[0]]`; correct iff P(explicit) > P(superficial) (strict).
//!
//! Row groups are streamed (the S split is 1.5 GB) by a reader thread that also decodes and
//! preprocesses the images, so decoding overlaps the model.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::preprocess::image_to_pixels;
use crate::score;
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use parquet::schema::types::Type;
use std::collections::BTreeMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};
#[cfg(not(target_arch = "wasm32"))]
use std::sync::{mpsc, Arc};

/// The columns the benchmark reads.
const COLUMNS: [&str; 5] = [
    "implicit_prompt",
    "explicit_image",
    "superficial_image",
    "category",
    "law",
];

/// One evaluated row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalRow {
    pub row: usize,
    pub category: String,
    pub law: String,
    pub prob_explicit: f32,
    pub prob_superficial: f32,
    pub correct: bool,
}

/// A row that could not be scored (an undecodable image, a malformed cell).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowError {
    pub row: usize,
    pub message: String,
}

/// The summary, in the structure of the authors' eval script plus the row counts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    /// Rows scored (rows with errors are not counted here).
    pub rows: usize,
    pub overall_accuracy: f64,
    pub category_accuracy: BTreeMap<String, f64>,
    pub law_accuracy: BTreeMap<String, f64>,
    /// Rows skipped because of bad input.
    pub errors: Vec<RowError>,
    /// Seconds spent decoding and preprocessing images (reader thread) and in the model.
    pub decode_seconds: f64,
    pub model_seconds: f64,
}

#[cfg(not(target_arch = "wasm32"))]
/// The parquet files of `path`: the file itself, or the `*.parquet` files of a folder, sorted.
pub fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    let io = |e: std::io::Error| Error::Io {
        name: path.display().to_string(),
        message: e.to_string(),
    };
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "no .parquet files in {}",
            path.display()
        )));
    }
    Ok(files)
}

#[cfg(not(target_arch = "wasm32"))]
/// Refuses output files (`(flag, path)`) that are one of the dataset's `files` or one another,
/// before anything is written: writing one would destroy the other.
pub fn check_outputs(files: &[PathBuf], outputs: &[(&str, &Path)]) -> Result<()> {
    use crate::jobs::batch::same_regular_file;
    for (i, &(flag, p)) in outputs.iter().enumerate() {
        if let Some(f) = files.iter().find(|f| same_regular_file(f, p)) {
            return Err(Error::Invalid(format!(
                "{flag} {} is the dataset file {}; write it elsewhere",
                p.display(),
                f.display()
            )));
        }
        if let Some(&(other, _)) = outputs[..i].iter().find(|o| same_output(o.1, p)) {
            return Err(Error::Invalid(format!(
                "{flag} {} is the same file as {other}; give each output its own file",
                p.display()
            )));
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
/// Whether two output paths name one file, existing or to be created (then: the same folder
/// and name).
fn same_output(a: &Path, b: &Path) -> bool {
    let place = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new(".")).canonicalize().ok()?;
        Some((dir, p.file_name()?.to_owned()))
    };
    crate::jobs::batch::same_regular_file(a, b)
        || (!a.exists() && !b.exists() && place(a).is_some() && place(a) == place(b))
}

/// A decoded row, ready for the model.
struct Prepared {
    row: usize,
    prompt: String,
    category: String,
    law: String,
    /// (2, 3, S, S): explicit then superficial.
    pixels: Vec<f32>,
}

fn pq_err(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Io {
        name: name.to_string(),
        message: format!("parquet: {e}"),
    }
}

/// Opens `file` and checks it has the benchmark's columns; returns the reader and the projection.
#[cfg(not(target_arch = "wasm32"))]
fn open(file: &Path) -> Result<(SerializedFileReader<std::fs::File>, Type)> {
    let f = std::fs::File::open(file).map_err(|e| Error::Io {
        name: file.display().to_string(),
        message: e.to_string(),
    })?;
    open_reader(&file.display().to_string(), f)
}

/// Opens a parquet file held in memory (the page's Science-T2I panel); see [`open`].
pub fn open_bytes(name: &str, data: Vec<u8>) -> Result<(SerializedFileReader<bytes::Bytes>, Type)> {
    open_reader(name, bytes::Bytes::from(data))
}

fn open_reader<R: ChunkReader + 'static>(
    name: &str,
    f: R,
) -> Result<(SerializedFileReader<R>, Type)> {
    let reader = SerializedFileReader::new(f).map_err(|e| pq_err(name, e))?;
    let schema = reader.metadata().file_metadata().schema();
    let fields = schema.get_fields();
    let found: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !found.contains(c))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "{name}: missing column(s) {missing:?}; the file has {found:?} (expected a Science-T2I split)"
        )));
    }
    let keep = fields
        .iter()
        .filter(|f| COLUMNS.contains(&f.name()))
        .cloned()
        .collect();
    let projection = Type::group_type_builder("schema")
        .with_fields(keep)
        .build()
        .map_err(|e| pq_err(name, e))?;
    Ok((reader, projection))
}

fn text(row: &Row, col: &str) -> std::result::Result<String, String> {
    match row
        .get_column_iter()
        .find(|(n, _)| n.as_str() == col)
        .map(|(_, f)| f)
    {
        Some(Field::Str(s)) => Ok(s.clone()),
        Some(Field::Null) | None => Err(format!("`{col}` is empty")),
        Some(other) => Err(format!("`{col}` is not a string ({other})")),
    }
}

/// The bytes of the first image of a `list<struct<bytes, path>>` cell.
fn first_image(row: &Row, col: &str) -> std::result::Result<(String, Vec<u8>), String> {
    let list = match row
        .get_column_iter()
        .find(|(n, _)| n.as_str() == col)
        .map(|(_, f)| f)
    {
        Some(Field::ListInternal(l)) => l,
        _ => return Err(format!("`{col}` is not a list of images")),
    };
    let Some(Field::Group(img)) = list.elements().first() else {
        return Err(format!("`{col}` has no image"));
    };
    let mut bytes = None;
    let mut path = String::new();
    for (n, f) in img.get_column_iter() {
        match (n.as_str(), f) {
            ("bytes", Field::Bytes(b)) => bytes = Some(b.data().to_vec()),
            ("path", Field::Str(p)) => path = p.clone(),
            _ => {}
        }
    }
    bytes
        .map(|b| (path, b))
        .ok_or_else(|| format!("`{col}[0]` has no bytes"))
}

/// One row's cells: the prompt, labels and both images, decoded and preprocessed to
/// (2, 3, S, S) pixels, explicit then superficial.
fn prepare(
    r: &Row,
    row: usize,
    pre: &crate::models::clip::config::PreprocessorConfig,
) -> std::result::Result<Prepared, String> {
    let (pe, e) = first_image(r, "explicit_image")?;
    let (ps, s) = first_image(r, "superficial_image")?;
    let mut pixels = image_to_pixels(&pe, &e, pre).map_err(|x| format!("explicit_image: {x}"))?;
    pixels.extend(image_to_pixels(&ps, &s, pre).map_err(|x| format!("superficial_image: {x}"))?);
    Ok(Prepared {
        row,
        prompt: text(r, "implicit_prompt")?,
        category: text(r, "category")?,
        law: text(r, "law")?,
        pixels,
    })
}

/// Scores one prepared row: the implicit prompt against both images.
async fn score_row(model: &Model, p: Prepared) -> Result<EvalRow> {
    let text = model.text_embeds(&[&p.prompt]).await?.remove(0);
    let imgs = model.embed_pixels(&p.pixels, 2).await?;
    let probs = score::softmax(&score::scores(&text, &imgs, model.logit_scale()));
    Ok(EvalRow {
        row: p.row,
        category: p.category,
        law: p.law,
        prob_explicit: probs[0],
        prob_superficial: probs[1],
        correct: probs[0] > probs[1],
    })
}

/// The benchmark's row loop, the one `sciscore eval` and the page both run: every row of the
/// opened `files` in order (row numbers run on across them), up to `limit`, handed to `f` with
/// its number, as its cells or why they cannot be read; `f` returns false to stop.
async fn each_row<R: ChunkReader + 'static>(
    files: impl IntoIterator<Item = Result<(String, SerializedFileReader<R>, Type)>>,
    limit: Option<usize>,
    mut f: impl AsyncFnMut(usize, std::result::Result<Row, String>) -> Result<bool>,
) -> Result<()> {
    let mut row = 0usize;
    for file in files {
        let (name, reader, projection) = file?;
        for g in 0..reader.num_row_groups() {
            let group = reader.get_row_group(g).map_err(|e| pq_err(&name, e))?;
            for r in group
                .get_row_iter(Some(projection.clone()))
                .map_err(|e| pq_err(&name, e))?
            {
                if limit.is_some_and(|l| row >= l) {
                    return Ok(());
                }
                if !f(row, r.map_err(|e| e.to_string())).await? {
                    return Ok(()); // `f` stopped
                }
                row += 1;
            }
        }
    }
    Ok(())
}

/// Evaluates `model` on parquet files held in memory (`(name, bytes)`, in order; row numbers run
/// on across files), on the calling thread, without timings. The page's Science-T2I panel uses
/// this. `on_row(done, total)` is called after every row.
pub async fn evaluate_in_memory(
    model: &Model,
    files: Vec<(String, Vec<u8>)>,
    mut on_row: impl FnMut(usize, usize),
) -> Result<(EvalReport, Vec<EvalRow>)> {
    let mut opened = Vec::new();
    let mut total = 0usize;
    for (name, data) in files {
        let (reader, projection) = open_bytes(&name, data)?;
        total += reader.metadata().file_metadata().num_rows().max(0) as usize;
        opened.push(Ok((name, reader, projection)));
    }
    let pre = model.preprocessor().clone();
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    each_row(opened, None, async |row, r| {
        match r.and_then(|r| prepare(&r, row, &pre)) {
            Ok(p) => rows.push(score_row(model, p).await?),
            Err(message) => errors.push(RowError { row, message }),
        }
        on_row(row + 1, total);
        Ok(true)
    })
    .await?;
    if rows.is_empty() && errors.is_empty() {
        return Err(Error::Invalid("the dataset has no rows".into()));
    }
    let report = summarize(rows.clone(), errors, 0.0, 0.0);
    Ok((report, rows))
}

/// Reads rows of `files` in order, decoding both images, and sends them (or the row's error).
#[cfg(not(target_arch = "wasm32"))]
fn read_rows(
    files: Vec<PathBuf>,
    limit: Option<usize>,
    pre: Arc<crate::models::clip::config::PreprocessorConfig>,
    tx: mpsc::SyncSender<(std::result::Result<Prepared, RowError>, f64)>,
) -> Result<()> {
    let opened = files.into_iter().map(|file| {
        let (reader, projection) = open(&file)?;
        Ok((file.display().to_string(), reader, projection))
    });
    pollster::block_on(each_row(opened, limit, async |row, r| {
        let t0 = std::time::Instant::now();
        let prepared = r.and_then(|r| prepare(&r, row, &pre));
        let msg = prepared.map_err(|message| RowError { row, message });
        // A failed send: the consumer stopped.
        Ok(tx.send((msg, t0.elapsed().as_secs_f64())).is_ok())
    }))
}

#[cfg(not(target_arch = "wasm32"))]
/// The number of rows in `files` (from the footers; no data is read).
pub fn count_rows(files: &[PathBuf]) -> Result<usize> {
    let mut n = 0;
    for f in files {
        let (reader, _) = open(f)?;
        n += reader.metadata().file_metadata().num_rows().max(0) as usize;
    }
    Ok(n)
}

#[cfg(not(target_arch = "wasm32"))]
/// Evaluates `model` on the benchmark files. `on_row` sees every row (for progress and CSV).
pub fn evaluate(
    model: &Model,
    files: &[PathBuf],
    limit: Option<usize>,
    mut on_row: impl FnMut(std::result::Result<&EvalRow, &RowError>),
) -> Result<EvalReport> {
    if limit == Some(0) {
        return Err(Error::Invalid("the row limit must be at least 1".into()));
    }
    let pre = Arc::new(model.preprocessor().clone());
    let (tx, rx) = mpsc::sync_channel(4);
    let reader = {
        let files = files.to_vec();
        std::thread::spawn(move || read_rows(files, limit, pre, tx))
    };
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    let (mut decode_s, mut model_s) = (0.0, 0.0);
    for (item, dt) in rx {
        decode_s += dt;
        match item {
            Ok(p) => {
                let t0 = std::time::Instant::now();
                let r = pollster::block_on(score_row(model, p))?;
                model_s += t0.elapsed().as_secs_f64();
                on_row(Ok(&r));
                rows.push(r);
            }
            Err(e) => {
                on_row(Err(&e));
                errors.push(e);
            }
        }
    }
    reader
        .join()
        .map_err(|_| Error::Invalid("the parquet reader thread panicked".into()))??;
    if rows.is_empty() && errors.is_empty() {
        return Err(Error::Invalid("the dataset has no rows".into()));
    }
    Ok(summarize(rows, errors, decode_s, model_s))
}

fn summarize(
    rows: Vec<EvalRow>,
    errors: Vec<RowError>,
    decode_seconds: f64,
    model_seconds: f64,
) -> EvalReport {
    fn acc<'a>(it: impl Iterator<Item = (&'a str, bool)>) -> BTreeMap<String, f64> {
        let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (k, ok) in it {
            let e = m.entry(k.to_string()).or_default();
            e.0 += ok as usize;
            e.1 += 1;
        }
        m.into_iter()
            .map(|(k, (c, n))| (k, c as f64 / n as f64))
            .collect()
    }
    let n = rows.len();
    EvalReport {
        rows: n,
        overall_accuracy: if n == 0 {
            0.0
        } else {
            rows.iter().filter(|r| r.correct).count() as f64 / n as f64
        },
        category_accuracy: acc(rows.iter().map(|r| (r.category.as_str(), r.correct))),
        law_accuracy: acc(rows.iter().map(|r| (r.law.as_str(), r.correct))),
        errors,
        decode_seconds,
        model_seconds,
    }
}
