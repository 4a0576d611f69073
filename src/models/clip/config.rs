//! Model hyper-parameters from a Hugging Face `CLIPModel` folder: `config.json` and
//! `preprocessor_config.json`.
//!
//! Fields missing from a file take the defaults of transformers 4.50.3
//! (`models/clip/configuration_clip.py`, `image_processing_clip.py`), because that is what the
//! reference implementation does with the same file. Nothing about a model's geometry is a
//! constant in code.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// The activation of the MLP blocks (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU: `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP).
    QuickGelu,
}

/// One transformer tower (text or vision).
#[derive(Debug, Clone, PartialEq)]
pub struct TowerConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub layer_norm_eps: f32,
    pub act: Activation,
}

impl TowerConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
}

/// The text tower.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub tower: TowerConfig,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    /// `eos_token_id` as stored; 2 is the legacy value of old CLIP configs, for which transformers
    /// pools at `argmax(input_ids)` instead of at the first `eos_token_id`.
    pub eos_token_id: i64,
}

/// The vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub tower: TowerConfig,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Tokens: one class token plus one per patch (257 for ViT-H/14 at 224 px).
    pub fn num_positions(&self) -> usize {
        self.grid() * self.grid() + 1
    }
}

/// A whole `CLIPModel` (`config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub projection_dim: usize,
}

/// How `preprocessor_config.json` says to resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// Scale so the shorter edge has this length (CLIP's usual `shortest_edge`).
    ShortestEdge(usize),
    /// Resize to exactly this size.
    Exact { height: usize, width: usize },
}

/// PIL resampling filters (`resample` codes of `PIL.Image.Resampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Nearest,
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

/// The `CLIPImageProcessor` settings (`preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessorConfig {
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub size: ResizeTo,
    pub resample: Resample,
    pub do_center_crop: bool,
    /// (height, width)
    pub crop_size: (usize, usize),
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

// transformers 4.50.3 defaults (configuration_clip.py, image_processing_clip.py, constants.py).
const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Most patches a side of the vision grid that a config may ask for.
const MAX_GRID: usize = 1024;

struct Fields<'a> {
    file: &'a str,
    section: &'a str,
    map: Map<String, Value>,
}

impl Fields<'_> {
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0 && n < (1 << 31))
                .map(|n| n as usize)
                .ok_or_else(|| self.bad(key, v, "a positive integer below 2^31")),
        }
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| self.bad(key, v, "a number")),
        }
    }
    fn i64_or(&self, key: &str, default: i64) -> Result<i64> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| self.bad(key, v, "an integer")),
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, v, "true or false")),
        }
    }
    fn str_or<'b>(&'b self, key: &str, default: &'b str) -> Result<&'b str> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| self.bad(key, v, "a string")),
        }
    }
    fn triple_or(&self, key: &str, default: [f32; 3]) -> Result<[f32; 3]> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => {
                let x = n.as_f64().unwrap_or(f64::NAN) as f32;
                Ok([x, x, x])
            }
            Some(v @ Value::Array(a)) => {
                let xs: Vec<f32> = a
                    .iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| x as f32)
                    .collect();
                match xs[..] {
                    [a, b, c] if xs.iter().all(|x| x.is_finite()) => Ok([a, b, c]),
                    _ => Err(self.bad(key, v, "a list of three numbers")),
                }
            }
            Some(v) => Err(self.bad(key, v, "a list of three numbers")),
        }
    }
    fn bad(&self, key: &str, v: &Value, want: &str) -> Error {
        let at = if self.section.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.section)
        };
        Error::config(self.file, format!("`{at}` is {v}, expected {want}"))
    }
}

fn parse_json(file: &str, bytes: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::config(file, "expected a JSON object")),
        Err(e) => Err(Error::config(file, format!("invalid JSON: {e}"))),
    }
}

/// A sub-config: `text_config` with `text_config_dict` (old checkpoints) merged over it, as
/// transformers' `CLIPConfig.__init__` does.
fn section(root: &Map<String, Value>, name: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for key in [name.to_string(), format!("{name}_dict")] {
        if let Some(Value::Object(m)) = root.get(&key) {
            out.extend(m.clone());
        }
    }
    out
}

fn activation(f: &Fields) -> Result<Activation> {
    // transformers' CLIP{Text,Vision}Config default is quick_gelu.
    match f.str_or("hidden_act", "quick_gelu")? {
        "gelu" => Ok(Activation::Gelu),
        "quick_gelu" => Ok(Activation::QuickGelu),
        other => Err(Error::config(
            f.file,
            format!(
                "`{}.hidden_act` is \"{other}\"; supported: \"gelu\" (exact erf) and \"quick_gelu\"",
                f.section
            ),
        )),
    }
}

fn tower(f: &Fields, defaults: (usize, usize, usize, usize)) -> Result<TowerConfig> {
    let (hidden, inter, layers, heads) = defaults;
    let t = TowerConfig {
        hidden_size: f.usize_or("hidden_size", hidden)?,
        intermediate_size: f.usize_or("intermediate_size", inter)?,
        num_layers: f.usize_or("num_hidden_layers", layers)?,
        num_heads: f.usize_or("num_attention_heads", heads)?,
        layer_norm_eps: f.f64_or("layer_norm_eps", 1e-5)? as f32,
        act: activation(f)?,
    };
    if !t.hidden_size.is_multiple_of(t.num_heads) {
        return Err(Error::config(
            f.file,
            format!(
                "`{}`: hidden_size {} is not divisible by num_attention_heads {}",
                f.section, t.hidden_size, t.num_heads
            ),
        ));
    }
    Ok(t)
}

impl ClipConfig {
    /// Parses `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        const FILE: &str = "config.json";
        let root = parse_json(FILE, bytes)?;
        if let Some(Value::String(mt)) = root.get("model_type") {
            if mt != "clip" {
                return Err(Error::config(
                    FILE,
                    format!(
                        "model_type is \"{mt}\"; sciscore loads CLIPModel checkpoints (\"clip\")"
                    ),
                ));
            }
        }
        let top = Fields {
            file: FILE,
            section: "",
            map: root.clone(),
        };
        let tf = Fields {
            file: FILE,
            section: "text_config",
            map: section(&root, "text_config"),
        };
        let vf = Fields {
            file: FILE,
            section: "vision_config",
            map: section(&root, "vision_config"),
        };
        let text = TextConfig {
            tower: tower(&tf, (512, 2048, 12, 8))?,
            vocab_size: tf.usize_or("vocab_size", 49408)?,
            max_position_embeddings: tf.usize_or("max_position_embeddings", 77)?,
            eos_token_id: tf.i64_or("eos_token_id", 49407)?,
        };
        let vision = VisionConfig {
            tower: tower(&vf, (768, 3072, 12, 12))?,
            image_size: vf.usize_or("image_size", 224)?,
            patch_size: vf.usize_or("patch_size", 32)?,
            num_channels: vf.usize_or("num_channels", 3)?,
        };
        if vision.num_channels != 3 {
            return Err(Error::config(
                FILE,
                "vision_config.num_channels must be 3 (RGB)",
            ));
        }
        if vision.patch_size > vision.image_size {
            return Err(Error::config(
                FILE,
                "vision_config.patch_size is larger than image_size",
            ));
        }
        // The token count (grid^2 + 1) must not overflow a 32-bit usize (wasm32); real CLIPs have
        // 7 to 37 patches a side.
        if vision.image_size / vision.patch_size > MAX_GRID {
            return Err(Error::config(
                FILE,
                format!(
                    "vision_config: image_size {} / patch_size {} gives more than {MAX_GRID} \
                     patches a side",
                    vision.image_size, vision.patch_size
                ),
            ));
        }
        Ok(ClipConfig {
            text,
            vision,
            projection_dim: top.usize_or("projection_dim", 512)?,
        })
    }
}

fn size_dict(f: &Fields, key: &str) -> Option<Map<String, Value>> {
    match f.map.get(key) {
        Some(Value::Object(m)) => Some(m.clone()),
        _ => None,
    }
}

impl PreprocessorConfig {
    /// Parses `preprocessor_config.json`, in the old (`"size": 224`) and the dict
    /// (`"size": {"shortest_edge": 224}`) forms.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        const FILE: &str = "preprocessor_config.json";
        let f = Fields {
            file: FILE,
            section: "",
            map: parse_json(FILE, bytes)?,
        };
        // `size`: an int means shortest edge (CLIP uses default_to_square=False).
        let size = match size_dict(&f, "size") {
            None => ResizeTo::ShortestEdge(f.usize_or("size", 224)?),
            Some(m) => {
                let d = Fields {
                    file: FILE,
                    section: "size",
                    map: m,
                };
                if d.map.contains_key("shortest_edge") {
                    ResizeTo::ShortestEdge(d.usize_or("shortest_edge", 224)?)
                } else if d.map.contains_key("height") && d.map.contains_key("width") {
                    ResizeTo::Exact {
                        height: d.usize_or("height", 224)?,
                        width: d.usize_or("width", 224)?,
                    }
                } else {
                    return Err(Error::config(
                        FILE,
                        "`size` needs `shortest_edge`, or `height` and `width`",
                    ));
                }
            }
        };
        let crop_size = match size_dict(&f, "crop_size") {
            None => {
                let n = f.usize_or("crop_size", 224)?;
                (n, n)
            }
            Some(m) => {
                let d = Fields {
                    file: FILE,
                    section: "crop_size",
                    map: m,
                };
                if !(d.map.contains_key("height") && d.map.contains_key("width")) {
                    return Err(Error::config(
                        FILE,
                        "`crop_size` needs `height` and `width`",
                    ));
                }
                (d.usize_or("height", 224)?, d.usize_or("width", 224)?)
            }
        };
        let resample = match f.i64_or("resample", 3)? {
            0 => Resample::Nearest,
            1 => Resample::Lanczos,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            4 => Resample::Box,
            5 => Resample::Hamming,
            n => {
                return Err(Error::config(
                    FILE,
                    format!("unknown PIL resample code {n}"),
                ))
            }
        };
        let image_std = f.triple_or("image_std", OPENAI_CLIP_STD)?;
        if image_std.contains(&0.0) {
            return Err(Error::config(FILE, "`image_std` has a zero"));
        }
        Ok(PreprocessorConfig {
            do_convert_rgb: f.bool_or("do_convert_rgb", true)?,
            do_resize: f.bool_or("do_resize", true)?,
            size,
            resample,
            do_center_crop: f.bool_or("do_center_crop", true)?,
            crop_size,
            do_rescale: f.bool_or("do_rescale", true)?,
            rescale_factor: f.f64_or("rescale_factor", 1.0 / 255.0)?,
            do_normalize: f.bool_or("do_normalize", true)?,
            image_mean: f.triple_or("image_mean", OPENAI_CLIP_MEAN)?,
            image_std,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_config_dict_overrides_and_defaults_apply() {
        let cfg = ClipConfig::from_json(
            br#"{"model_type":"clip","projection_dim":1024,
                "text_config":{"hidden_size":1024,"num_attention_heads":16,"hidden_act":"gelu"},
                "text_config_dict":{"num_hidden_layers":24},
                "vision_config":{"hidden_size":1280,"num_attention_heads":16,"patch_size":14,
                                 "num_hidden_layers":32,"intermediate_size":5120,"hidden_act":"gelu"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.text.tower.num_layers, 24);
        assert_eq!(cfg.text.tower.head_dim(), 64);
        assert_eq!(cfg.vision.tower.head_dim(), 80);
        assert_eq!(cfg.vision.num_positions(), 257);
        assert_eq!(cfg.text.tower.layer_norm_eps, 1e-5);
        assert_eq!(cfg.projection_dim, 1024);
    }

    #[test]
    fn unknown_activation_is_named() {
        let err = ClipConfig::from_json(br#"{"text_config":{"hidden_act":"relu"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("text_config.hidden_act") && msg.contains("relu"),
            "{msg}"
        );
    }

    #[test]
    fn preprocessor_forms() {
        let old = PreprocessorConfig::from_json(br#"{"size":224,"crop_size":224}"#).unwrap();
        assert_eq!(old.size, ResizeTo::ShortestEdge(224));
        assert_eq!(old.crop_size, (224, 224));
        let new = PreprocessorConfig::from_json(
            br#"{"size":{"shortest_edge":36},"crop_size":{"height":30,"width":36},"image_mean":[0.5,0.5,0.5]}"#,
        )
        .unwrap();
        assert_eq!(new.size, ResizeTo::ShortestEdge(36));
        assert_eq!(new.crop_size, (30, 36));
        assert_eq!(new.image_mean, [0.5; 3]);
        assert!(PreprocessorConfig::from_json(br#"{"size":{"longest":3}}"#).is_err());
        assert!(PreprocessorConfig::from_json(b"not json").is_err());
    }
}
