//! Scoring for the page: every prompt against every image through [`Model::score_each`], so an
//! image that cannot be read gets its error and the others are scored without it.

use super::{read_named, to_js, SciScore};
use crate::error::{Error, Result};
use crate::model::{ImageInput, Model};
use js_sys::{Array, Promise};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

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

#[wasm_bindgen]
impl SciScore {
    /// Scores `images` (`[{name, bytes: Uint8Array}]`) against `prompt`; resolves to
    /// `[{name, score, prob} | {name, error}]` in input order. Probabilities are a softmax over
    /// the images that could be read; an unreadable image gets an `error` and does not fail the
    /// others. Embeddings are cached by content, so a new prompt does not rerun the vision tower.
    pub fn score(&self, prompt: String, images: Array) -> Promise {
        let model = Rc::clone(&self.model);
        wasm_bindgen_futures::future_to_promise(async move {
            let images = read_named(&images).map_err(to_js)?;
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
            let images = read_named(&images).map_err(to_js)?;
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
    let s = model.score_each(&prompts, &inputs).await?;
    let results = images
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let r = s.get(0, i);
            ImageResult {
                name: name.clone(),
                score: r.as_ref().ok().map(|r| r.score),
                prob: r.as_ref().ok().map(|r| r.prob),
                error: r.err().map(Error::to_string),
            }
        })
        .collect();
    Ok(Scored {
        results,
        matrix: Cells {
            scores: s.spread(&s.matrix.scores),
            probs_over_images: s.spread(&s.matrix.probs_over_images),
            probs_over_prompts: s.spread(&s.matrix.probs_over_prompts),
        },
    })
}
