//! `sciscore convert --dtype f16`: a model folder with half-size weights (1.97 GB for SciScore
//! instead of 3.94 GB), in the Hugging Face layout, so `transformers` and sciscore both load it.
//!
//! Every F32 and BF16 tensor becomes F16, rounded to nearest even as `torch.Tensor.half()` rounds
//! (the `half` crate's `f16::from_f32`), so the file equals what `model.half().save_pretrained()`
//! writes tensor for tensor. A tensor with values beyond f16's range (|x| > 65504) stays F32 and is
//! reported: rounding it would store infinities. Integer tensors (`position_ids`) are copied.
//! The config gets `"torch_dtype": "float16"`; tokenizer and preprocessor files are copied.
//!
//! The output is written one tensor at a time (the largest, SciScore's token embedding, is 200 MB)
//! into a temporary file in the new folder, renamed into place when complete.

use crate::error::{Error, Result};
use crate::io::safetensors::{to_f16_bytes, to_f32, Checkpoint, DType};
use crate::io::source::DirSource;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::Path;

/// The files of a model folder besides the weights that a converted folder carries over.
const CARRIED: &[&str] = &[
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
];

/// The largest `config.json` read (a CLIP config is a few kB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What a conversion did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Converted {
    pub tensors: usize,
    /// Tensors stored in f16 now.
    pub to_f16: usize,
    /// Float tensors kept in f32 because a value is beyond f16's range.
    pub kept_f32: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The files copied beside the weights.
    pub files: Vec<String>,
}

fn io_err(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        name: p.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `out`, a new folder (or an empty one), with `model`'s weights in f16.
pub fn to_f16(model: &Path, out: &Path, mut progress: impl FnMut(u64, u64)) -> Result<Converted> {
    let src = DirSource::new(model)?;
    let ckpt = pollster::block_on(Checkpoint::open(&src))?;
    let config = pollster::block_on(crate::io::source::read_all(
        &src,
        "config.json",
        MAX_CONFIG_BYTES,
    ))?;
    let mut config: Map<String, Value> = match serde_json::from_slice(&config) {
        Ok(Value::Object(m)) => m,
        _ => return Err(Error::config("config.json", "not a JSON object")),
    };
    // The model must load before it is worth converting: this checks every name and shape.
    crate::models::clip::config::ClipConfig::from_json(
        &serde_json::to_vec(&config).unwrap_or_default(),
    )?;
    prepare_out(model, out)?;

    // The header: every tensor, F16 where its data is a float, at contiguous offsets.
    let mut plan = Vec::new(); // (name, where it is, dtype out)
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    let mut kept_f32 = Vec::new();
    let mut bytes_in = 0u64;
    for (name, t) in ckpt.tensors() {
        let elems: u64 = t.shape.iter().map(|&d| d as u64).product();
        let to = match t.dtype {
            DType::F32 | DType::BF16 => {
                // Out of range values are only known once read: the first pass reads float
                // tensors to see (cheap next to writing them; the page cache keeps them).
                let (_, bytes) = pollster::block_on(ckpt.read_raw(&src, name, &t.shape))?;
                if to_f16_bytes(name, t.dtype, &bytes)?.is_some() {
                    DType::F16
                } else {
                    kept_f32.push(name.to_string());
                    DType::F32
                }
            }
            d => d,
        };
        let len = elems * to.size();
        header.insert(
            name.to_string(),
            json!({"dtype": to.name(), "shape": t.shape, "data_offsets": [offset, offset + len]}),
        );
        plan.push((name.to_string(), t.clone(), to));
        offset += len;
        bytes_in += t.len;
    }
    let mut head = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::Invalid(format!("safetensors header: {e}")))?;
    // The data starts 8-byte aligned, as the safetensors writer pads it.
    head.resize(head.len().next_multiple_of(8), b' ');
    let total = 8 + head.len() as u64 + offset;

    let tmp = out.join(".model.safetensors.partial");
    let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_all(&(head.len() as u64).to_le_bytes())
        .and_then(|_| w.write_all(&head))
        .map_err(io_err(&tmp))?;
    let mut written = 8 + head.len() as u64;
    for (name, t, to) in &plan {
        let (_, bytes) = pollster::block_on(ckpt.read_raw(&src, name, &t.shape))?;
        let data = match (t.dtype, to) {
            (DType::F32 | DType::BF16, DType::F16) => to_f16_bytes(name, t.dtype, &bytes)?
                .ok_or_else(|| {
                    Error::Invalid(format!("`{name}` changed while it was converted"))
                })?,
            (DType::BF16, DType::F32) => to_f32(name, t.dtype, &bytes)?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            _ => bytes,
        };
        w.write_all(&data).map_err(io_err(&tmp))?;
        written += data.len() as u64;
        progress(written, total);
    }
    let file = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);

    config.insert("torch_dtype".into(), Value::from("float16"));
    let config_path = out.join("config.json");
    let text = serde_json::to_string_pretty(&Value::Object(config))
        .map_err(|e| Error::Invalid(format!("config.json: {e}")))?;
    std::fs::write(&config_path, text + "\n").map_err(io_err(&config_path))?;
    let mut files = vec!["config.json".to_string()];
    for name in CARRIED {
        let from = model.join(name);
        if from.is_file() {
            let to = out.join(name);
            std::fs::copy(&from, &to).map_err(io_err(&to))?;
            files.push(name.to_string());
        }
    }
    // Last: a folder with model.safetensors is a complete one.
    let dest = out.join("model.safetensors");
    std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    Ok(Converted {
        tensors: plan.len(),
        to_f16: plan
            .iter()
            .filter(|(_, t, to)| *to == DType::F16 && t.dtype != DType::F16)
            .count(),
        kept_f32,
        bytes_in,
        bytes_out: written,
        files,
    })
}

/// `out` may be new or an empty folder, never the model folder or inside it.
fn prepare_out(model: &Path, out: &Path) -> Result<()> {
    let invalid = |m: String| Error::Invalid(format!("--out `{}`: {m}", out.display()));
    if out.exists() {
        if !out.is_dir() {
            return Err(invalid("exists and is not a folder".into()));
        }
        if same_file::is_same_file(model, out).unwrap_or(false) {
            return Err(invalid("is the model folder itself".into()));
        }
        let mut entries = std::fs::read_dir(out).map_err(io_err(out))?;
        if entries.next().is_some() {
            return Err(invalid(
                "is a folder that is not empty (converting writes a new model folder)".into(),
            ));
        }
    } else {
        std::fs::create_dir_all(out).map_err(io_err(out))?;
    }
    // An `out` inside the model folder would be seen by nothing, but keep the two apart anyway.
    if let (Ok(m), Ok(o)) = (model.canonicalize(), out.canonicalize()) {
        if o.starts_with(&m) {
            return Err(invalid("is inside the model folder".into()));
        }
    }
    Ok(())
}
