//! A virtual model folder with random weights (`--random clip-h`): `config.json` and a
//! `model.safetensors` synthesized on demand, so benchmarks exercise the real loading path on the
//! full CLIP ViT-H/14 geometry without downloading 3.9 GB.

use crate::error::{Error, Result};
use crate::io::source::{LocalFuture, ModelSource};
use crate::models::clip::schema::Role;
use serde_json::json;

/// A random `CLIPModel` served as files.
pub struct RandomSource {
    config: Vec<u8>,
    /// `8-byte length + header JSON`, then the data section.
    header: Vec<u8>,
    /// (absolute start, numel, kind) of each tensor, in file order.
    tensors: Vec<(u64, u64, Kind)>,
    size: u64,
    seed: u64,
    /// Bytes per value: 4 (F32) or 2 (F16).
    elem: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Values in +-scale.
    Uniform(f32),
    /// 1 +- 0.1 (LayerNorm weights).
    NearOne,
    Const(f32),
}

impl Kind {
    /// Values of the scale a trained CLIP has: weights uniform with the variance of PyTorch's
    /// default init (1 / fan_in), LayerNorm scales near 1, CLIP's logit scale ln(100).
    fn of(role: Role) -> Kind {
        match role {
            Role::Weight { fan_in } => Kind::Uniform((3.0 / fan_in as f32).sqrt()),
            Role::Bias => Kind::Uniform(0.05),
            Role::NormScale => Kind::NearOne,
            Role::Embedding => Kind::Uniform(0.5),
            Role::LogitScale => Kind::Const(100f32.ln()),
        }
    }
}

/// Named geometries.
fn preset(name: &str, layers: Option<usize>) -> Result<serde_json::Value> {
    // CLIP ViT-H/14 (laion/CLIP-ViT-H-14-laion2B-s32B-b79K, SciScore, PickScore_v1).
    let (tl, vl, td, vd, tf, vf, th, vh, proj, img, patch) = match name {
        "clip-h" => (24, 32, 1024, 1280, 4096, 5120, 16, 16, 1024, 224, 14),
        "clip-b" => (12, 12, 512, 768, 2048, 3072, 8, 12, 512, 224, 32),
        "tiny" => (2, 2, 32, 64, 64, 128, 4, 4, 40, 224, 14),
        _ => {
            return Err(Error::Invalid(format!(
                "unknown random model `{name}`; try clip-h, clip-b or tiny"
            )))
        }
    };
    // `layers` only removes layers: more than the geometry's own would not be that geometry.
    Ok(json!({
        "model_type": "clip",
        "projection_dim": proj,
        "text_config": {"hidden_size": td, "intermediate_size": tf, "num_attention_heads": th,
                        "num_hidden_layers": layers.map_or(tl, |l| l.min(tl)), "hidden_act": "gelu",
                        "vocab_size": 49408, "max_position_embeddings": 77, "eos_token_id": 2},
        "vision_config": {"hidden_size": vd, "intermediate_size": vf, "num_attention_heads": vh,
                          "num_hidden_layers": layers.map_or(vl, |l| l.min(vl)), "hidden_act": "gelu",
                          "image_size": img, "patch_size": patch}
    }))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl RandomSource {
    /// A random model of geometry `name` (`clip-h`, `clip-b`, `tiny`), optionally with fewer layers.
    pub fn new(name: &str, layers: Option<usize>, seed: u64) -> Result<Self> {
        Self::with_dtype(name, layers, seed, false)
    }

    /// Bytes of the checkpoint (`model.safetensors`).
    pub fn checkpoint_bytes(&self) -> u64 {
        self.size
    }

    /// `new`, with every tensor stored as F16 when `f16` (as a half-precision checkpoint, or
    /// as the browser's CPU path holds a multi-GB f32 one).
    pub fn with_dtype(name: &str, layers: Option<usize>, seed: u64, f16: bool) -> Result<Self> {
        let (dtype, elem) = if f16 { ("F16", 2u64) } else { ("F32", 4u64) };
        let config = preset(name, layers)?;
        let cfg =
            crate::models::clip::config::ClipConfig::from_json(config.to_string().as_bytes())?;
        let schema = crate::models::clip::schema::ClipSchema::new(&cfg);
        let list: Vec<(String, Vec<usize>, Kind)> = schema
            .tensors()
            .into_iter()
            .map(|t| (t.name, t.shape, Kind::of(t.role)))
            .collect();
        let mut header = serde_json::Map::new();
        let mut at = 0u64;
        let mut spans = Vec::new();
        for (name, shape, kind) in &list {
            let numel: u64 = shape.iter().map(|&d| d as u64).product();
            header.insert(
                name.clone(),
                json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + elem * numel]}),
            );
            spans.push((at, numel, *kind));
            at += elem * numel;
        }
        let mut h = serde_json::Value::Object(header).to_string().into_bytes();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let start = 8 + h.len() as u64;
        let mut head = (h.len() as u64).to_le_bytes().to_vec();
        head.extend(h);
        Ok(RandomSource {
            config: config.to_string().into_bytes(),
            header: head,
            tensors: spans
                .into_iter()
                .map(|(a, n, k)| (a + start, n, k))
                .collect(),
            size: start + at,
            seed,
            elem,
        })
    }

    fn value(&self, tensor: usize, i: u64, kind: Kind) -> f32 {
        let r = splitmix(self.seed ^ splitmix(tensor as u64) ^ i);
        let u = (r >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0; // [-1, 1)
        match kind {
            Kind::Uniform(s) => u * s,
            Kind::NearOne => 1.0 + 0.1 * u,
            Kind::Const(c) => c,
        }
    }

    fn bytes(&self, offset: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize);
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            if (pos as usize) < self.header.len() {
                out.push(self.header[pos as usize]);
                pos += 1;
                continue;
            }
            let ti = self.tensors.partition_point(|t| t.0 <= pos) - 1;
            let (start, numel, kind) = self.tensors[ti];
            let e = self.elem;
            let stop = end.min(start + e * numel);
            if pos >= stop {
                out.push(0);
                pos += 1;
                continue;
            }
            while pos < stop {
                let v = self.value(ti, (pos - start) / e, kind);
                let mut b = v.to_le_bytes();
                if e == 2 {
                    b[..2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                }
                let from = ((pos - start) % e) as usize;
                let take = (e as usize - from).min((stop - pos) as usize);
                out.extend_from_slice(&b[from..from + take]);
                pos += take as u64;
            }
        }
        out
    }
}

impl ModelSource for RandomSource {
    fn describe(&self) -> String {
        "a random model".to_string()
    }
    fn size<'a>(&'a self, name: &'a str) -> LocalFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            Ok(match name {
                "config.json" => Some(self.config.len() as u64),
                "model.safetensors" => Some(self.size),
                _ => None,
            })
        })
    }
    fn read<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> LocalFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move {
            match name {
                "config.json" => Ok(self.config[offset as usize..(offset + len) as usize].to_vec()),
                "model.safetensors" if offset + len <= self.size => Ok(self.bytes(offset, len)),
                _ => Err(Error::Io {
                    name: name.to_string(),
                    message: "not in the random model".to_string(),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::safetensors::Checkpoint;

    /// What the page's Cache Storage holds for an f32 CLIP-H (SciScore, PickScore_v1): its
    /// matrices in f16, the rest (biases, norms, position and patch embeddings) in f32.
    #[test]
    fn clip_h_cached_with_f16_matrices_is_about_half() {
        let src = RandomSource::new("clip-h", None, 0).unwrap();
        let ckpt = pollster::block_on(Checkpoint::open(&src)).unwrap();
        let cfg = crate::config::ClipConfig::from_json(&src.config).unwrap();
        let (all, cached) =
            ckpt.bytes_with_f16_matrices(&crate::models::clip::schema::ClipSchema::new(&cfg));
        let ratio = cached as f64 / all as f64;
        println!("clip-h: {all} bytes of f32 tensors, {cached} cached ({ratio:.4})");
        assert_eq!((all, cached), (3_944_437_764, 1_976_260_612));
        assert!((0.5..0.502).contains(&ratio), "{ratio}");
    }

    /// The F16 variant holds the F32 variant's values rounded to f16, header and all.
    #[test]
    fn f16_random_model_is_the_f32_one_rounded() {
        let (a, b) = (
            RandomSource::new("tiny", Some(1), 7).unwrap(),
            RandomSource::with_dtype("tiny", Some(1), 7, true).unwrap(),
        );
        assert!(b.checkpoint_bytes() < a.checkpoint_bytes() * 6 / 10);
        pollster::block_on(async {
            let (ca, cb) = (
                Checkpoint::open(&a).await.unwrap(),
                Checkpoint::open(&b).await.unwrap(),
            );
            let cfg = crate::models::clip::config::ClipConfig::from_json(&a.config).unwrap();
            let (d, f) = (
                cfg.vision.tower.hidden_size,
                cfg.vision.tower.intermediate_size,
            );
            for (name, shape) in [
                ("vision_model.encoder.layers.0.mlp.fc1.weight", vec![f, d]),
                (
                    "text_model.embeddings.token_embedding.weight",
                    vec![49408, cfg.text.tower.hidden_size],
                ),
                ("logit_scale", vec![]),
            ] {
                let va = ca.read_f32(&a, name, &shape).await.unwrap();
                let vb = cb.read_f32(&b, name, &shape).await.unwrap();
                assert_eq!(va.len(), vb.len());
                for (x, y) in va.iter().zip(&vb) {
                    assert_eq!(half::f16::from_f32(*x).to_f32(), *y, "{name}");
                }
            }
        });
    }
}
