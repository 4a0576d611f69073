//! Model files under a base URL, read with HTTP Range requests (one per tensor) and optionally
//! kept in Cache Storage; and the probe that lists them and their sizes before a download.

use super::cache::ModelCache;
use super::{io, js_message};
use crate::error::{Error, Hint, Result};
use crate::io::source::{F32Data, LocalFuture, ModelSource};
use js_sys::{Promise, Uint8Array};
use std::cell::RefCell;
use std::collections::HashMap;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

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

/// The files under a base URL (a Hugging Face `resolve/main` URL, or the local server), read
/// with one Range request per call; responses optionally kept in Cache Storage ([`ModelCache`]),
/// keyed by URL and byte range, so the same load works offline next time.
///
/// In the cache, the ranges of f32 matrices are kept in f16 (half the disk; see
/// [`ModelSource::read_f32_or_f16`]), under a key of their own (`h<a>-<b>`, the f32 range), and
/// the load that fills the cache uses those f16 values too, so a first and a second visit score
/// alike.
pub(super) struct HttpSource {
    pub(super) base: String,
    cache: Option<ModelCache>,
    sizes: RefCell<HashMap<String, Option<u64>>>,
}

impl HttpSource {
    /// The files under `base`, kept in the Cache Storage bucket `cache` if one is named.
    pub(super) async fn new(base: &str, cache: Option<&str>) -> Result<Self> {
        let base = base.trim();
        if base.is_empty() {
            return Err(Error::Invalid("the model URL is empty".into()));
        }
        let cache = match cache {
            Some(name) => ModelCache::open(name).await,
            None => None,
        };
        Ok(HttpSource {
            base: format!("{}/", base.trim_end_matches('/')),
            cache,
            sizes: RefCell::new(HashMap::new()),
        })
    }

    /// Damaged cache entries found (and fetched again) so far.
    pub(super) fn repaired(&self) -> u32 {
        self.cache.as_ref().map_or(0, ModelCache::repaired)
    }

    /// Whether a load from this URL completed into the cache before.
    pub(super) async fn is_complete(&self) -> bool {
        self.cache_get(&self.complete_key()).await.is_some()
    }

    /// Notes in the cache that a load from this URL completed.
    pub(super) async fn mark_complete(&self) {
        self.cache_put(&self.complete_key(), b"1").await;
    }

    fn complete_key(&self) -> String {
        ModelCache::key(&self.base, "complete")
    }

    async fn cache_get(&self, key: &str) -> Option<Vec<u8>> {
        self.cache.as_ref()?.get(key).await
    }

    async fn cache_put(&self, key: &str, body: &[u8]) {
        if let Some(c) = &self.cache {
            c.put(key, body).await;
        }
    }

    fn url(&self, name: &str) -> String {
        let path: Vec<String> = name
            .split('/')
            .map(|s| String::from(js_sys::encode_uri_component(s)))
            .collect();
        format!("{}{}", self.base, path.join("/"))
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
        let key = ModelCache::key(&url, "size");
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
        Ok(ModelCache::key(
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
        if self.cache.is_none() || len == 0 || !len.is_multiple_of(4) {
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

/// The files of a model at a URL, and their sizes, before downloading anything.
#[derive(serde::Serialize)]
pub(super) struct Probe {
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

/// The files the loader will read from `src` and their sizes, with HEAD requests (and the
/// shard index and safetensors headers, which are small), found as the loader finds them.
pub(super) async fn probe(src: &HttpSource) -> Result<Probe> {
    use crate::io::safetensors::{checkpoint_files, Checkpoint, INDEX};
    let mut names: Vec<String> = ["config.json", "preprocessor_config.json"]
        .map(String::from)
        .to_vec();
    names.extend(
        crate::model::tokenizer_files(src)
            .await?
            .iter()
            .map(|&n| n.to_string()),
    );
    if src.size(INDEX).await?.is_some() {
        names.push(INDEX.into());
    }
    let mut shards = checkpoint_files(src).await?;
    shards.sort();
    names.extend(shards);
    let mut files = Vec::new();
    for name in names {
        let size = src.size(&name).await?.ok_or_else(|| Error::MissingFile {
            name: name.clone(),
            hint: Hint(Some(format!("looked in {}", src.base))),
        })?;
        files.push(ProbeFile { name, size });
    }
    let cached = src.is_complete().await;
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    // The headers and the config are small; a model that does not parse fails its load
    // anyway, and is counted here at full size.
    let halved = async {
        let ckpt = Checkpoint::open(src).await.ok()?;
        let config = crate::io::source::read_all(src, "config.json", 1 << 20)
            .await
            .ok()?;
        let cfg = crate::config::ClipConfig::from_json(&config).ok()?;
        let (all, kept) =
            ckpt.bytes_with_f16_matrices(&crate::models::clip::schema::ClipSchema::new(&cfg));
        Some(all - kept)
    };
    let store_bytes = total_bytes - halved.await.unwrap_or(0).min(total_bytes);
    Ok(Probe {
        files,
        total_bytes,
        store_bytes,
        cached,
    })
}
