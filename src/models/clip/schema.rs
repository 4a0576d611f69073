//! Every tensor of a Hugging Face `CLIPModel` checkpoint, named and shaped once: the CPU loader
//! (`weights.rs`), the GPU uploader (`gpu_weights.rs`) and the random-model source (`io/random.rs`)
//! all walk this schema. Names as `modeling_clip.py` (transformers 4.50.3) spells its state dict,
//! `pre_layrnorm` included; shapes as `config.json` implies them.

use crate::models::clip::config::{ClipConfig, TowerConfig};

/// One tensor: its checkpoint name, the shape the config implies, and what it is.
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

/// What a tensor is, for code that synthesizes weights (the random model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Role {
    /// A projection or convolution weight multiplied with `fan_in` inputs.
    Weight { fan_in: usize },
    /// A bias of a linear layer or a LayerNorm.
    Bias,
    /// A LayerNorm's scale.
    NormScale,
    /// A token, position or class embedding.
    Embedding,
    /// The logit scale, a scalar.
    LogitScale,
}

fn tensor(name: String, shape: Vec<usize>, role: Role) -> Tensor {
    Tensor { name, shape, role }
}

/// `y = x W^T + b`: weight (out, in), bias (out,).
#[derive(Debug, Clone)]
pub(crate) struct LinearSpec {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub out_features: usize,
    pub in_features: usize,
}

impl LinearSpec {
    fn new(name: &str, out_f: usize, in_f: usize, bias: bool) -> Self {
        LinearSpec {
            weight: tensor(
                format!("{name}.weight"),
                vec![out_f, in_f],
                Role::Weight { fan_in: in_f },
            ),
            bias: bias.then(|| tensor(format!("{name}.bias"), vec![out_f], Role::Bias)),
            out_features: out_f,
            in_features: in_f,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LayerNormSpec {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl LayerNormSpec {
    fn new(name: &str, d: usize) -> Self {
        LayerNormSpec {
            weight: tensor(format!("{name}.weight"), vec![d], Role::NormScale),
            bias: tensor(format!("{name}.bias"), vec![d], Role::Bias),
        }
    }
}

/// `CLIPEncoderLayer`: x = x + attn(ln1(x)); x = x + mlp(ln2(x)).
#[derive(Debug, Clone)]
pub(crate) struct LayerSpec {
    pub layer_norm1: LayerNormSpec,
    pub q_proj: LinearSpec,
    pub k_proj: LinearSpec,
    pub v_proj: LinearSpec,
    pub out_proj: LinearSpec,
    pub layer_norm2: LayerNormSpec,
    pub fc1: LinearSpec,
    pub fc2: LinearSpec,
}

/// The encoder layers of one tower (`text_model` or `vision_model`), named on demand: a config
/// may ask for any number of layers, and is checked against the checkpoint before they are.
#[derive(Debug, Clone)]
pub(crate) struct TowerSpec {
    pub prefix: &'static str,
    pub num_layers: usize,
    hidden: usize,
    intermediate: usize,
}

impl TowerSpec {
    fn new(prefix: &'static str, t: &TowerConfig) -> Self {
        TowerSpec {
            prefix,
            num_layers: t.num_layers,
            hidden: t.hidden_size,
            intermediate: t.intermediate_size,
        }
    }

    pub(crate) fn layer(&self, i: usize) -> LayerSpec {
        let (d, f) = (self.hidden, self.intermediate);
        let p = format!("{}.encoder.layers.{i}", self.prefix);
        LayerSpec {
            layer_norm1: LayerNormSpec::new(&format!("{p}.layer_norm1"), d),
            q_proj: LinearSpec::new(&format!("{p}.self_attn.q_proj"), d, d, true),
            k_proj: LinearSpec::new(&format!("{p}.self_attn.k_proj"), d, d, true),
            v_proj: LinearSpec::new(&format!("{p}.self_attn.v_proj"), d, d, true),
            out_proj: LinearSpec::new(&format!("{p}.self_attn.out_proj"), d, d, true),
            layer_norm2: LayerNormSpec::new(&format!("{p}.layer_norm2"), d),
            fc1: LinearSpec::new(&format!("{p}.mlp.fc1"), f, d, true),
            fc2: LinearSpec::new(&format!("{p}.mlp.fc2"), d, f, true),
        }
    }
}

/// The whole checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct ClipSchema {
    // text_model
    pub token_embedding: Tensor,         // (V, Dt)
    pub text_position_embedding: Tensor, // (77, Dt)
    pub text: TowerSpec,
    pub final_layer_norm: LayerNormSpec,
    // vision_model
    pub class_embedding: Tensor,           // (Dv,)
    pub patch_embedding: Tensor,           // (Dv, C, p, p), no bias
    pub vision_position_embedding: Tensor, // (N+1, Dv)
    pub pre_layernorm: LayerNormSpec,      // HF: pre_layrnorm
    pub vision: TowerSpec,
    pub post_layernorm: LayerNormSpec,
    // heads
    pub text_projection: LinearSpec,   // (P, Dt), no bias
    pub visual_projection: LinearSpec, // (P, Dv), no bias
    pub logit_scale: Tensor,           // ()
}

impl ClipSchema {
    pub(crate) fn new(cfg: &ClipConfig) -> Self {
        let (tc, vc) = (&cfg.text, &cfg.vision);
        let (dt, dv, p, c) = (
            tc.tower.hidden_size,
            vc.tower.hidden_size,
            vc.patch_size,
            vc.num_channels,
        );
        let emb = |name: &str, shape: Vec<usize>| tensor(name.to_string(), shape, Role::Embedding);
        ClipSchema {
            token_embedding: emb(
                "text_model.embeddings.token_embedding.weight",
                vec![tc.vocab_size, dt],
            ),
            text_position_embedding: emb(
                "text_model.embeddings.position_embedding.weight",
                vec![tc.max_position_embeddings, dt],
            ),
            text: TowerSpec::new("text_model", &tc.tower),
            final_layer_norm: LayerNormSpec::new("text_model.final_layer_norm", dt),
            class_embedding: emb("vision_model.embeddings.class_embedding", vec![dv]),
            patch_embedding: tensor(
                "vision_model.embeddings.patch_embedding.weight".into(),
                vec![dv, c, p, p],
                Role::Weight { fan_in: c * p * p },
            ),
            vision_position_embedding: emb(
                "vision_model.embeddings.position_embedding.weight",
                vec![vc.num_positions(), dv],
            ),
            pre_layernorm: LayerNormSpec::new("vision_model.pre_layrnorm", dv),
            vision: TowerSpec::new("vision_model", &vc.tower),
            post_layernorm: LayerNormSpec::new("vision_model.post_layernorm", dv),
            text_projection: LinearSpec::new("text_projection", cfg.projection_dim, dt, false),
            visual_projection: LinearSpec::new("visual_projection", cfg.projection_dim, dv, false),
            logit_scale: tensor("logit_scale".into(), vec![], Role::LogitScale),
        }
    }

    /// Every tensor once: the encoder layers of both towers first, then the rest (the order of
    /// the random model's file). For configs whose layer counts were checked.
    pub(crate) fn tensors(&self) -> Vec<Tensor> {
        let mut out = Vec::new();
        for tower in [&self.text, &self.vision] {
            for i in 0..tower.num_layers {
                let l = tower.layer(i);
                for ln in [&l.layer_norm1, &l.layer_norm2] {
                    out.extend([ln.weight.clone(), ln.bias.clone()]);
                }
                for lin in [l.q_proj, l.k_proj, l.v_proj, l.out_proj, l.fc1, l.fc2] {
                    out.push(lin.weight);
                    out.extend(lin.bias);
                }
            }
        }
        let ln = |n: &LayerNormSpec| [n.weight.clone(), n.bias.clone()];
        out.extend([
            self.token_embedding.clone(),
            self.text_position_embedding.clone(),
        ]);
        out.extend(ln(&self.final_layer_norm));
        out.extend([
            self.class_embedding.clone(),
            self.patch_embedding.clone(),
            self.vision_position_embedding.clone(),
        ]);
        out.extend(ln(&self.pre_layernorm));
        out.extend(ln(&self.post_layernorm));
        out.extend([
            self.text_projection.weight.clone(),
            self.visual_projection.weight.clone(),
            self.logit_scale.clone(),
        ]);
        out
    }

    /// The names of the matrices the loaders may hold in f16 (the token embedding and every
    /// linear layer's weight; the GPU also the patch embedding): what the page's cache keeps in
    /// f16 for an f32 checkpoint.
    #[cfg(any(test, target_arch = "wasm32"))] // the page's cache; tests
    pub(crate) fn matrices(&self) -> Vec<String> {
        self.tensors()
            .into_iter()
            .filter(|t| {
                matches!(t.role, Role::Weight { .. }) && t.shape.len() == 2
                    || t.name == self.token_embedding.name
            })
            .map(|t| t.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tensor_once_with_its_config_shape() {
        let cfg = ClipConfig::from_json(
            br#"{"projection_dim": 40,
                 "text_config": {"hidden_size": 32, "intermediate_size": 64,
                                 "num_attention_heads": 4, "num_hidden_layers": 2},
                 "vision_config": {"hidden_size": 64, "intermediate_size": 128,
                                   "num_attention_heads": 4, "num_hidden_layers": 3,
                                   "image_size": 28, "patch_size": 14}}"#,
        )
        .unwrap();
        let s = ClipSchema::new(&cfg);
        let all = s.tensors();
        // 16 per encoder layer, 14 outside them.
        assert_eq!(all.len(), 16 * (2 + 3) + 14);
        let mut names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "a name appears twice");
        let find = |n: &str| all.iter().find(|t| t.name == n).unwrap().shape.clone();
        assert_eq!(
            find("vision_model.encoder.layers.2.mlp.fc1.weight"),
            [128, 64]
        );
        assert_eq!(
            find("vision_model.embeddings.patch_embedding.weight"),
            [64, 3, 14, 14]
        );
        assert_eq!(
            find("vision_model.embeddings.position_embedding.weight"),
            [5, 64]
        );
        assert_eq!(
            find("text_model.embeddings.token_embedding.weight"),
            [49408, 32]
        );
        assert_eq!(find("text_projection.weight"), [40, 32]);
        assert!(find("logit_scale").is_empty());
    }
}
