//! Batch records as a parquet file (`--format parquet`): the JSONL's fields as columns, one row
//! per record, in the same order. `line` is INT64; `prompt` and `image` are required UTF-8;
//! `group`, `role` and `error` optional UTF-8; `score` optional FLOAT (f32, as in the JSONL).

use super::Record;
use crate::error::{Error, Result};
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use std::path::Path;
use std::sync::Arc;

const SCHEMA: &str = "message sciscore_batch { required int64 line; \
    required binary prompt (UTF8); required binary image (UTF8); \
    optional binary group (UTF8); optional binary role (UTF8); \
    optional float score; optional binary error (UTF8); }";

/// Rows per row group: a reader of a large run's output streams it group by group.
const ROW_GROUP: usize = 65_536;

fn err(p: &Path, e: impl std::fmt::Display) -> Error {
    Error::Output {
        name: p.display().to_string(),
        message: e.to_string(),
    }
}

/// Values and definition levels of an optional UTF-8 column.
fn optional(values: impl Iterator<Item = Option<String>>) -> (Vec<ByteArray>, Vec<i16>) {
    let (mut vals, mut defs) = (Vec::new(), Vec::new());
    for v in values {
        defs.push(i16::from(v.is_some()));
        vals.extend(v.map(|s| ByteArray::from(s.into_bytes())));
    }
    (vals, defs)
}

/// Writes `records` to `path` (created or truncated) and syncs it to disk.
pub(crate) fn write(path: &Path, records: &[Record]) -> Result<()> {
    let schema = Arc::new(parquet::schema::parser::parse_message_type(SCHEMA).expect("schema"));
    let props = Arc::new(WriterProperties::builder().build());
    let file = std::fs::File::create(path).map_err(|e| err(path, e))?;
    let mut w = SerializedFileWriter::new(file, schema, props).map_err(|e| err(path, e))?;
    for chunk in records.chunks(ROW_GROUP) {
        let mut rg = w.next_row_group().map_err(|e| err(path, e))?;
        let mut col = 0;
        while let Some(mut c) = rg.next_column().map_err(|e| err(path, e))? {
            let s = |f: fn(&Record) -> &String| -> Vec<ByteArray> {
                chunk
                    .iter()
                    .map(|r| ByteArray::from(f(r).as_bytes().to_vec()))
                    .collect()
            };
            let o = |f: fn(&Record) -> Option<String>| optional(chunk.iter().map(f));
            let written = match col {
                0 => {
                    let v: Vec<i64> = chunk.iter().map(|r| r.line as i64).collect();
                    c.typed::<Int64Type>().write_batch(&v, None, None)
                }
                1 => c
                    .typed::<ByteArrayType>()
                    .write_batch(&s(|r| &r.prompt), None, None),
                2 => c
                    .typed::<ByteArrayType>()
                    .write_batch(&s(|r| &r.image), None, None),
                3 | 4 | 6 => {
                    let (v, d) = match col {
                        3 => o(|r| r.group.clone()),
                        4 => o(|r| r.role.clone()),
                        _ => o(|r| r.error.clone()),
                    };
                    c.typed::<ByteArrayType>().write_batch(&v, Some(&d), None)
                }
                _ => {
                    let d: Vec<i16> = chunk.iter().map(|r| i16::from(r.score.is_some())).collect();
                    let v: Vec<f32> = chunk.iter().filter_map(|r| r.score).collect();
                    c.typed::<FloatType>().write_batch(&v, Some(&d), None)
                }
            };
            written.map_err(|e| err(path, e))?;
            c.close().map_err(|e| err(path, e))?;
            col += 1;
        }
        rg.close().map_err(|e| err(path, e))?;
    }
    let file = w.into_inner().map_err(|e| err(path, e))?;
    file.sync_all().map_err(|e| err(path, e))
}

/// The records of a parquet file that [`write`] wrote; anything else is refused.
pub(crate) fn read(path: &Path) -> Result<Vec<Record>> {
    let not_ours = |what: String| {
        Error::Invalid(format!(
            "{} is not sciscore batch output in parquet ({what})",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        name: path.display().to_string(),
        message: e.to_string(),
    })?;
    let reader = SerializedFileReader::new(file).map_err(|e| not_ours(e.to_string()))?;
    let want = parquet::schema::parser::parse_message_type(SCHEMA).expect("schema");
    let have = reader.metadata().file_metadata().schema();
    let names = |t: &parquet::schema::types::Type| -> Vec<String> {
        t.get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    };
    if names(have) != names(&want) {
        return Err(not_ours(format!("columns {:?}", names(have))));
    }
    let mut out = Vec::new();
    for row in reader
        .get_row_iter(None)
        .map_err(|e| not_ours(e.to_string()))?
    {
        let row = row.map_err(|e| not_ours(e.to_string()))?;
        let mut r = Record {
            line: 0,
            prompt: String::new(),
            image: String::new(),
            group: None,
            role: None,
            score: None,
            error: None,
        };
        for (name, f) in row.get_column_iter() {
            match (name.as_str(), f) {
                (_, Field::Null) => {}
                ("line", Field::Long(n)) => {
                    r.line = usize::try_from(*n).map_err(|_| not_ours(format!("line {n}")))?
                }
                ("prompt", Field::Str(s)) => r.prompt = s.clone(),
                ("image", Field::Str(s)) => r.image = s.clone(),
                ("group", Field::Str(s)) => r.group = Some(s.clone()),
                ("role", Field::Str(s)) => r.role = Some(s.clone()),
                ("error", Field::Str(s)) => r.error = Some(s.clone()),
                ("score", Field::Float(x)) => r.score = Some(*x),
                (n, _) => return Err(not_ours(format!("column `{n}` has the wrong type"))),
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Whether `path` starts with the parquet magic `PAR1` (else it is read as JSONL).
pub(crate) fn is_parquet(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PAR1"
}
