//! Byte-range access to the files of a model folder.
//!
//! Weights are read tensor by tensor through this trait, so the same loader works on a native
//! folder, a browser `File` list or HTTP range requests, and a 3.9 GB checkpoint is never held
//! whole in memory (wasm32 has 4 GiB).

use crate::error::{Error, Hint, Result};
use std::future::Future;
use std::pin::Pin;

/// A boxed future that need not be `Send` (browser futures are not).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The files of one model folder, read by name and byte range.
pub trait ModelSource {
    /// A short description for messages (a path or URL).
    fn describe(&self) -> String;
    /// The size of `name` in bytes, or `None` when the folder has no such file.
    fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>>;
    /// `len` bytes of `name` starting at `offset`; an error if the file is shorter.
    fn read<'a>(&'a self, name: &'a str, offset: u64, len: u64)
        -> LocalFuture<'a, Result<Vec<u8>>>;
    /// `len` bytes of F32 tensor data of `name` at `offset`, or the same values in f16 where
    /// this source keeps f16 copies of f32 checkpoints (the page's Cache Storage). The loaders
    /// ask this for the matrices they may hold in f16; biases and norms are read as stored.
    /// Default: as stored.
    fn read_f32_or_f16<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<F32Data>> {
        Box::pin(async move { Ok(F32Data::F32(self.read(name, offset, len).await?)) })
    }
}

/// What [`ModelSource::read_f32_or_f16`] hands back.
pub enum F32Data {
    /// The F32 bytes as stored.
    F32(Vec<u8>),
    /// Half as many bytes: the same values rounded to f16 (to nearest even, as
    /// `half::f16::from_f32` and `torch.Tensor.half()` round), little-endian.
    F16(Vec<u8>),
}

/// `body` followed by its length and a 64-bit checksum, as the page keeps byte ranges in Cache
/// Storage: a truncated or altered entry is then noticed ([`unseal`]) instead of loaded.
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(body);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(body).to_le_bytes());
    out
}

/// The body of a [`seal`]ed entry, or `None` when its length or checksum does not match.
pub fn unseal(entry: &[u8]) -> Option<&[u8]> {
    let n = entry.len().checked_sub(16)?;
    let (body, tail) = entry.split_at(n);
    let len = u64::from_le_bytes(tail[..8].try_into().ok()?);
    let sum = u64::from_le_bytes(tail[8..].try_into().ok()?);
    (len == n as u64 && sum == checksum(body)).then_some(body)
}

/// FNV-1a over 8-byte words (fast enough for gigabytes in wasm; not a cryptographic hash: it
/// guards against damage, not against someone who can write the browser's storage anyway).
fn checksum(b: &[u8]) -> u64 {
    const PRIME: u64 = 0x100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(PRIME);
    }
    for &x in words.remainder() {
        h = (h ^ x as u64).wrapping_mul(PRIME);
    }
    h
}

/// Reads a whole (small) file: configs, tokenizer files.
pub(crate) async fn read_all(src: &dyn ModelSource, name: &str, limit: u64) -> Result<Vec<u8>> {
    let size = src.size(name).await?.ok_or_else(|| Error::MissingFile {
        name: name.to_string(),
        hint: Hint(Some(format!("looked in {}", src.describe()))),
    })?;
    if size > limit {
        return Err(Error::Limits {
            what: format!("reading `{name}`"),
            needed: size,
            available: limit,
        });
    }
    src.read(name, 0, size).await
}

/// A model folder on the local file system.
#[cfg(not(target_arch = "wasm32"))]
pub struct DirSource {
    root: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl DirSource {
    /// A source over the files of folder `root`.
    pub fn new(root: impl Into<std::path::PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::Io {
                name: root.display().to_string(),
                message: "not a folder (expected a Hugging Face model folder with config.json)"
                    .to_string(),
            });
        }
        Ok(DirSource { root })
    }

    fn path(&self, name: &str) -> Result<std::path::PathBuf> {
        // Names come from index files inside the checkpoint: keep them inside the folder.
        if name.contains("..") || name.starts_with('/') || name.contains('\\') {
            return Err(Error::Io {
                name: name.to_string(),
                message: "file names must stay inside the model folder".to_string(),
            });
        }
        Ok(self.root.join(name))
    }

    fn read_sync(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |e: std::io::Error| Error::Io {
            name: name.to_string(),
            message: e.to_string(),
        };
        let mut f = std::fs::File::open(self.path(name)?).map_err(io)?;
        let size = f.metadata().map_err(io)?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::Io {
                name: name.to_string(),
                message: format!(
                    "asked for bytes {offset}..{} of a {size}-byte file (truncated?)",
                    offset.saturating_add(len)
                ),
            });
        }
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let len = usize::try_from(len).map_err(|_| Error::OutOfMemory {
            what: format!("`{name}`"),
            bytes: len,
        })?;
        let mut buf = crate::error::try_zeroed(&format!("`{name}`"), len)?;
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ModelSource for DirSource {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }
    fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            match std::fs::metadata(self.path(name)?) {
                Ok(m) if m.is_file() => Ok(Some(m.len())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::Io {
                    name: name.to_string(),
                    message: e.to_string(),
                }),
            }
        })
    }
    fn read<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move { self.read_sync(name, offset, len) })
    }
}

/// Files held in memory, by name (tests, small demo models, pages that already have the bytes).
#[derive(Default)]
pub struct MemorySource {
    files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds or replaces file `name`.
    pub fn insert(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(name.into(), bytes);
    }
}

impl ModelSource for MemorySource {
    fn describe(&self) -> String {
        "files in memory".to_string()
    }
    fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>> {
        Box::pin(async move { Ok(self.files.get(name).map(|f| f.len() as u64)) })
    }
    fn read<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move {
            let f = self.files.get(name).ok_or_else(|| Error::MissingFile {
                name: name.to_string(),
                hint: Hint(None),
            })?;
            let end = offset
                .checked_add(len)
                .filter(|&e| e <= f.len() as u64)
                .ok_or_else(|| Error::Io {
                    name: name.to_string(),
                    message: format!(
                        "bytes {offset}..+{len} are past the end ({} bytes)",
                        f.len()
                    ),
                })?;
            Ok(f[offset as usize..end as usize].to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_entries_round_trip_and_damage_is_noticed() {
        for body in [&b""[..], b"x", b"0123456789abcdef0123"] {
            let e = seal(body);
            assert_eq!(unseal(&e), Some(body));
            // Truncated anywhere, or one byte altered anywhere: refused.
            for cut in 0..e.len() {
                assert_eq!(unseal(&e[..cut]), None, "cut at {cut}");
            }
            for i in 0..e.len() {
                let mut bad = e.clone();
                bad[i] ^= 0x10;
                assert_eq!(unseal(&bad), None, "byte {i} altered");
            }
        }
        // A whole other entry's body with its own tail is fine; a body swapped under a tail not.
        let (a, b) = (seal(b"aaaaaaaa"), seal(b"bbbbbbbb"));
        let mut swapped = b[..8].to_vec();
        swapped.extend_from_slice(&a[8..]);
        assert_eq!(unseal(&swapped), None);
    }
}
