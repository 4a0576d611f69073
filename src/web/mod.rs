//! The browser facade: one `#[wasm_bindgen]` class, `SciScore`, used from the page's Web Worker
//! (`www/worker.js`).
//!
//! Model files come either from browser `File`s (read with `Blob.slice(a, b).arrayBuffer()`) or
//! from a base URL (one HTTP `Range` request per tensor, optionally kept in Cache Storage for the
//! next visit). Either way the loader pulls one tensor at a time, so a 3.9 GB checkpoint never
//! sits whole in wasm memory (wasm32 has 4 GiB).
//!
//! Every error reaches JavaScript as a `JsError` carrying the library's message (a GPU failure
//! also carries `gpu: true`: the model's device is gone, the page loads the model again). wasm32
//! panics and failed allocations abort the instance (they cannot be caught): the panic hook leaves
//! the message in `globalThis.sciscorePanic` and the allocator notes a refused size
//! ([`take_alloc_failure`]), so the worker can say what happened before the page restarts it.

use crate::error::{Error, Hint, Result};
use crate::io::random::RandomSource;
use crate::io::source::{seal, unseal, F32Data, LocalFuture, MemorySource, ModelSource};
use crate::model::{Backend, ImageInput, Model};
use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The Cache Storage bucket for downloaded model files (`www/app.js` clears it by this name).
/// v2: entries sealed with their length and a checksum; f32 matrices kept in f16. The worker
/// deletes v1's bucket.
const CACHE_NAME: &str = "sciscore-models-v2";
/// Progress callbacks at most this often (ms): a 900-tensor checkpoint must not flood the page.
const PROGRESS_EVERY_MS: f64 = 100.0;

/// Region maps (patch and occlusion maps) for the page's *Show regions*.
mod explain;

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        // The trap that follows carries no message: leave it where the worker looks.
        let p = info.payload();
        let what = (p.downcast_ref::<&str>().copied())
            .or_else(|| p.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panic");
        let at = info.location().map_or(String::new(), |l| {
            format!(" (at {}:{})", l.file(), l.line())
        });
        let _ = Reflect::set(
            &js_sys::global(),
            &"sciscorePanic".into(),
            &format!("{what}{at}").into(),
        );
    }));
}

// ---------------------------------------------------------------------------------------------
// Crashes

/// The size of the last allocation the wasm heap refused (0: none since the last look). Rust
/// aborts on a failed allocation with a bare `unreachable` trap; this tells the worker that the
/// trap was the instance running out of memory, and how much it asked for.
static FAILED_ALLOC: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, noting the allocations it cannot serve in [`FAILED_ALLOC`].
struct NoteFailures;

// SAFETY: every call is forwarded unchanged to `System`; only a null result is noted.
// Not inlined: LLVM would otherwise copy dlmalloc into every allocation site (7% more wasm).
unsafe impl GlobalAlloc for NoteFailures {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_failure(System.alloc(layout), layout.size())
    }
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_failure(System.alloc_zeroed(layout), layout.size())
    }
    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_failure(System.realloc(ptr, layout, new_size), new_size)
    }
    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn note_failure(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        FAILED_ALLOC.store(size, Ordering::Relaxed);
    }
    p
}

#[global_allocator]
static ALLOCATOR: NoteFailures = NoteFailures;

/// Bytes of the last allocation the wasm heap refused since the previous call (0: none), for the
/// worker's message after a trap; reading it touches no allocator, so it works on a dead instance.
#[wasm_bindgen(js_name = takeAllocFailure)]
pub fn take_alloc_failure() -> f64 {
    FAILED_ALLOC.swap(0, Ordering::Relaxed) as f64
}

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

// ---------------------------------------------------------------------------------------------
// Sources

/// The files a user picked or dropped, matched by file name (`config.json`, `model.safetensors`).
struct FileSource {
    files: Vec<web_sys::File>,
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

/// `fetch` from a worker or a window.
fn fetch(req: &web_sys::Request) -> Result<Promise> {
    let global = js_sys::global();
    if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        Ok(w.fetch_with_request(req))
    } else if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        Ok(w.fetch_with_request(req))
    } else {
        Err(Error::Invalid("no fetch in this JavaScript context".into()))
    }
}

async fn open_cache() -> Option<web_sys::Cache> {
    let global = js_sys::global();
    let storage = if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.caches().ok()?
    } else {
        global.dyn_ref::<web_sys::Window>()?.caches().ok()?
    };
    JsFuture::from(storage.open(CACHE_NAME))
        .await
        .ok()?
        .dyn_into()
        .ok()
}

/// The files under a base URL (a Hugging Face `resolve/main` URL, or the local server), read
/// with one Range request per call; responses optionally kept in Cache Storage, keyed by URL and
/// byte range, so the same load works offline next time.
///
/// In the cache, the ranges of f32 matrices are kept in f16 (half the disk; see
/// [`ModelSource::read_f32_or_f16`]), under a key of their own (`h<a>-<b>`, the f32 range), and
/// the load that fills the cache uses those f16 values too, so a first and a second visit score
/// alike. Every entry is sealed with its length and a checksum ([`seal`]): a damaged one is
/// deleted, downloaded again and counted in `repaired`, never loaded.
struct HttpSource {
    base: String,
    cache: Option<web_sys::Cache>,
    sizes: RefCell<HashMap<String, Option<u64>>>,
    /// Damaged cache entries found (and fetched again) during this load.
    repaired: Cell<u32>,
}

impl HttpSource {
    async fn new(base: &str, use_cache: bool) -> Result<Self> {
        let base = base.trim();
        if base.is_empty() {
            return Err(Error::Invalid("the model URL is empty".into()));
        }
        let cache = if use_cache { open_cache().await } else { None };
        Ok(HttpSource {
            base: format!("{}/", base.trim_end_matches('/')),
            cache,
            sizes: RefCell::new(HashMap::new()),
            repaired: Cell::new(0),
        })
    }

    fn url(&self, name: &str) -> String {
        let path: Vec<String> = name
            .split('/')
            .map(|s| String::from(js_sys::encode_uri_component(s)))
            .collect();
        format!("{}{}", self.base, path.join("/"))
    }

    /// A Cache Storage key for `url` + `tag` (a query parameter: Cache matching ignores fragments).
    fn cache_key(url: &str, tag: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}sciscore={tag}")
    }

    /// The cached body under `key`, if there is one and it is intact (a damaged entry is
    /// deleted and counted: the caller downloads it again).
    async fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        let cache = self.cache.as_ref()?;
        let hit = JsFuture::from(cache.match_with_str(key)).await.ok()?;
        let resp: web_sys::Response = hit.dyn_into().ok()?;
        let entry = match JsFuture::from(resp.array_buffer().ok()?).await {
            Ok(buf) => Uint8Array::new(&buf).to_vec(),
            Err(_) => Vec::new(),
        };
        if let Some(body) = unseal(&entry) {
            return Some(body.to_vec());
        }
        web_sys_warn(&format!(
            "sciscore: a damaged cache entry ({key}, {} bytes) was deleted and is downloaded again",
            entry.len()
        ));
        self.repaired.set(self.repaired.get() + 1);
        let _ = JsFuture::from(cache.delete_with_str(key)).await;
        None
    }

    async fn cache_put(&self, key: &str, body: &[u8]) {
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        let sealed = Uint8Array::from(&seal(body)[..]);
        let Ok(resp) = web_sys::Response::new_with_opt_buffer_source(Some(&sealed)) else {
            return;
        };
        // A full disk or quota only costs the next visit a download: warn, do not fail.
        if let Err(e) = JsFuture::from(cache.put_with_str(key, &resp)).await {
            web_sys_warn(&format!("sciscore: not cached ({key}): {}", js_message(&e)));
        }
    }

    fn request(
        &self,
        url: &str,
        method: &str,
        range: Option<(u64, u64)>,
    ) -> Result<web_sys::Request> {
        let init = web_sys::RequestInit::new();
        init.set_method(method);
        init.set_mode(web_sys::RequestMode::Cors);
        // No cookies to the model host; no second copy of multi-GB files in the HTTP cache.
        init.set_credentials(web_sys::RequestCredentials::Omit);
        if self.cache.is_some() {
            init.set_cache(web_sys::RequestCache::NoStore);
        }
        let headers = web_sys::Headers::new().map_err(|e| io(url, js_message(&e)))?;
        if let Some((a, b)) = range {
            headers
                .set("Range", &format!("bytes={a}-{}", b - 1))
                .map_err(|e| io(url, js_message(&e)))?;
        }
        init.set_headers(&headers);
        web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| io(url, js_message(&e)))
    }

    async fn send(&self, name: &str, req: &web_sys::Request) -> Result<web_sys::Response> {
        let resp = JsFuture::from(fetch(req)?).await.map_err(|e| {
            io(
                name,
                format!(
                    "network error fetching {} ({}); check the URL, the connection, and that the host allows cross-origin requests",
                    req.url(),
                    js_message(&e)
                ),
            )
        })?;
        resp.dyn_into()
            .map_err(|_| io(name, "fetch did not return a Response"))
    }

    fn status_error(name: &str, url: &str, status: u16) -> Error {
        let why = match status {
            401 | 403 => "access denied: the model may be gated or private; download its folder and load the files instead",
            416 => "the server refused the byte range (is the file shorter than its index says?)",
            _ => "the server answered with an error",
        };
        io(name, format!("HTTP {status} for {url}: {why}"))
    }

    async fn body(name: &str, resp: &web_sys::Response) -> Result<Uint8Array> {
        let p = resp.array_buffer().map_err(|e| io(name, js_message(&e)))?;
        let buf = JsFuture::from(p)
            .await
            .map_err(|e| io(name, format!("download interrupted: {}", js_message(&e))))?;
        Ok(Uint8Array::new(&buf))
    }

    async fn fetch_size(&self, name: &str) -> Result<Option<u64>> {
        let url = self.url(name);
        let key = Self::cache_key(&url, "size");
        if let Some(b) = self.cache_get(&key).await {
            let s = String::from_utf8(b).unwrap_or_default();
            return Ok(if s == "missing" { None } else { s.parse().ok() });
        }
        let resp = self.send(name, &self.request(&url, "HEAD", None)?).await?;
        let size = match resp.status() {
            404 | 410 => None,
            200..=299 => match resp
                .headers()
                .get("content-length")
                .ok()
                .flatten()
                .and_then(|v| v.parse().ok())
            {
                Some(n) => Some(n),
                // No length on HEAD (some CDNs): ask for one byte and read the total from
                // Content-Range.
                None => Some(self.size_by_range(name, &url).await?),
            },
            s => return Err(Self::status_error(name, &url, s)),
        };
        let tag = size.map_or("missing".to_string(), |n| n.to_string());
        self.cache_put(&key, tag.as_bytes()).await;
        Ok(size)
    }

    async fn size_by_range(&self, name: &str, url: &str) -> Result<u64> {
        let resp = self
            .send(name, &self.request(url, "GET", Some((0, 1)))?)
            .await?;
        let total = resp
            .headers()
            .get("content-range")
            .ok()
            .flatten()
            .and_then(|v| v.rsplit('/').next().and_then(|t| t.trim().parse().ok()));
        // A server that ignores Range answers 200 with the whole file: take its length from
        // the headers and leave the body unread.
        let length = resp
            .headers()
            .get("content-length")
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok());
        match (resp.status(), total, length) {
            (206, Some(n), _) | (200, _, Some(n)) => Ok(n),
            (s, _, _) if !(200..300).contains(&s) => Err(Self::status_error(name, url, s)),
            _ => Err(io(name, format!("{url}: the server reports no file size"))),
        }
    }

    /// The cache key of bytes `offset..+len` of `name` (`f16`: their f16 copy).
    fn range_key(&self, name: &str, offset: u64, len: u64, f16: bool) -> Result<String> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| io(name, "byte range overflows"))?;
        let tag = if f16 { "h" } else { "" };
        Ok(Self::cache_key(
            &self.url(name),
            &format!("{tag}{offset}-{end}"),
        ))
    }

    async fn fetch_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let key = self.range_key(name, offset, len, false)?;
        if let Some(b) = self.cache_get(&key).await {
            if b.len() as u64 == len {
                return Ok(b);
            }
        }
        let body = self.download(name, offset, len).await?;
        self.cache_put(&key, &body).await;
        Ok(body)
    }

    /// F32 data: its f16 copy from the cache, or downloaded and (when caching) rounded to f16,
    /// which is kept and returned; a range with values beyond f16's range (or not finite, which
    /// the loader then reports) is kept and returned as f32.
    async fn fetch_f32_or_f16(&self, name: &str, offset: u64, len: u64) -> Result<F32Data> {
        if self.cache.is_none() || len == 0 || len % 4 != 0 {
            return Ok(F32Data::F32(self.fetch_range(name, offset, len).await?));
        }
        let key = self.range_key(name, offset, len, true)?;
        if let Some(b) = self.cache_get(&key).await {
            if b.len() as u64 * 2 == len {
                return Ok(F32Data::F16(b));
            }
        }
        let plain = self.range_key(name, offset, len, false)?;
        if let Some(b) = self.cache_get(&plain).await {
            if b.len() as u64 == len {
                return Ok(F32Data::F32(b));
            }
        }
        let body = self.download(name, offset, len).await?;
        match crate::io::safetensors::to_f16_bytes(name, crate::io::safetensors::DType::F32, &body)
        {
            Ok(Some(h)) => {
                self.cache_put(&key, &h).await;
                Ok(F32Data::F16(h))
            }
            _ => {
                self.cache_put(&plain, &body).await;
                Ok(F32Data::F32(body))
            }
        }
    }

    /// Bytes `offset..+len` of `name` from the server (one Range request), not cached.
    async fn download(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let url = self.url(name);
        let end = offset
            .checked_add(len)
            .ok_or_else(|| io(name, "byte range overflows"))?;
        let resp = self
            .send(name, &self.request(&url, "GET", Some((offset, end)))?)
            .await?;
        let body = match resp.status() {
            206 => Self::body(name, &resp).await?,
            // The server ignored Range and sends the whole file: acceptable for small files
            // only, a multi-GB checkpoint must not arrive in one piece.
            200 => {
                let total: Option<u64> = resp
                    .headers()
                    .get("content-length")
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse().ok());
                if total.is_none_or(|t| t > 64 << 20) {
                    return Err(io(name, format!("{url}: the server does not support HTTP Range requests, which large files need")));
                }
                let whole = Self::body(name, &resp).await?;
                if (whole.length() as u64) < end {
                    return Err(io(
                        name,
                        format!(
                            "{url} has {} bytes, expected at least {end}",
                            whole.length()
                        ),
                    ));
                }
                whole.subarray(offset as u32, end as u32)
            }
            s => return Err(Self::status_error(name, &url, s)),
        };
        if body.length() as u64 != len {
            return Err(io(
                name,
                format!("{url}: got {} bytes for a {len}-byte range", body.length()),
            ));
        }
        Ok(body.to_vec())
    }
}

impl ModelSource for HttpSource {
    fn describe(&self) -> String {
        self.base.clone()
    }
    fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            if let Some(s) = self.sizes.borrow().get(name) {
                return Ok(*s);
            }
            let s = self.fetch_size(name).await?;
            self.sizes.borrow_mut().insert(name.to_string(), s);
            Ok(s)
        })
    }
    fn read<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<Vec<u8>>> {
        Box::pin(self.fetch_range(name, offset, len))
    }
    fn read_f32_or_f16<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<F32Data>> {
        Box::pin(self.fetch_f32_or_f16(name, offset, len))
    }
}

fn web_sys_warn(msg: &str) {
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

/// CLIPImageProcessor's settings for the 224 px geometries of `RandomSource`.
const RANDOM_PREPROCESSOR: &str = r#"{"crop_size": 224, "do_center_crop": true, "do_convert_rgb": true,
  "do_normalize": true, "do_resize": true, "resample": 3, "size": 224,
  "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}"#;

/// Files of `top` first, then those of `base`.
struct Overlay<A, B> {
    top: A,
    base: B,
}

impl<A: ModelSource, B: ModelSource> ModelSource for Overlay<A, B> {
    fn describe(&self) -> String {
        self.base.describe()
    }
    fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            match self.top.size(name).await? {
                Some(n) => Ok(Some(n)),
                None => self.base.size(name).await,
            }
        })
    }
    fn read<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move {
            if self.top.size(name).await?.is_some() {
                self.top.read(name, offset, len).await
            } else {
                self.base.read(name, offset, len).await
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Progress

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
struct Progress<S> {
    inner: S,
    callback: Option<Function>,
    state: RefCell<ProgressState>,
    last: RefCell<f64>,
}

impl<S: ModelSource> Progress<S> {
    fn new(inner: S, callback: Option<Function>) -> Self {
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
                // The JSON header: count its tensors and their bytes.
                if let Ok(serde_json::Value::Object(h)) = serde_json::from_slice(bytes) {
                    for (k, v) in &h {
                        if k == "__metadata__" {
                            continue;
                        }
                        st.tensors_total += 1;
                        // Values index as Null when missing (the loader validates them).
                        let span = &v["data_offsets"];
                        if let (Some(a), Some(b)) = (span[0].as_u64(), span[1].as_u64()) {
                            st.bytes_total += b.saturating_sub(a);
                        }
                    }
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

impl<S: ModelSource> Progress<S> {
    /// The GPU backend compiled `compiled` of its `total` compute pipelines.
    fn shaders_compiled(&self, compiled: usize, total: usize) {
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
}

// ---------------------------------------------------------------------------------------------
// The class

/// The result for one image: its score and probability, or why it could not be scored.
#[derive(serde::Serialize)]
struct ImageResult {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prob: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

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

/// The files of a model at a URL, and their sizes, before downloading anything.
#[derive(serde::Serialize)]
struct Probe {
    files: Vec<ProbeFile>,
    total_bytes: u64,
    /// Bytes Cache Storage will hold once the model is loaded with the cache: `total_bytes`
    /// with the f32 matrices in f16 (about half of an f32 checkpoint).
    store_bytes: u64,
    /// A previous load from this URL completed into Cache Storage.
    cached: bool,
}

#[derive(serde::Serialize)]
struct ProbeFile {
    name: String,
    size: u64,
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
    /// requests; with `useCache`, responses are kept in Cache Storage for the next visit.
    #[wasm_bindgen(js_name = loadUrl)]
    pub async fn load_url(
        base: String,
        backend: String,
        use_cache: bool,
        on_progress: Option<Function>,
    ) -> Result<SciScore, JsError> {
        let backend = parse_backend(&backend)?;
        let http = HttpSource::new(&base, use_cache).await?;
        let complete = HttpSource::cache_key(&http.base, "complete");
        let src = Progress::new(http, on_progress);
        let model =
            Model::load_with_progress(&src, backend, &|c, t| src.shaders_compiled(c, t)).await?;
        src.inner.cache_put(&complete, b"1").await;
        Ok(SciScore {
            model: Rc::new(model),
            backend,
            cache_repaired: src.inner.repaired.get(),
        })
    }

    /// Loads a random model of a named geometry (`clip-h`, `clip-b`, `tiny`) with `layers`
    /// layers per tower, its weights synthesized on the fly (nothing downloaded): for timing the
    /// engine in this browser. `tokenizer` holds a `tokenizer.json` (the demo model's will do).
    #[wasm_bindgen(js_name = loadRandom)]
    pub async fn load_random(
        geometry: String,
        layers: usize,
        tokenizer: Uint8Array,
        backend: String,
    ) -> Result<SciScore, JsError> {
        let backend = parse_backend(&backend)?;
        let mut files = MemorySource::new();
        files.insert("tokenizer.json", tokenizer.to_vec());
        files.insert(
            "preprocessor_config.json",
            RANDOM_PREPROCESSOR.as_bytes().to_vec(),
        );
        let src = Overlay {
            top: files,
            // Weights held as a real checkpoint of this geometry would be: CLIP-H's 3.9 GB of
            // f32 is held as f16 on wasm32 (weights.rs), so time it that way at any depth.
            base: RandomSource::with_dtype(
                &geometry,
                Some(layers),
                0x5c1,
                RandomSource::new(&geometry, None, 0)?.checkpoint_bytes()
                    > crate::models::clip::weights::WASM_F32_LIMIT,
            )?,
        };
        let model = Model::load(&src, backend).await?;
        Ok(SciScore {
            model: Rc::new(model),
            backend,
            cache_repaired: 0,
        })
    }

    /// The model files at `base` and their sizes (`{files: [{name, size}], total_bytes,
    /// cached}`), read with HEAD requests, so the page can ask before a multi-GB download.
    #[wasm_bindgen(js_name = probeUrl)]
    pub async fn probe_url(base: String, use_cache: bool) -> Result<JsValue, JsError> {
        let src = HttpSource::new(&base, use_cache).await?;
        let mut names: Vec<String> = ["config.json", "preprocessor_config.json"]
            .map(String::from)
            .to_vec();
        if src.size("tokenizer.json").await?.is_some() {
            names.push("tokenizer.json".into());
        } else {
            names.extend(["vocab.json", "merges.txt"].map(String::from));
        }
        const INDEX: &str = "model.safetensors.index.json";
        if src.size(INDEX).await?.is_some() {
            names.push(INDEX.into());
            let size = src.size(INDEX).await?.unwrap_or(0);
            if size > 16 << 20 {
                return Err(Error::Limits {
                    what: format!("reading `{INDEX}`"),
                    needed: size,
                    available: 16 << 20,
                }
                .into());
            }
            let index: serde_json::Value = serde_json::from_slice(&src.read(INDEX, 0, size).await?)
                .map_err(|e| Error::safetensors(INDEX, e.to_string()))?;
            let mut shards: Vec<String> = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .map(|m| {
                    m.values()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            names.extend(shards);
        } else {
            names.push("model.safetensors".into());
        }
        let mut files = Vec::new();
        for name in names {
            let size = src.size(&name).await?.ok_or_else(|| Error::MissingFile {
                name: name.clone(),
                hint: Hint(Some(format!("looked in {}", src.base))),
            })?;
            files.push(ProbeFile { name, size });
        }
        let cached = src
            .cache_get(&HttpSource::cache_key(&src.base, "complete"))
            .await
            .is_some();
        let total_bytes: u64 = files.iter().map(|f| f.size).sum();
        // The headers and the config are small; a model that does not parse fails its load
        // anyway, and is counted here at full size.
        let halved = async {
            let ckpt = crate::io::safetensors::Checkpoint::open(&src).await.ok()?;
            let config = crate::io::source::read_all(&src, "config.json", 1 << 20)
                .await
                .ok()?;
            let cfg = crate::config::ClipConfig::from_json(&config).ok()?;
            let (all, kept) =
                ckpt.bytes_with_f16_matrices(&crate::models::clip::schema::ClipSchema::new(&cfg));
            Some(all - kept)
        };
        let store_bytes = total_bytes - halved.await.unwrap_or(0).min(total_bytes);
        Ok(serde_wasm_bindgen::to_value(&Probe {
            files,
            total_bytes,
            store_bytes,
            cached,
        })?)
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

    /// Scores `images` (`[{name, bytes: Uint8Array}]`) against `prompt`; resolves to
    /// `[{name, score, prob} | {name, error}]` in input order. Probabilities are a softmax over
    /// the images that could be read; an unreadable image gets an `error` and does not fail the
    /// others. Embeddings are cached by content, so a new prompt does not rerun the vision tower.
    pub fn score(&self, prompt: String, images: Array) -> Promise {
        let model = Rc::clone(&self.model);
        wasm_bindgen_futures::future_to_promise(async move {
            let images = read_images(&images).map_err(to_js)?;
            let scored = score_images(&model, &[prompt], &images)
                .await
                .map_err(to_js)?;
            serde_wasm_bindgen::to_value(&scored.results).map_err(JsValue::from)
        })
    }

    /// Scores `images` against every prompt of `prompts` (`string[]`); resolves to
    /// `{results, matrix: {scores, probs_over_images, probs_over_prompts}}`: `results` as
    /// [`SciScore::score`] gives for the first prompt, the matrix rows prompts and columns images
    /// (`null` in the column of an image that could not be read). Only prompts and images not
    /// seen before run through a tower.
    #[wasm_bindgen(js_name = scoreMatrix)]
    pub fn score_matrix(&self, prompts: Array, images: Array) -> Promise {
        let model = Rc::clone(&self.model);
        wasm_bindgen_futures::future_to_promise(async move {
            let prompts = prompts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    p.as_string().ok_or_else(|| {
                        to_js(Error::Invalid(format!("prompt {} is not a string", i + 1)))
                    })
                })
                .collect::<std::result::Result<Vec<String>, JsValue>>()?;
            let images = read_images(&images).map_err(to_js)?;
            let scored = score_images(&model, &prompts, &images)
                .await
                .map_err(to_js)?;
            serde::Serialize::serialize(&scored, &serde_wasm_bindgen::Serializer::json_compatible())
                .map_err(JsValue::from)
        })
    }

    /// `{texts, images}`: the prompts and images each tower has encoded since the model was
    /// loaded (cached ones are not encoded again).
    pub fn encoded(&self) -> Result<JsValue, JsError> {
        Ok(serde_wasm_bindgen::to_value(&self.model.encoded())?)
    }

    /// Evaluates the model on Science-T2I parquet shards (`[{name, bytes: Uint8Array}]`, in order;
    /// row numbers run on across them) with the semantics of `sciscore eval`; resolves to
    /// `{rows, overall_accuracy, category_accuracy, law_accuracy, errors, per_row}`.
    /// `onProgress({done, total})` after every row. The files are held in memory whole.
    #[wasm_bindgen(js_name = evalParquet)]
    pub fn eval_parquet(&self, files: Array, on_progress: Option<Function>) -> Promise {
        let model = Rc::clone(&self.model);
        wasm_bindgen_futures::future_to_promise(async move {
            let files = read_images(&files).map_err(to_js)?;
            let (report, per_row) =
                crate::jobs::eval::evaluate_in_memory(&model, files, |done, total| {
                    if let Some(f) = &on_progress {
                        let p = js_sys::Object::new();
                        let _ = Reflect::set(&p, &"done".into(), &(done as f64).into());
                        let _ = Reflect::set(&p, &"total".into(), &(total as f64).into());
                        let _ = f.call1(&JsValue::NULL, &p);
                    }
                })
                .await
                .map_err(to_js)?;
            #[derive(serde::Serialize)]
            struct Out {
                rows: usize,
                overall_accuracy: f64,
                category_accuracy: std::collections::BTreeMap<String, f64>,
                law_accuracy: std::collections::BTreeMap<String, f64>,
                errors: Vec<crate::jobs::eval::RowError>,
                per_row: Vec<crate::jobs::eval::EvalRow>,
            }
            let out = Out {
                rows: report.rows,
                overall_accuracy: report.overall_accuracy,
                category_accuracy: report.category_accuracy,
                law_accuracy: report.law_accuracy,
                errors: report.errors,
                per_row,
            };
            serde::Serialize::serialize(&out, &serde_wasm_bindgen::Serializer::json_compatible())
                .map_err(JsValue::from)
        })
    }
}

fn read_images(images: &Array) -> Result<Vec<(String, Vec<u8>)>> {
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

/// What the page gets for several prompts: the first prompt's results and the whole matrix.
#[derive(serde::Serialize)]
struct Scored {
    results: Vec<ImageResult>,
    matrix: Cells,
}

/// [`crate::ScoreMatrix`] over all images, `None` in the column of one that could not be read.
#[derive(serde::Serialize)]
struct Cells {
    scores: Vec<Vec<Option<f32>>>,
    probs_over_images: Vec<Vec<Option<f32>>>,
    probs_over_prompts: Vec<Vec<Option<f32>>>,
}

async fn score_images(
    model: &Model,
    prompts: &[String],
    images: &[(String, Vec<u8>)],
) -> Result<Scored> {
    if images.is_empty() {
        return Err(Error::Invalid("no images to score: add some first".into()));
    }
    let inputs: Vec<ImageInput> = images
        .iter()
        .map(|(n, b)| ImageInput { name: n, bytes: b })
        .collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let texts = model.text_embeds(&prompts).await?;
    // All images in one pass; if one cannot be read, embed them one by one to find which. Only
    // an image's own fault is its result: anything else (a lost GPU) fails the whole call.
    let embeds: Vec<Result<Vec<f32>>> = match model.image_embeds(&inputs).await {
        Ok(v) => v.into_iter().map(Ok).collect(),
        Err(e) if !image_fault(&e) => return Err(e),
        Err(e) if inputs.len() == 1 => vec![Err(e)],
        Err(_) => {
            let mut out = Vec::with_capacity(inputs.len());
            for im in &inputs {
                match model.image_embeds(&[*im]).await {
                    Ok(mut v) => out.push(Ok(v.remove(0))),
                    Err(e) if image_fault(&e) => out.push(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            out
        }
    };
    let ok: Vec<Vec<f32>> = embeds
        .iter()
        .filter_map(|e| e.as_ref().ok().cloned())
        .collect();
    let m = model.score_embeds(&texts, &ok)?;
    // The matrix column of each image (None: it could not be read).
    let mut next = 0;
    let column: Vec<Option<usize>> = embeds
        .iter()
        .map(|e| {
            e.is_ok().then(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    let cells = |rows: &[Vec<f32>]| -> Vec<Vec<Option<f32>>> {
        rows.iter()
            .map(|row| column.iter().map(|c| c.map(|c| row[c])).collect())
            .collect()
    };
    let results = images
        .iter()
        .zip(embeds)
        .zip(&column)
        .map(|(((name, _), e), c)| ImageResult {
            name: name.clone(),
            score: c.map(|c| m.scores[0][c]),
            prob: c.map(|c| m.probs_over_images[0][c]),
            error: e.err().map(|e| e.to_string()),
        })
        .collect();
    Ok(Scored {
        results,
        matrix: Cells {
            scores: cells(&m.scores),
            probs_over_images: cells(&m.probs_over_images),
            probs_over_prompts: cells(&m.probs_over_prompts),
        },
    })
}

/// Whether `e` is about one image (undecodable, too many pixels) rather than the engine.
fn image_fault(e: &Error) -> bool {
    matches!(e, Error::Image { .. } | Error::Limits { .. })
}
