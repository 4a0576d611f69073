//! Model files the user picked or dropped, read with `Blob.slice(a, b).arrayBuffer()`: only the
//! asked-for range is read from disk.

use super::{io, js_message};
use crate::error::{Error, Hint, Result};
use crate::io::source::{LocalFuture, ModelSource};
use js_sys::Uint8Array;
use wasm_bindgen_futures::JsFuture;

/// The files a user picked or dropped, matched by file name (`config.json`, `model.safetensors`).
pub(super) struct FileSource {
    pub(super) files: Vec<web_sys::File>,
}

impl FileSource {
    fn file(&self, name: &str) -> Option<&web_sys::File> {
        self.files.iter().find(|f| f.name() == name)
    }
}

impl ModelSource for FileSource {
    fn describe(&self) -> String {
        format!("the {} chosen files", self.files.len())
    }
    fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>> {
        Box::pin(async move { Ok(self.file(name).map(|f| f.size() as u64)) })
    }
    fn read<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move {
            let f = self.file(name).ok_or_else(|| Error::MissingFile {
                name: name.to_string(),
                hint: Hint(Some("add it to the chosen files".into())),
            })?;
            let size = f.size() as u64;
            let end = offset
                .checked_add(len)
                .filter(|&e| e <= size)
                .ok_or_else(|| {
                    io(
                        name,
                        format!(
                            "asked for bytes {offset}..+{len} of a {size}-byte file (truncated?)"
                        ),
                    )
                })?;
            // Only this range is read from disk: Blob.slice is lazy.
            let blob = f
                .slice_with_f64_and_f64(offset as f64, end as f64)
                .map_err(|e| io(name, js_message(&e)))?;
            let buf = JsFuture::from(blob.array_buffer()).await.map_err(|e| {
                io(
                    name,
                    format!("the browser could not read the file: {}", js_message(&e)),
                )
            })?;
            let bytes = Uint8Array::new(&buf).to_vec();
            if bytes.len() as u64 != len {
                return Err(io(
                    name,
                    format!(
                        "read {} bytes, expected {len} (did the file change?)",
                        bytes.len()
                    ),
                ));
            }
            Ok(bytes)
        })
    }
}
