//! For the throughput benchmark only (`tests/browser/bench.mjs`, the worker's `bench` request):
//! models of a named geometry with random weights synthesized on the fly, nothing downloaded.
//! The page's Science-T2I accuracy panel is `eval.rs`.

use super::{parse_backend, SciScore};
use crate::error::Result;
use crate::io::random::RandomSource;
use crate::io::source::{LocalFuture, MemorySource, ModelSource};
use crate::model::Model;
use js_sys::Uint8Array;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
impl SciScore {
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
