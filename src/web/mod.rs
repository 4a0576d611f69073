//! The browser facade: one `#[wasm_bindgen]` class, `SciScore`, used from the page's Web Worker
//! (`www/worker.js`). This file holds the class and its loads; its other methods sit beside the
//! job they do: `score.rs` (scores of images against prompts), `explain.rs` (region maps),
//! `eval.rs` (the Science-T2I accuracy panel) and `bench.rs` (random models, for the throughput
//! benchmark only).
//!
//! Model files come either from browser `File`s (`files.rs`) or from a base URL (`http.rs`: one
//! HTTP `Range` request per tensor, optionally kept in Cache Storage, `cache.rs`, for the next
//! visit). Either way the loader pulls one tensor at a time, so a 3.9 GB checkpoint never sits
//! whole in wasm memory (wasm32 has 4 GiB); `progress.rs` reports it to the page.
//!
//! Every error reaches JavaScript as a `JsError` carrying the library's message (a GPU failure
//! also carries `gpu: true`: the model's device is gone, the page loads the model again). A
//! panic or a failed allocation kills the instance; `crash.rs` leaves the worker what it needs
//! to say what happened before the page restarts it.

mod bench;
mod cache;
mod crash;
mod eval;
/// Region maps (patch and occlusion maps) for the page's *Show regions*.
mod explain;
mod files;
mod http;
mod progress;
mod score;

use crate::error::{Error, Result};
use crate::model::{Backend, Model};
use files::FileSource;
use http::HttpSource;
use js_sys::{Array, Function, Reflect, Uint8Array};
use progress::Progress;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

// ---------------------------------------------------------------------------------------------
// Errors

/// The readable message of a thrown JavaScript value.
fn js_message(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

fn io(name: &str, message: impl Into<String>) -> Error {
    Error::Io {
        name: name.to_string(),
        message: message.into(),
    }
}

/// A JavaScript `Error` with the library's message; `gpu: true` where the GPU failed under the
/// model (a lost device), which then needs loading again.
fn to_js(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    if matches!(e, Error::Gpu(_)) {
        let _ = Reflect::set(&err, &"gpu".into(), &JsValue::TRUE);
    }
    err.into()
}

fn parse_backend(name: &str) -> Result<Backend> {
    match name {
        "cpu" => Ok(Backend::Cpu),
        "webgpu" | "gpu" => Ok(Backend::Gpu),
        other => Err(Error::Invalid(format!(
            "unknown backend `{other}`: use `webgpu` or `cpu`"
        ))),
    }
}

/// `console.warn(msg)`, in a worker or a window.
fn console_warn(msg: &str) {
    let console = Reflect::get(&js_sys::global(), &"console".into()).ok();
    if let Some(warn) = console
        .as_ref()
        .and_then(|c| Reflect::get(c, &"warn".into()).ok())
    {
        if let Some(f) = warn.dyn_ref::<Function>() {
            let _ = f.call1(console.as_ref().unwrap_or(&JsValue::UNDEFINED), &msg.into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The class

/// What the page shows about a loaded model.
#[derive(serde::Serialize)]
struct ModelInfo {
    backend: &'static str,
    device: String,
    text_layers: usize,
    text_hidden: usize,
    vision_layers: usize,
    vision_hidden: usize,
    image_size: usize,
    patch_size: usize,
    projection_dim: usize,
    logit_scale: f32,
    /// Bytes of wasm linear memory (it only grows): what the engine holds on the CPU side.
    wasm_memory_bytes: f64,
    /// Damaged cache entries the load found and downloaded again (0 for most loads).
    cache_repaired: u32,
}

/// A loaded CLIP-family reward model in the browser.
#[wasm_bindgen]
pub struct SciScore {
    model: Rc<Model>,
    backend: Backend,
    /// Damaged Cache Storage entries found, deleted and downloaded again by the load.
    cache_repaired: u32,
}

#[wasm_bindgen]
impl SciScore {
    /// Loads a model from the files of a model folder (`File[]`), on `backend` (`"webgpu"` or
    /// `"cpu"`). `onProgress({phase, file, tensors, tensors_total, bytes, bytes_total})`.
    #[wasm_bindgen(js_name = loadFiles)]
    pub async fn load_files(
        files: Array,
        backend: String,
        on_progress: Option<Function>,
    ) -> Result<SciScore, JsError> {
        let backend = parse_backend(&backend)?;
        let mut list = Vec::new();
        for f in files.iter() {
            let f: web_sys::File = f
                .dyn_into()
                .map_err(|_| JsError::new("loadFiles expects an array of File objects"))?;
            list.push(f);
        }
        if list.is_empty() {
            return Err(JsError::new("no model files chosen: pick the files of a model folder (config.json, model.safetensors, tokenizer.json, preprocessor_config.json)"));
        }
        let src = Progress::new(FileSource { files: list }, on_progress);
        let model =
            Model::load_with_progress(&src, backend, &|c, t| src.shaders_compiled(c, t)).await?;
        Ok(SciScore {
            model: Rc::new(model),
            backend,
            cache_repaired: 0,
        })
    }

    /// Loads a model from a base URL (`<base>/config.json`, ...), reading weights with HTTP Range
    /// requests; with `cache` (a Cache Storage bucket's name), responses are kept there for the
    /// next visit.
    #[wasm_bindgen(js_name = loadUrl)]
    pub async fn load_url(
        base: String,
        backend: String,
        cache: Option<String>,
        on_progress: Option<Function>,
    ) -> Result<SciScore, JsError> {
        let backend = parse_backend(&backend)?;
        let http = HttpSource::new(&base, cache.as_deref()).await?;
        let src = Progress::new(http, on_progress);
        let model =
            Model::load_with_progress(&src, backend, &|c, t| src.shaders_compiled(c, t)).await?;
        src.inner.mark_complete().await;
        Ok(SciScore {
            model: Rc::new(model),
            backend,
            cache_repaired: src.inner.repaired(),
        })
    }

    /// The model files at `base` and their sizes (`{files: [{name, size}], total_bytes,
    /// store_bytes, cached}`), read with HEAD requests, so the page can ask before a multi-GB
    /// download; `cached`: a load into the Cache Storage bucket `cache` completed before.
    #[wasm_bindgen(js_name = probeUrl)]
    pub async fn probe_url(base: String, cache: Option<String>) -> Result<JsValue, JsError> {
        let src = HttpSource::new(&base, cache.as_deref()).await?;
        Ok(serde_wasm_bindgen::to_value(&http::probe(&src).await?)?)
    }

    /// `"webgpu"` or `"cpu"`.
    pub fn backend(&self) -> String {
        match self.backend {
            Backend::Gpu => "webgpu".into(),
            Backend::Cpu => "cpu".into(),
        }
    }

    /// Sizes of the loaded model and the device that runs it.
    pub fn info(&self) -> Result<JsValue, JsError> {
        let c = self.model.config();
        let info = ModelInfo {
            backend: if self.backend == Backend::Gpu {
                "webgpu"
            } else {
                "cpu"
            },
            device: self.model.device(),
            text_layers: c.text.tower.num_layers,
            text_hidden: c.text.tower.hidden_size,
            vision_layers: c.vision.tower.num_layers,
            vision_hidden: c.vision.tower.hidden_size,
            image_size: c.vision.image_size,
            patch_size: c.vision.patch_size,
            projection_dim: c.projection_dim,
            logit_scale: self.model.logit_scale(),
            wasm_memory_bytes: wasm_bindgen::memory()
                .dyn_into::<js_sys::WebAssembly::Memory>()
                .map_or(0.0, |m| {
                    m.buffer()
                        .unchecked_into::<js_sys::ArrayBuffer>()
                        .byte_length() as f64
                }),
            cache_repaired: self.cache_repaired,
        };
        Ok(serde_wasm_bindgen::to_value(&info)?)
    }
}

/// `[{name, bytes: Uint8Array}]` (images, parquet files) as `(name, bytes)`.
fn read_named(images: &Array) -> Result<Vec<(String, Vec<u8>)>> {
    let field = |v: &JsValue, k: &str| Reflect::get(v, &k.into()).unwrap_or(JsValue::UNDEFINED);
    images
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let name = field(&v, "name")
                .as_string()
                .unwrap_or_else(|| format!("image {}", i + 1));
            let bytes = field(&v, "bytes").dyn_into::<Uint8Array>().map_err(|_| {
                Error::Invalid(format!("image `{name}`: `bytes` must be a Uint8Array"))
            })?;
            Ok((name, bytes.to_vec()))
        })
        .collect()
}
