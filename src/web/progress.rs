//! Load progress for the page: a source wrapper that counts the bytes and tensors read and calls
//! a JavaScript callback at most every [`PROGRESS_EVERY_MS`].

use crate::error::Result;
use crate::io::safetensors::parse_header;
use crate::io::source::{F32Data, LocalFuture, ModelSource};
use js_sys::Function;
use std::cell::RefCell;
use wasm_bindgen::prelude::*;

/// Progress callbacks at most this often (ms): a 900-tensor checkpoint must not flood the page.
const PROGRESS_EVERY_MS: f64 = 100.0;

#[derive(Default, serde::Serialize)]
struct ProgressState {
    /// `config`, `tokenizer`, `shaders` (WebGPU pipelines compiling) or `weights`.
    phase: &'static str,
    file: String,
    tensors: u64,
    tensors_total: u64,
    bytes: u64,
    bytes_total: u64,
    shaders: u64,
    shaders_total: u64,
}

/// Wraps a source and reports bytes and tensors read to a JavaScript callback. Totals come from
/// the safetensors headers, which the loader reads (at offset 8) before any tensor.
pub(super) struct Progress<S> {
    pub(super) inner: S,
    callback: Option<Function>,
    state: RefCell<ProgressState>,
    last: RefCell<f64>,
}

impl<S: ModelSource> Progress<S> {
    /// The GPU backend compiled `compiled` of its `total` compute pipelines.
    pub(super) fn shaders_compiled(&self, compiled: usize, total: usize) {
        {
            let mut st = self.state.borrow_mut();
            st.phase = "shaders";
            st.file.clear();
            st.shaders = compiled as u64;
            st.shaders_total = total as u64;
        }
        // Every step: there are few, and each can take seconds on a software adapter.
        self.report(true);
    }

    pub(super) fn new(inner: S, callback: Option<Function>) -> Self {
        Progress {
            inner,
            callback,
            state: RefCell::default(),
            last: RefCell::new(f64::NEG_INFINITY),
        }
    }

    /// `bytes` were read at `offset` of `name`, standing for `len` bytes of it (fewer when an
    /// f32 range came as f16).
    fn note(&self, name: &str, offset: u64, bytes: &[u8], len: u64) {
        let mut st = self.state.borrow_mut();
        st.file = name.to_string();
        if name.ends_with(".safetensors") {
            st.phase = "weights";
            if offset == 8 {
                // The JSON header: count its tensors and their bytes. The file's size does not
                // matter here (the loader checks every span against it).
                let data_start = 8 + bytes.len() as u64;
                if let Ok(h) = parse_header(name, bytes, data_start, u64::MAX) {
                    st.tensors_total += h.len() as u64;
                    st.bytes_total += h.iter().map(|(_, t)| t.len).sum::<u64>();
                }
            } else if offset > 8 {
                st.tensors += 1;
                st.bytes += len;
            }
        } else if name.starts_with("tokenizer") || name == "vocab.json" || name == "merges.txt" {
            st.phase = "tokenizer";
        } else {
            st.phase = "config";
        }
        let done = st.tensors_total > 0 && st.tensors == st.tensors_total;
        drop(st);
        self.report(done);
    }

    fn report(&self, force: bool) {
        let Some(cb) = &self.callback else { return };
        let now = js_sys::Date::now();
        if !force && now - *self.last.borrow() < PROGRESS_EVERY_MS {
            return;
        }
        *self.last.borrow_mut() = now;
        if let Ok(v) = serde_wasm_bindgen::to_value(&*self.state.borrow()) {
            // A throwing progress callback must not fail the load.
            let _ = cb.call1(&JsValue::NULL, &v);
        }
    }
}

impl<S: ModelSource> ModelSource for Progress<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>> {
        self.inner.size(name)
    }
    fn read<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move {
            let bytes = self.inner.read(name, offset, len).await?;
            self.note(name, offset, &bytes, len);
            Ok(bytes)
        })
    }
    fn read_f32_or_f16<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<F32Data>> {
        Box::pin(async move {
            let data = self.inner.read_f32_or_f16(name, offset, len).await?;
            let (F32Data::F32(b) | F32Data::F16(b)) = &data;
            self.note(name, offset, b, len);
            Ok(data)
        })
    }
}
