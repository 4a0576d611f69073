//! Region maps in the browser (`crate::jobs::explain`): the patch maps of the scored images, and an
//! occlusion map cell range by cell range, so the worker can report progress and stop between
//! steps (`www/worker.js`, `www/explain.js`).

use super::{read_named, to_js, SciScore};
use crate::error::Result;
use crate::jobs::explain::PatchExplanation;
use crate::model::{ImageInput, Model};
use js_sys::{Array, Promise};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// One image's patch map, or why it has none.
#[derive(serde::Serialize)]
struct PatchResult {
    name: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    map: Option<PatchExplanation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Patch maps of every image that can be read, in one vision pass; an unreadable one gets its
/// error.
async fn patch_maps(
    model: &Model,
    prompt: &str,
    images: &[(String, Vec<u8>)],
) -> Result<Vec<PatchResult>> {
    let mut pixels = Vec::new();
    let mut read = Vec::with_capacity(images.len());
    for (name, bytes) in images {
        match model.pixels(ImageInput { name, bytes }) {
            Ok(p) => {
                pixels.extend(p);
                read.push(None);
            }
            Err(e) if e.is_image_fault() => read.push(Some(e.to_string())),
            Err(e) => return Err(e),
        }
    }
    let n = read.iter().filter(|r| r.is_none()).count();
    let mut maps = if n > 0 {
        model.patch_maps(prompt, &pixels, n).await?.into_iter()
    } else {
        Vec::new().into_iter()
    };
    Ok(images
        .iter()
        .zip(read)
        .map(|((name, _), error)| PatchResult {
            name: name.clone(),
            map: if error.is_none() { maps.next() } else { None },
            error,
        })
        .collect())
}

#[wasm_bindgen]
impl SciScore {
    /// The score and patch map of each of `images` (`[{name, bytes: Uint8Array}]`) for `prompt`:
    /// `[{name, score, patch_map: {grid: [rows, cols], values}} | {name, error}]` in input order.
    #[wasm_bindgen(js_name = patchMaps)]
    pub fn patch_maps(&self, prompt: String, images: Array) -> Promise {
        let model = Rc::clone(&self.model);
        wasm_bindgen_futures::future_to_promise(async move {
            let images = read_named(&images).map_err(to_js)?;
            let out = patch_maps(&model, &prompt, &images).await.map_err(to_js)?;
            // Plain objects (the flattened map would otherwise become a JS Map).
            serde::Serialize::serialize(&out, &serde_wasm_bindgen::Serializer::json_compatible())
                .map_err(JsValue::from)
        })
    }

    /// Occluded images per step on this backend (one on the CPU, so progress moves often).
    #[wasm_bindgen(js_name = occlusionChunk)]
    pub fn occlusion_chunk(&self) -> usize {
        self.model.occlusion_chunk()
    }

    /// `score(original) - score(occluded)` for cells `start..end` of the `grid` x `grid`
    /// occlusion map of `image` (`{name, bytes}`), whose score is `original`.
    #[wasm_bindgen(js_name = occlusionDrops)]
    pub fn occlusion_drops(
        &self,
        prompt: String,
        image: JsValue,
        grid: usize,
        start: usize,
        end: usize,
        original: f32,
    ) -> Promise {
        let model = Rc::clone(&self.model);
        wasm_bindgen_futures::future_to_promise(async move {
            let one = Array::of1(&image);
            let (name, bytes) = read_named(&one).map_err(to_js)?.remove(0);
            let pixels = model
                .pixels(ImageInput {
                    name: &name,
                    bytes: &bytes,
                })
                .map_err(to_js)?;
            let drops = model
                .occlusion_drops(&prompt, &pixels, grid, start..end, original)
                .await
                .map_err(to_js)?;
            serde_wasm_bindgen::to_value(&drops).map_err(JsValue::from)
        })
    }
}
