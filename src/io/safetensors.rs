//! safetensors reading: header parsing and validation, sharded checkpoints, dtype conversion.
//!
//! Format (<https://github.com/huggingface/safetensors>, v0.4): 8-byte little-endian header length
//! `N`, then `N` bytes of JSON `{name: {"dtype", "shape", "data_offsets": [begin, end]}}` (offsets
//! relative to the end of the header), then the data. Tensors are read one at a time through a
//! [`ModelSource`], so a checkpoint is never held whole.

use crate::error::{Error, Result};
use crate::io::source::{read_all, F32Data, ModelSource};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The safetensors reference implementation refuses headers over 100 MB; so do we, before
/// allocating anything for one.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Index files list a few thousand names at most; 16 MB is generous.
const MAX_INDEX_BYTES: u64 = 16 << 20;

/// Element types of safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DType {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl DType {
    const ALL: [DType; 15] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::F8E5M2,
        DType::F8E4M3,
        DType::I16,
        DType::U16,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::U32,
        DType::F32,
        DType::F64,
        DType::I64,
        DType::U64,
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The name in a safetensors header.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::F8E5M2 => "F8_E5M2",
            DType::F8E4M3 => "F8_E4M3",
            DType::I16 => "I16",
            DType::U16 => "U16",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I32 => "I32",
            DType::U32 => "U32",
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::I64 => "I64",
            DType::U64 => "U64",
        }
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> u64 {
        match self {
            DType::Bool | DType::U8 | DType::I8 | DType::F8E5M2 | DType::F8E4M3 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone)]
pub(crate) struct TensorInfo {
    pub file: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute byte offset in `file`.
    pub offset: u64,
    pub len: u64,
}

/// Parses and validates one file's header. `file_size` is the size of the whole file.
pub(crate) fn parse_header(
    file: &str,
    header: &[u8],
    data_start: u64,
    file_size: u64,
) -> Result<Vec<(String, TensorInfo)>> {
    let bad = |m: String| Error::safetensors(file, m);
    let root = match serde_json::from_slice::<Value>(header) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(bad("the header is not a JSON object".into())),
        Err(e) => return Err(bad(format!("the header is not valid JSON ({e})"))),
    };
    let data_len = file_size - data_start;
    let mut out = Vec::with_capacity(root.len());
    for (name, v) in root {
        if name == "__metadata__" {
            continue;
        }
        // Names and strings come from the file: escaped, so a message stays one line.
        let shown = name.escape_debug();
        let field = |k: &str| {
            v.get(k)
                .ok_or_else(|| bad(format!("tensor `{shown}` has no `{k}`")))
        };
        let dtype_s = field("dtype")?.as_str().unwrap_or("?");
        let dtype = DType::parse(dtype_s).ok_or_else(|| {
            bad(format!(
                "tensor `{shown}` has unknown dtype {}",
                dtype_s.escape_debug()
            ))
        })?;
        let shape: Vec<usize> = field("shape")?
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| bad(format!("tensor `{shown}` has a malformed shape")))?;
        let offs: Vec<u64> = field("data_offsets")?
            .as_array()
            .and_then(|a| a.iter().map(Value::as_u64).collect())
            .filter(|o: &Vec<u64>| o.len() == 2)
            .ok_or_else(|| bad(format!("tensor `{shown}` has malformed data_offsets")))?;
        let (begin, end) = (offs[0], offs[1]);
        if begin > end || end > data_len {
            return Err(bad(format!(
                "tensor `{shown}` spans bytes {begin}..{end} but the data section has {data_len} bytes (truncated file?)"
            )));
        }
        let numel = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let want = numel.and_then(|n| n.checked_mul(dtype.size()));
        if want != Some(end - begin) {
            return Err(bad(format!(
                "tensor `{shown}`: {dtype_s} x {shape:?} needs {} bytes, data_offsets give {}",
                want.map_or("too many".to_string(), |w| w.to_string()),
                end - begin
            )));
        }
        out.push((
            name,
            TensorInfo {
                file: file.to_string(),
                dtype,
                shape,
                offset: data_start + begin,
                len: end - begin,
            },
        ));
    }
    let mut spans: Vec<(u64, u64, &str)> = out
        .iter()
        .filter(|(_, t)| t.len > 0)
        .map(|(n, t)| (t.offset, t.offset + t.len, n.as_str()))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(bad(format!(
                "tensors `{}` and `{}` overlap",
                w[0].2.escape_debug(),
                w[1].2.escape_debug()
            )));
        }
    }
    Ok(out)
}

/// Tensors by name: (shape, values).
pub type F32Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of a safetensors file held whole in memory (the goldens of the tests). F32 only:
/// another dtype is an error naming the tensor. `file` names the file in messages.
pub fn read_f32_tensors(file: &str, bytes: &[u8]) -> Result<F32Tensors> {
    let size = bytes.len() as u64;
    let Some(len) = bytes.get(..8) else {
        return Err(Error::safetensors(
            file,
            format!("the file has {size} bytes; a safetensors file has at least 8"),
        ));
    };
    let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES || n > size - 8 {
        return Err(Error::safetensors(
            file,
            format!(
                "header length {n} is past the end of the {size}-byte file (corrupt or truncated)"
            ),
        ));
    }
    let mut out = HashMap::new();
    for (name, t) in parse_header(file, &bytes[8..8 + n as usize], 8 + n, size)? {
        if t.dtype != DType::F32 {
            return Err(Error::safetensors(
                file,
                format!(
                    "tensor `{}` is {}, not F32",
                    name.escape_debug(),
                    t.dtype.name()
                ),
            ));
        }
        let data = &bytes[t.offset as usize..(t.offset + t.len) as usize];
        let values = to_f32(&name, t.dtype, data)?;
        out.insert(name, (t.shape, values));
    }
    Ok(out)
}

/// A checkpoint in one file.
const SINGLE: &str = "model.safetensors";
/// The index of a checkpoint in shards: `{"weight_map": {tensor: shard file}}`.
pub(crate) const INDEX: &str = "model.safetensors.index.json";

/// The safetensors files of the checkpoint in `src`: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` names, each once, in the index's order.
pub(crate) async fn checkpoint_files(src: &dyn ModelSource) -> Result<Vec<String>> {
    let mut files: Vec<String> = Vec::new();
    if src.size(INDEX).await?.is_some() {
        let bytes = read_all(src, INDEX, MAX_INDEX_BYTES).await?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::safetensors(INDEX, format!("invalid JSON ({e})")))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::safetensors(INDEX, "no `weight_map` object"))?;
        for f in map.values() {
            let f = f
                .as_str()
                .ok_or_else(|| Error::safetensors(INDEX, "a weight_map value is not a string"))?;
            // Every later message names the shard: one with a line break would split them.
            if f.contains(char::is_control) {
                return Err(Error::safetensors(
                    INDEX,
                    format!("weight_map names a file with control characters: {f:?}"),
                ));
            }
            if !files.iter().any(|g| g == f) {
                files.push(f.to_string());
            }
        }
    } else if src.size(SINGLE).await?.is_some() {
        files.push(SINGLE.to_string());
    } else {
        let hint = if src.size("pytorch_model.bin").await?.is_some() {
            "only pytorch_model.bin is there: sciscore reads safetensors; convert with \
             `CLIPModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`"
        } else {
            "expected model.safetensors or model.safetensors.index.json"
        };
        return Err(Error::MissingFile {
            name: SINGLE.to_string(),
            hint: crate::error::Hint(Some(hint.to_string())),
        });
    }
    Ok(files)
}

/// All tensors of a checkpoint (one file or shards), by name.
pub(crate) struct Checkpoint {
    tensors: BTreeMap<String, TensorInfo>,
}

impl Checkpoint {
    /// Opens `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
    pub(crate) async fn open(src: &dyn ModelSource) -> Result<Self> {
        let files = checkpoint_files(src).await?;
        let mut tensors = BTreeMap::new();
        for f in &files {
            for (name, info) in Self::read_header(src, f).await? {
                if tensors.insert(name.clone(), info).is_some() {
                    return Err(Error::safetensors(
                        f,
                        format!("tensor `{}` appears in two shards", name.escape_debug()),
                    ));
                }
            }
        }
        Ok(Checkpoint { tensors })
    }

    async fn read_header(src: &dyn ModelSource, file: &str) -> Result<Vec<(String, TensorInfo)>> {
        let size = src.size(file).await?.ok_or_else(|| Error::MissingFile {
            name: file.to_string(),
            hint: crate::error::Hint(Some("named by model.safetensors.index.json".to_string())),
        })?;
        if size < 8 {
            return Err(Error::safetensors(
                file,
                format!("the file has {size} bytes; a safetensors file has at least 8"),
            ));
        }
        let n = u64::from_le_bytes(src.read(file, 0, 8).await?.try_into().expect("8 bytes"));
        if n > MAX_HEADER_BYTES || n > size - 8 {
            return Err(Error::safetensors(
                file,
                format!("header length {n} is past the end of the {size}-byte file (corrupt or truncated)"),
            ));
        }
        let header = src.read(file, 8, n).await?;
        parse_header(file, &header, 8 + n, size)
    }

    /// Every tensor, by name (for `convert`).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn tensors(&self) -> impl Iterator<Item = (&str, &TensorInfo)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Bytes of the F32 tensors.
    pub(crate) fn f32_bytes(&self) -> u64 {
        self.tensors
            .values()
            .filter(|t| t.dtype == DType::F32)
            .map(|t| t.len)
            .sum()
    }

    /// Checks, before anything is allocated per layer, that the checkpoint holds the `n` encoder
    /// layers `config.json` asks of tower `prefix` (`{prefix}.encoder.layers.{i}.*`).
    pub(crate) fn check_layers(&self, prefix: &str, n: usize) -> Result<()> {
        let held = self
            .tensors
            .keys()
            .filter_map(|k| {
                let rest = k.strip_prefix(prefix)?.strip_prefix(".encoder.layers.")?;
                rest.split('.').next()?.parse::<usize>().ok()
            })
            .max()
            .map_or(0, |i| i + 1);
        if n > held {
            let section = prefix.replace("_model", "_config");
            return Err(Error::config(
                "config.json",
                format!(
                    "`{section}.num_hidden_layers` is {n}, but the checkpoint holds {held} \
                     `{prefix}` encoder layers (config and weights are from different models?)"
                ),
            ));
        }
        Ok(())
    }

    /// Metadata of `name`, checked against the shape the config implies.
    pub(crate) fn info(&self, name: &str, expected: &[usize]) -> Result<&TensorInfo> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingWeight(name.to_string()))?;
        if t.shape != expected {
            return Err(Error::WeightShape {
                name: name.to_string(),
                expected: expected.to_vec(),
                got: t.shape.clone(),
            });
        }
        Ok(t)
    }

    /// Reads `name` as f32, whatever its stored float type.
    pub(crate) async fn read_f32(
        &self,
        src: &dyn ModelSource,
        name: &str,
        expected: &[usize],
    ) -> Result<Vec<f32>> {
        let (t, bytes) = self.read_raw(src, name, expected).await?;
        to_f32(name, t.dtype, &bytes)
    }

    /// The bytes of a matrix the loaders may hold in f16, `len` bytes at `offset` within
    /// tensor `t`, with their dtype: an F32 matrix comes back as F16 where the source keeps f16
    /// copies ([`ModelSource::read_f32_or_f16`]), every other tensor as stored.
    pub(crate) async fn read_matrix_bytes(
        &self,
        src: &dyn ModelSource,
        name: &str,
        t: &TensorInfo,
        offset: u64,
        len: u64,
    ) -> Result<(DType, Vec<u8>)> {
        if t.dtype != DType::F32 {
            let bytes = src.read(&t.file, t.offset + offset, len).await;
            return Ok((t.dtype, bytes.map_err(name_oom(name, t))?));
        }
        Ok(
            match (src.read_f32_or_f16(&t.file, t.offset + offset, len).await)
                .map_err(name_oom(name, t))?
            {
                F32Data::F32(b) => (DType::F32, b),
                F32Data::F16(b) if b.len() as u64 * 2 == len => (DType::F16, b),
                F32Data::F16(b) => {
                    return Err(Error::Io {
                        name: t.file.clone(),
                        message: format!(
                            "{} bytes of f16 for {len} bytes of f32 (a damaged cache?)",
                            b.len()
                        ),
                    })
                }
            },
        )
    }

    /// Bytes of tensor data (all files), and what they come to with the F32 matrices of
    /// `schema` halved, as the page's cache keeps them (values beyond f16's range, which stay
    /// f32, aside).
    #[cfg(any(test, target_arch = "wasm32"))] // the page's probe; tests
    pub(crate) fn bytes_with_f16_matrices(
        &self,
        schema: &crate::models::clip::schema::ClipSchema,
    ) -> (u64, u64) {
        let all: u64 = self.tensors.values().map(|t| t.len).sum();
        let halved: u64 = schema
            .matrices()
            .iter()
            .filter_map(|n| self.tensors.get(n))
            .filter(|t| t.dtype == DType::F32)
            .map(|t| t.len / 2)
            .sum();
        (all, all - halved)
    }

    /// The stored bytes of `name`, checked against the shape the config implies.
    pub(crate) async fn read_raw(
        &self,
        src: &dyn ModelSource,
        name: &str,
        expected: &[usize],
    ) -> Result<(&TensorInfo, Vec<u8>)> {
        let t = self.info(name, expected)?;
        let bytes = (src.read(&t.file, t.offset, t.len).await).map_err(name_oom(name, t))?;
        Ok((t, bytes))
    }
}

/// An out-of-memory error reading weight `name` says which weight (and its size) it was.
fn name_oom<'a>(name: &'a str, t: &'a TensorInfo) -> impl Fn(Error) -> Error + 'a {
    move |e| match e {
        Error::OutOfMemory { bytes, .. } => Error::OutOfMemory {
            what: format!("weight `{name}` ({:?} x {:?})", t.dtype, t.shape),
            bytes,
        },
        e => e,
    }
}

/// F32 or BF16 bytes as little-endian F16 bytes, each value rounded to nearest even (as
/// `torch.Tensor.half()`; `sciscore convert` and the page's f16 cache both use this), or `None`
/// when a value is beyond f16's range (|x| > 65504: it would become an infinity), so the tensor
/// stays f32. A NaN or an infinity is an error naming the weight, as in [`to_f32`].
pub(crate) fn to_f16_bytes(name: &str, dtype: DType, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    let x = to_f32(name, dtype, bytes)?;
    let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
    if !h.iter().all(|v| v.is_finite()) {
        return Ok(None);
    }
    Ok(Some(
        h.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect(),
    ))
}

/// Converts little-endian F32/F16/BF16 bytes to f32; a NaN or an infinity is an error naming
/// the weight (it would turn every score into NaN).
pub(crate) fn to_f32(name: &str, dtype: DType, bytes: &[u8]) -> Result<Vec<f32>> {
    let n = bytes.len() / dtype.size().max(1) as usize;
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        what: format!("weight `{name}` in f32"),
        bytes: n as u64 * 4,
    })?;
    match dtype {
        DType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        DType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        ),
        DType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        ),
        other => {
            return Err(Error::WeightDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    }
    if !out.iter().all(|v| v.is_finite()) {
        return Err(Error::NonFinite(name.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::source::{LocalFuture, MemorySource};

    #[test]
    fn f16_bytes_round_to_nearest_even_and_refuse_what_f16_cannot_hold() {
        let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let bits = |b: Vec<u8>| -> Vec<u16> {
            b.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        // 1 + 2^-11 is halfway between 1 and the next f16: ties go to even (1.0); 1 + 3*2^-11
        // to 1 + 2^-9's neighbour above; 65504 is f16's largest; subnormals are kept.
        let x = [
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            -65504.0,
            2f32.powi(-24),
        ];
        let got = bits(to_f16_bytes("w", DType::F32, &le(&x)).unwrap().unwrap());
        let want: Vec<u16> = x
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        assert_eq!(got, want);
        assert_eq!(got, [0x3c00, 0x3c02, 0xfbff, 0x0001]);
        // 65520 rounds to infinity in f16: the tensor stays f32.
        assert!(to_f16_bytes("w", DType::F32, &le(&[1.0, 65520.0]))
            .unwrap()
            .is_none());
        assert!(matches!(
            to_f16_bytes("w", DType::F32, &le(&[f32::NAN])),
            Err(Error::NonFinite(_))
        ));
    }

    /// A source that keeps f16 copies (as the page's cache does), for the matrix reads.
    struct Halving(MemorySource, bool);

    impl ModelSource for Halving {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>> {
            self.0.size(name)
        }
        fn read<'a>(&'a self, n: &'a str, o: u64, l: u64) -> LocalFuture<'a, Result<Vec<u8>>> {
            self.0.read(n, o, l)
        }
        fn read_f32_or_f16<'a>(
            &'a self,
            n: &'a str,
            o: u64,
            l: u64,
        ) -> LocalFuture<'a, Result<F32Data>> {
            Box::pin(async move {
                let b = self.0.read(n, o, l).await?;
                let mut h = to_f16_bytes(n, DType::F32, &b)?.expect("in range");
                if self.1 {
                    h.pop(); // a damaged copy
                }
                Ok(F32Data::F16(h))
            })
        }
    }

    #[test]
    fn matrices_come_as_f16_from_a_source_that_keeps_them_so() {
        let json = r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend(json.as_bytes());
        for v in [0.1f32, -2.5, 3.0e-3, 1000.7] {
            file.extend(v.to_le_bytes());
        }
        let mut mem = MemorySource::new();
        mem.insert("model.safetensors", file);
        let src = Halving(mem, false);
        let ckpt = pollster::block_on(Checkpoint::open(&src)).unwrap();
        let t = ckpt.info("w", &[2, 2]).unwrap();
        let (dtype, b) = pollster::block_on(ckpt.read_matrix_bytes(&src, "w", t, 4, 8)).unwrap();
        assert_eq!(dtype, DType::F16);
        let want: Vec<f32> = [-2.5f32, 3.0e-3]
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        assert_eq!(to_f32("w", dtype, &b).unwrap(), want);
        // Vectors are read as stored.
        assert_eq!(
            pollster::block_on(ckpt.read_f32(&src, "w", &[2, 2])).unwrap()[0],
            0.1
        );
        // A copy of the wrong length is an error, not a shifted matrix.
        let bad = Halving(src.0, true);
        let err = pollster::block_on(ckpt.read_matrix_bytes(&bad, "w", t, 0, 16)).unwrap_err();
        assert!(err.to_string().contains("damaged cache"), "{err}");
    }

    fn header(json: &str) -> Vec<(String, TensorInfo)> {
        parse_header(
            "t.safetensors",
            json.as_bytes(),
            8 + json.len() as u64,
            8 + json.len() as u64 + 64,
        )
        .unwrap()
    }

    fn header_err(json: &str, data: u64) -> String {
        parse_header(
            "t.safetensors",
            json.as_bytes(),
            8 + json.len() as u64,
            8 + json.len() as u64 + data,
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn parses_and_places() {
        let h = header(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"s":{"dtype":"F16","shape":[],"data_offsets":[24,26]}}"#,
        );
        assert_eq!(h.len(), 2);
        let a = &h.iter().find(|(n, _)| n == "a").unwrap().1;
        assert_eq!((a.shape.clone(), a.len), (vec![2, 3], 24));
    }

    #[test]
    fn rejects_bad_headers() {
        let m = header_err(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            64,
        );
        assert!(m.contains("overlap"), "{m}");
        let m = header_err(
            r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#,
            64,
        );
        assert!(m.contains("needs 24 bytes"), "{m}");
        let m = header_err(
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
        );
        assert!(m.contains("truncated"), "{m}");
        let m = header_err(
            r#"{"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}}"#,
            64,
        );
        assert!(m.contains("unknown dtype"), "{m}");
        let m = header_err(r#"[1,2]"#, 64);
        assert!(m.contains("not a JSON object"), "{m}");
        let m = header_err(
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#,
            64,
        );
        assert!(m.contains("too many"), "{m}");
    }

    #[test]
    fn messages_stay_one_line_whatever_the_names() {
        let m = header_err(
            r#"{"a\nb":{"dtype":"F\r32","shape":[1],"data_offsets":[0,4]}}"#,
            64,
        );
        assert!(m.contains(r"a\nb") && m.contains(r"F\r32"), "{m}");
        let m = header_err(
            r#"{"a\n":{"dtype":"F32","shape":[1],"data_offsets":[0,8]},"b\r":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            64,
        );
        assert!(!m.contains(['\n', '\r']), "{m}");
        let mut src = crate::io::source::MemorySource::new();
        let index = r#"{"weight_map":{"w":"model-1.safe\ntensors"}}"#;
        src.insert("model.safetensors.index.json", index.as_bytes().to_vec());
        let m = pollster::block_on(Checkpoint::open(&src))
            .err()
            .expect("a shard name with a line break is refused")
            .to_string();
        assert!(m.contains("control characters") && !m.contains('\n'), "{m}");
    }

    #[test]
    fn converts_half_types() {
        let one_f16 = half::f16::from_f32(1.5).to_bits().to_le_bytes();
        assert_eq!(to_f32("x", DType::F16, &one_f16).unwrap(), vec![1.5]);
        let bf = half::bf16::from_f32(-2.0).to_bits().to_le_bytes();
        assert_eq!(to_f32("x", DType::BF16, &bf).unwrap(), vec![-2.0]);
        assert!(to_f32("x", DType::I64, &[0; 8]).is_err());
    }
}
