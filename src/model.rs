//! The public model: load a Hugging Face `CLIPModel` folder, embed prompts and images, score.
//! One async API for native and wasm; native callers block on it with `pollster`.

use crate::error::{Error, Hint, Result};
use crate::io::safetensors::Checkpoint;
use crate::io::source::{read_all, ModelSource};
use crate::models::clip::config::{ClipConfig, PreprocessorConfig};
use crate::models::clip::cpu::{CpuModel, Trace};
use crate::models::clip::gpu::{GpuModel, GpuOptions};
use crate::models::clip::tokenizer::Tokenizer;
use crate::models::clip::weights::ClipWeights;
use crate::score::{self, ScoreMatrix};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// Config files are small; anything bigger is not a config.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// CLIP's tokenizer.json is about 3.5 MB.
const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// Which engine runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The f32 CPU reference.
    Cpu,
    /// WGSL compute shaders on WebGPU / Vulkan / Metal / DX12.
    Gpu,
}

/// One image to score: a name for messages and its encoded bytes (PNG, JPEG, WebP, GIF, BMP).
#[derive(Debug, Clone, Copy)]
pub struct ImageInput<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// The score of one image for a prompt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageScore {
    /// `exp(logit_scale) * cos(text, image)`.
    pub score: f32,
    /// Softmax of the scores over the images scored together.
    pub prob: f32,
}

/// How many inputs each tower has encoded since the model was loaded (cache hits not counted):
/// what a new prompt or a new image actually cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Encoded {
    /// Prompts run through the text tower.
    pub texts: u64,
    /// Images run through the vision tower.
    pub images: u64,
}

/// Every prompt against every image, where each image is scored or fails on its own
/// ([`Model::score_each`]).
#[derive(Debug, Clone)]
pub struct Scores {
    /// Per image, in input order: its column of `matrix`, or why it could not be scored.
    pub images: Vec<Result<usize>>,
    /// Over the images that could be scored: their probabilities are a softmax over them alone.
    pub matrix: ScoreMatrix,
}

impl Scores {
    /// Image `image`'s score and probability for prompt `prompt`, or why it has none.
    pub fn get(&self, prompt: usize, image: usize) -> std::result::Result<ImageScore, &Error> {
        let c = *self.images[image].as_ref()?;
        Ok(ImageScore {
            score: self.matrix.scores[prompt][c],
            prob: self.matrix.probs_over_images[prompt][c],
        })
    }

    /// One of `matrix`'s tables laid over every image: `None` in the column of an image that
    /// could not be scored.
    pub fn spread(&self, table: &[Vec<f32>]) -> Vec<Vec<Option<f32>>> {
        table
            .iter()
            .map(|row| {
                let cell = |c: &Result<usize>| c.as_ref().ok().map(|&c| row[c]);
                self.images.iter().map(cell).collect()
            })
            .collect()
    }

    /// The matrix over every image, or the error of the first that could not be scored.
    pub fn into_matrix(self) -> Result<ScoreMatrix> {
        if let Some(e) = self.images.into_iter().find_map(|c| c.err()) {
            return Err(e);
        }
        Ok(self.matrix)
    }
}

/// A loaded CLIP-family reward model (SciScore, PickScore, CLIP-H, ...).
pub struct Model {
    cfg: ClipConfig,
    pre: PreprocessorConfig,
    tokenizer: Tokenizer,
    engine: Engine,
    text_cache: Mutex<HashMap<String, Vec<f32>>>,
    image_cache: Mutex<HashMap<u128, Vec<f32>>>,
    encoded: Mutex<Encoded>,
}

/// The network behind a `Model`.
enum Engine {
    Cpu(Box<CpuModel>),
    Gpu(Box<GpuModel>),
}

fn content_key(bytes: &[u8]) -> u128 {
    // Two independent SipHash-1-3 states; a 128-bit key makes a collision between two images
    // of one session practically impossible.
    let mut a = std::collections::hash_map::DefaultHasher::new();
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0xa5u8.hash(&mut b);
    bytes.hash(&mut a);
    bytes.hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// What runs the CPU path's products, for the model's device line.
const CPU_DEVICE: &str = if cfg!(not(target_arch = "wasm32")) {
    "cpu"
} else if cfg!(feature = "relaxed-simd") {
    "cpu (wasm SIMD128 + relaxed-SIMD FMA)"
} else {
    "cpu (wasm SIMD128)"
};

impl Model {
    /// Loads config, tokenizer, preprocessor settings and weights from `src`, tensor by tensor.
    pub async fn load(src: &dyn ModelSource, backend: Backend) -> Result<Model> {
        Self::load_with_progress(src, backend, &|_, _| {}).await
    }

    /// [`Model::load`], calling `shaders_compiled(compiled, total)` as the GPU backend compiles
    /// its compute pipelines (a phase that can take seconds on a software adapter), so a page
    /// can show it; the weights' progress shows in the reads of `src`.
    pub async fn load_with_progress(
        src: &dyn ModelSource,
        backend: Backend,
        shaders_compiled: &dyn Fn(usize, usize),
    ) -> Result<Model> {
        let cfg = ClipConfig::from_json(&read_all(src, "config.json", MAX_CONFIG_BYTES).await?)?;
        let pre = load_preprocessor(src).await?;
        if pre.crop_size != (cfg.vision.image_size, cfg.vision.image_size) {
            return Err(Error::config(
                "preprocessor_config.json",
                format!(
                    "crop_size {:?} does not match the vision tower's image_size {}",
                    pre.crop_size, cfg.vision.image_size
                ),
            ));
        }
        let tokenizer = load_tokenizer(src).await?;
        let ckpt = Checkpoint::open(src).await?;
        let engine = match backend {
            Backend::Cpu => Engine::Cpu(Box::new(CpuModel {
                cfg: cfg.clone(),
                w: ClipWeights::load(&cfg, &ckpt, src).await?,
            })),
            Backend::Gpu => Engine::Gpu(Box::new(
                GpuModel::load(&cfg, &ckpt, src, GpuOptions::default(), shaders_compiled).await?,
            )),
        };
        Ok(Model {
            engine,
            cfg,
            pre,
            tokenizer,
            text_cache: Mutex::new(HashMap::new()),
            image_cache: Mutex::new(HashMap::new()),
            encoded: Mutex::new(Encoded::default()),
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// The raw `logit_scale` parameter (scores use its exponential).
    pub fn logit_scale(&self) -> f32 {
        match &self.engine {
            Engine::Cpu(m) => m.w.logit_scale,
            Engine::Gpu(m) => m.w.logit_scale,
        }
    }

    /// The engine in use: `cpu` (in the browser with the wasm build's SIMD kernel), or the GPU
    /// adapter's name, backend and driver.
    pub fn device(&self) -> String {
        match &self.engine {
            Engine::Cpu(_) => CPU_DEVICE.to_string(),
            Engine::Gpu(m) => m.adapter_info(),
        }
    }

    /// Bytes of GPU memory the model holds (weights and activations); 0 on the CPU backend.
    pub fn gpu_bytes(&self) -> u64 {
        match &self.engine {
            Engine::Cpu(_) => 0,
            Engine::Gpu(m) => m.gpu_bytes(),
        }
    }

    /// Inputs encoded by each tower so far.
    pub fn encoded(&self) -> Encoded {
        *self.encoded.lock().expect("counter lock")
    }

    fn cpu(&self) -> Result<&CpuModel> {
        match &self.engine {
            Engine::Cpu(m) => Ok(m),
            Engine::Gpu(_) => Err(Error::Invalid(
                "tracing hidden states needs the CPU backend (`--backend cpu`)".into(),
            )),
        }
    }

    /// Token ids of a prompt, as `CLIPTokenizerFast(prompt, truncation=True, max_length=77)`.
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(prompt, self.cfg.text.max_position_embeddings)
    }

    /// Preprocessed pixels of one image, (3, S, S), as `CLIPImageProcessor`.
    pub fn pixels(&self, image: ImageInput) -> Result<Vec<f32>> {
        crate::preprocess::image_to_pixels(image.name, image.bytes, &self.pre)
    }

    /// `get_text_features` of each prompt (projected, not normalized); cached by prompt text.
    pub async fn text_embeds(&self, prompts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut todo: Vec<&str> = Vec::new();
        {
            let cache = self.text_cache.lock().expect("cache lock");
            for &p in prompts {
                if !cache.contains_key(p) && !todo.contains(&p) {
                    todo.push(p);
                }
            }
        }
        if !todo.is_empty() {
            let ids = todo
                .iter()
                .map(|p| self.tokenize(p))
                .collect::<Result<Vec<_>>>()?;
            let feats = match &self.engine {
                Engine::Cpu(m) => ids
                    .iter()
                    .map(|i| m.text_features(i, None))
                    .collect::<Result<Vec<_>>>()?,
                // All new prompts in one GPU pass.
                Engine::Gpu(m) => m.text_features(&ids).await?,
            };
            self.encoded.lock().expect("counter lock").texts += todo.len() as u64;
            let mut cache = self.text_cache.lock().expect("cache lock");
            for (p, e) in todo.iter().zip(feats) {
                cache.insert(p.to_string(), e);
            }
        }
        let cache = self.text_cache.lock().expect("cache lock");
        Ok(prompts.iter().map(|p| cache[*p].clone()).collect())
    }

    /// `get_image_features` of each image (projected, not normalized); cached by content. An
    /// image that cannot be decoded fails the call with its name.
    pub async fn image_embeds(&self, images: &[ImageInput<'_>]) -> Result<Vec<Vec<f32>>> {
        self.image_embeds_each(images).await?.into_iter().collect()
    }

    /// [`Model::image_embeds`] image by image: an image that cannot be read (undecodable, too
    /// many pixels) gets its error and does not fail the others. The new images go through the
    /// vision tower in one pass; if the engine refuses that pass on the images' account (a
    /// dispatch over the device's limits), in one pass each. Anything else (a lost GPU) fails
    /// the call.
    pub async fn image_embeds_each(
        &self,
        images: &[ImageInput<'_>],
    ) -> Result<Vec<Result<Vec<f32>>>> {
        let keys: Vec<u128> = images.iter().map(|im| content_key(im.bytes)).collect();
        let new: Vec<usize> = {
            let cache = self.image_cache.lock().expect("cache lock");
            (0..images.len())
                .filter(|&i| !cache.contains_key(&keys[i]))
                .collect()
        };
        // Each new image decoded, once per content (a copy of an unreadable one is decoded
        // again, so that its error carries its own name).
        let mut failed: Vec<Option<Error>> = vec![None; images.len()];
        let (mut todo, mut pixels) = (Vec::new(), Vec::new());
        for i in new {
            if todo.iter().any(|&j| keys[j] == keys[i]) {
                continue;
            }
            match self.pixels(images[i]) {
                Ok(p) => {
                    todo.push(i);
                    pixels.extend(p);
                }
                Err(e) if e.is_image_fault() => failed[i] = Some(e),
                Err(e) => return Err(e),
            }
        }
        // All new images in one pass (the GPU splits only what exceeds its buffer limits).
        let feats: Vec<(usize, Vec<f32>)> = if todo.is_empty() {
            Vec::new()
        } else {
            match self.embed_pixels(&pixels, todo.len()).await {
                Ok(f) => todo.iter().copied().zip(f).collect(),
                Err(e) if !e.is_image_fault() => return Err(e),
                Err(e) if todo.len() == 1 => {
                    failed[todo[0]] = Some(e);
                    Vec::new()
                }
                Err(_) => {
                    let one = pixels.len() / todo.len();
                    let mut out = Vec::new();
                    for (&i, p) in todo.iter().zip(pixels.chunks_exact(one)) {
                        match self.embed_pixels(p, 1).await {
                            Ok(mut f) => out.push((i, f.remove(0))),
                            Err(e) if e.is_image_fault() => failed[i] = Some(e),
                            Err(e) => return Err(e),
                        }
                    }
                    out
                }
            }
        };
        let mut cache = self.image_cache.lock().expect("cache lock");
        for (i, f) in feats {
            cache.insert(keys[i], f);
        }
        // A copy of an image the engine refused has that image's error.
        let refused = |i: usize| {
            let j = todo.iter().find(|&&j| keys[j] == keys[i])?;
            failed[*j].clone()
        };
        Ok((0..images.len())
            .map(|i| match (&failed[i], cache.get(&keys[i])) {
                (Some(e), _) => Err(e.clone()),
                (None, Some(f)) => Ok(f.clone()),
                (None, None) => Err(refused(i).unwrap_or_else(|| {
                    Error::Invalid(format!("image {} was not embedded", i + 1))
                })),
            })
            .collect())
    }

    /// [`Model::embed_pixels`] of the images that could be preprocessed, in one pass and
    /// without the content cache: `pixels` holds each image's (3, S, S) pixels or why it has
    /// none, and each keeps its error.
    pub async fn embed_pixels_each<P: AsRef<[f32]>, E>(
        &self,
        pixels: Vec<std::result::Result<P, E>>,
    ) -> Result<Vec<std::result::Result<Vec<f32>, E>>> {
        let n = pixels.iter().flatten().count();
        let mut feats = if n == 0 {
            Vec::new()
        } else {
            let all: Vec<f32> = pixels
                .iter()
                .flatten()
                .flat_map(P::as_ref)
                .copied()
                .collect();
            self.embed_pixels(&all, n).await?
        }
        .into_iter();
        Ok(pixels
            .into_iter()
            .map(|p| p.map(|_| feats.next().expect("one embedding per image")))
            .collect())
    }

    /// The image preprocessing settings (`preprocessor_config.json`).
    pub fn preprocessor(&self) -> &PreprocessorConfig {
        &self.pre
    }

    /// `get_image_features` of `n` preprocessed images, (n, 3, S, S) -> n x (P,), in one pass and
    /// without the content cache (streams of unique images: benchmarks, batch scoring).
    pub async fn embed_pixels(&self, pixels: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        let feats = match &self.engine {
            Engine::Cpu(m) => m.image_features(pixels, n, None)?,
            Engine::Gpu(m) => m.image_features(pixels, n).await?,
        };
        self.encoded.lock().expect("counter lock").images += n as u64;
        Ok(feats
            .chunks_exact(self.cfg.projection_dim)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Scores each image against `prompt`; probabilities are a softmax over these images.
    pub async fn score(&self, prompt: &str, images: &[ImageInput<'_>]) -> Result<Vec<ImageScore>> {
        Ok(first_row(self.score_matrix(&[prompt], images).await?))
    }

    /// Scores every prompt against every image (rows prompts, columns images): one text pass
    /// per prompt not seen before and one vision pass per image not seen before, whatever the
    /// number of the others. An image that cannot be read fails the call with its name.
    pub async fn score_matrix(
        &self,
        prompts: &[&str],
        images: &[ImageInput<'_>],
    ) -> Result<ScoreMatrix> {
        if images.is_empty() {
            return Err(Error::Invalid("no images to score".into()));
        }
        self.score_each(prompts, images).await?.into_matrix()
    }

    /// [`Model::score_matrix`] image by image, the one scoring path of the page and the
    /// library: an image that cannot be read gets its error in [`Scores::images`] and the
    /// others are scored without it ([`Model::image_embeds_each`]).
    pub async fn score_each(&self, prompts: &[&str], images: &[ImageInput<'_>]) -> Result<Scores> {
        let texts = self.text_embeds(prompts).await?;
        let embeds = self.image_embeds_each(images).await?;
        self.score_embeds_each(&texts, embeds)
    }

    /// [`Model::score_each`] for images the caller preprocessed ([`Model::pixels`]), each
    /// (3, S, S) or why it could not be read, without the image cache: a caller that decodes
    /// its files one at a time holds one file's bytes at once.
    pub async fn score_each_pixels<P: AsRef<[f32]>>(
        &self,
        prompts: &[&str],
        pixels: Vec<Result<P>>,
    ) -> Result<Scores> {
        let texts = self.text_embeds(prompts).await?;
        let embeds = self.embed_pixels_each(pixels).await?;
        self.score_embeds_each(&texts, embeds)
    }

    /// [`Model::score`] for `n` images already preprocessed ([`Model::pixels`], (n, 3, S, S)),
    /// without the image cache: a caller that decodes its files one at a time holds one file's
    /// bytes at once.
    pub async fn score_pixels(
        &self,
        prompt: &str,
        pixels: &[f32],
        n: usize,
    ) -> Result<Vec<ImageScore>> {
        Ok(first_row(
            self.score_matrix_pixels(&[prompt], pixels, n).await?,
        ))
    }

    /// [`Model::score_matrix`] for `n` preprocessed images, without the image cache.
    pub async fn score_matrix_pixels(
        &self,
        prompts: &[&str],
        pixels: &[f32],
        n: usize,
    ) -> Result<ScoreMatrix> {
        if n == 0 {
            return Err(Error::Invalid("no images to score".into()));
        }
        let texts = self.text_embeds(prompts).await?;
        let imgs = self.embed_pixels(pixels, n).await?;
        self.score_embeds(&texts, &imgs)
    }

    /// The [`ScoreMatrix`] of text and image embeddings ([`Model::text_embeds`],
    /// [`Model::image_embeds`]); a non-finite score is an error, not a NaN in the output.
    pub fn score_embeds(&self, texts: &[Vec<f32>], images: &[Vec<f32>]) -> Result<ScoreMatrix> {
        if texts.is_empty() {
            return Err(Error::Invalid("no prompts to score".into()));
        }
        let m = score::matrix(texts, images, self.logit_scale());
        for (p, row) in m.scores.iter().enumerate() {
            if let Some(i) = row.iter().position(|x| !x.is_finite()) {
                let prompt = if texts.len() > 1 {
                    format!("prompt {} and ", p + 1)
                } else {
                    String::new()
                };
                return Err(Error::Invalid(format!(
                    "the score of {prompt}image {} is {}: the model computed a non-finite \
                     embedding (weights beyond the f16 range on the GPU? try `--backend cpu`)",
                    i + 1,
                    row[i]
                )));
            }
        }
        Ok(m)
    }

    /// [`Model::score_embeds`] where each image has its embedding or why it has none: the
    /// matrix covers the images that have one.
    pub fn score_embeds_each(
        &self,
        texts: &[Vec<f32>],
        images: Vec<Result<Vec<f32>>>,
    ) -> Result<Scores> {
        let mut embedded = Vec::new();
        let images = images
            .into_iter()
            .map(|e| {
                e.map(|v| {
                    embedded.push(v);
                    embedded.len() - 1
                })
            })
            .collect();
        let matrix = self.score_embeds(texts, &embedded)?;
        Ok(Scores { images, matrix })
    }

    /// Text tower with every hidden state recorded (the layer-by-layer parity tests).
    pub fn trace_text(&self, ids: &[u32]) -> Result<(Vec<f32>, Trace)> {
        let mut t = Trace::default();
        let f = self.cpu()?.text_features(ids, Some(&mut t))?;
        Ok((f, t))
    }

    /// Vision tower for one preprocessed image with every hidden state recorded.
    pub fn trace_image(&self, pixels: &[f32]) -> Result<(Vec<f32>, Trace)> {
        let mut t = Vec::new();
        let f = self.cpu()?.image_features(pixels, 1, Some(&mut t))?;
        Ok((f, t.remove(0)))
    }

    /// `get_image_features` of `n` preprocessed images, (n, P), and from the same pass each
    /// patch token's projection, (n*N, P) (region maps, `crate::jobs::explain`).
    pub(crate) async fn embed_pixels_and_patches(
        &self,
        pixels: &[f32],
        n: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        match &self.engine {
            Engine::Cpu(m) => m.image_and_patch_features(pixels, n),
            Engine::Gpu(m) => m.image_and_patch_features(pixels, n).await,
        }
    }

    /// Which engine runs the network.
    pub fn backend(&self) -> Backend {
        match &self.engine {
            Engine::Cpu(_) => Backend::Cpu,
            Engine::Gpu(_) => Backend::Gpu,
        }
    }
}

/// The first prompt's row as one score and probability per image.
fn first_row(m: ScoreMatrix) -> Vec<ImageScore> {
    let (scores, probs) = (&m.scores[0], &m.probs_over_images[0]);
    scores
        .iter()
        .zip(probs)
        .map(|(&score, &prob)| ImageScore { score, prob })
        .collect()
}

async fn load_preprocessor(src: &dyn ModelSource) -> Result<PreprocessorConfig> {
    const NAME: &str = "preprocessor_config.json";
    if src.size(NAME).await?.is_none() {
        return Err(Error::MissingFile {
            name: NAME.into(),
            hint: Hint(Some(
                "every Hugging Face CLIP model folder has one; copy it from the model's repository"
                    .into(),
            )),
        });
    }
    PreprocessorConfig::from_json(&read_all(src, NAME, MAX_CONFIG_BYTES).await?)
}

/// The tokenizer files of `src`: `tokenizer.json`, or else `vocab.json` and `merges.txt`.
pub(crate) async fn tokenizer_files(src: &dyn ModelSource) -> Result<&'static [&'static str]> {
    if src.size("tokenizer.json").await?.is_some() {
        return Ok(&["tokenizer.json"]);
    }
    if src.size("vocab.json").await?.is_some() && src.size("merges.txt").await?.is_some() {
        return Ok(&["vocab.json", "merges.txt"]);
    }
    Err(Error::MissingFile {
        name: "tokenizer.json".into(),
        hint: Hint(Some(
            "expected tokenizer.json, or vocab.json and merges.txt".into(),
        )),
    })
}

async fn load_tokenizer(src: &dyn ModelSource) -> Result<Tokenizer> {
    let read = |name| read_all(src, name, MAX_TOKENIZER_BYTES);
    match tokenizer_files(src).await? {
        [vocab, merges] => Tokenizer::from_vocab_merges(&read(vocab).await?, &read(merges).await?),
        _ => Tokenizer::from_tokenizer_json(&read("tokenizer.json").await?),
    }
}
