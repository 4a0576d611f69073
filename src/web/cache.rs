//! Cache Storage for downloaded model files: byte ranges kept under their URL and range, so the
//! same load works offline next time. The page names the bucket (`www/storage.js`).
//!
//! Every entry is sealed with its length and a checksum ([`seal`]): a damaged one is deleted,
//! downloaded again and counted ([`ModelCache::repaired`]), never loaded.

use super::{console_warn, js_message};
use crate::io::source::{seal, unseal};
use js_sys::Uint8Array;
use std::cell::Cell;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// One Cache Storage bucket of model files.
pub(super) struct ModelCache {
    cache: web_sys::Cache,
    /// Damaged entries found (and fetched again) since it was opened.
    repaired: Cell<u32>,
}

impl ModelCache {
    /// The bucket `name`, or `None` where this context has no Cache Storage (or refuses it).
    pub(super) async fn open(name: &str) -> Option<Self> {
        let global = js_sys::global();
        let storage = if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
            w.caches().ok()?
        } else {
            global.dyn_ref::<web_sys::Window>()?.caches().ok()?
        };
        let cache = JsFuture::from(storage.open(name))
            .await
            .ok()?
            .dyn_into()
            .ok()?;
        Some(ModelCache {
            cache,
            repaired: Cell::new(0),
        })
    }

    /// The key of `url` + `tag` (a query parameter: Cache matching ignores fragments).
    pub(super) fn key(url: &str, tag: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}sciscore={tag}")
    }

    /// Damaged entries found, deleted and downloaded again.
    pub(super) fn repaired(&self) -> u32 {
        self.repaired.get()
    }

    /// The body under `key`, if there is one and it is intact (a damaged entry is deleted and
    /// counted: the caller downloads it again).
    pub(super) async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let hit = JsFuture::from(self.cache.match_with_str(key)).await.ok()?;
        let resp: web_sys::Response = hit.dyn_into().ok()?;
        let entry = match JsFuture::from(resp.array_buffer().ok()?).await {
            Ok(buf) => Uint8Array::new(&buf).to_vec(),
            Err(_) => Vec::new(),
        };
        if let Some(body) = unseal(&entry) {
            return Some(body.to_vec());
        }
        console_warn(&format!(
            "sciscore: a damaged cache entry ({key}, {} bytes) was deleted and is downloaded again",
            entry.len()
        ));
        self.repaired.set(self.repaired.get() + 1);
        let _ = JsFuture::from(self.cache.delete_with_str(key)).await;
        None
    }

    pub(super) async fn put(&self, key: &str, body: &[u8]) {
        let sealed = Uint8Array::from(&seal(body)[..]);
        let Ok(resp) = web_sys::Response::new_with_opt_buffer_source(Some(&sealed)) else {
            return;
        };
        // A full disk or quota only costs the next visit a download: warn, do not fail.
        if let Err(e) = JsFuture::from(self.cache.put_with_str(key, &resp)).await {
            console_warn(&format!("sciscore: not cached ({key}): {}", js_message(&e)));
        }
    }
}
