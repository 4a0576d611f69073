//! Scores and probabilities from embeddings, as `CLIPModel.forward`'s `logits_per_text`:
//! `exp(logit_scale) * cos(text, image)`, then a softmax over the images of one prompt.

/// `v / |v|` (transformers divides by the 2-norm, no epsilon).
pub fn normalize(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    v.iter().map(|&x| (x as f64 / n) as f32).collect()
}

/// `exp(logit_scale) * cos(text, image_i)` for each image.
pub fn scores(text: &[f32], images: &[Vec<f32>], logit_scale: f32) -> Vec<f32> {
    let t = normalize(text);
    let scale = (logit_scale as f64).exp();
    images
        .iter()
        .map(|im| {
            let v = normalize(im);
            (scale
                * t.iter()
                    .zip(&v)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()) as f32
        })
        .collect()
}

/// Max-subtracted softmax.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let e: Vec<f64> = x.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|&v| (v / sum) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_scaled_cosines_and_probs_sum_to_one() {
        let s = scores(&[3.0, 4.0], &[vec![6.0, 8.0], vec![-4.0, 3.0]], 100f32.ln());
        assert!((s[0] - 100.0).abs() < 1e-3 && s[1].abs() < 1e-3, "{s:?}");
        let p = softmax(&[1000.0, 1000.0, 0.0]);
        assert!((p[0] - 0.5).abs() < 1e-6 && p[2] < 1e-30);
    }
}
