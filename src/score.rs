//! Scores and probabilities from embeddings, as `CLIPModel.forward`'s `logits_per_text`:
//! `exp(logit_scale) * cos(text, image)`, then a softmax over the images of one prompt
//! (`logits_per_text.softmax(-1)`) and, for several prompts, over the prompts of one image
//! (`logits_per_image.softmax(-1)`).

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

/// Every prompt against every image: rows are prompts, columns images, in input order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreMatrix {
    /// `exp(logit_scale) * cos(text_p, image_i)`, (prompts, images).
    pub scores: Vec<Vec<f32>>,
    /// Softmax of each row: per prompt, over the images (the one-prompt probability).
    pub probs_over_images: Vec<Vec<f32>>,
    /// Softmax of each column: per image, over the prompts; laid out (prompts, images) too.
    pub probs_over_prompts: Vec<Vec<f32>>,
}

/// The [`ScoreMatrix`] of `texts` x `images` (projected embeddings, not normalized). One row is
/// exactly [`scores`] and [`softmax`] of that prompt alone.
pub fn matrix(texts: &[Vec<f32>], images: &[Vec<f32>], logit_scale: f32) -> ScoreMatrix {
    let scores: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| self::scores(t, images, logit_scale))
        .collect();
    let probs_over_images = scores.iter().map(|row| softmax(row)).collect();
    let mut probs_over_prompts = vec![vec![0.0; images.len()]; texts.len()];
    for i in 0..images.len() {
        let column: Vec<f32> = scores.iter().map(|row| row[i]).collect();
        for (p, prob) in softmax(&column).into_iter().enumerate() {
            probs_over_prompts[p][i] = prob;
        }
    }
    ScoreMatrix {
        scores,
        probs_over_images,
        probs_over_prompts,
    }
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

    #[test]
    fn matrix_rows_are_single_prompt_scores_and_columns_softmax_over_prompts() {
        let ls = 10f32.ln();
        let texts = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 2.0, 0.0],
            vec![1.0, 1.0, 1.0],
        ];
        // Four images, one of them as long as the texts are short (awkward: 3 x 4).
        let images = vec![
            vec![3.0, 0.0, 0.0],
            vec![0.0, 1.0, 1.0],
            vec![-1.0, 0.5, 0.0],
            vec![0.2, 0.2, 5.0],
        ];
        let m = matrix(&texts, &images, ls);
        assert_eq!((m.scores.len(), m.scores[0].len()), (3, 4));
        for (p, t) in texts.iter().enumerate() {
            // Row p is bit for bit what one prompt alone gives.
            assert_eq!(m.scores[p], scores(t, &images, ls));
            assert_eq!(m.probs_over_images[p], softmax(&m.scores[p]));
        }
        // Text 0 is image 0's direction: cosine 1, score 10.
        assert!((m.scores[0][0] - 10.0).abs() < 1e-5, "{:?}", m.scores);
        for i in 0..images.len() {
            let col: Vec<f32> = m.scores.iter().map(|r| r[i]).collect();
            // A careful reference: f64 throughout, max-subtracted.
            let max = col.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let e: Vec<f64> = col.iter().map(|&x| (x as f64 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let total: f32 = (0..texts.len()).map(|p| m.probs_over_prompts[p][i]).sum();
            assert!((total - 1.0).abs() < 1e-6, "column {i} sums to {total}");
            for (p, &ep) in e.iter().enumerate() {
                let want = ep / sum;
                let got = m.probs_over_prompts[p][i] as f64;
                assert!((got - want).abs() < 1e-7, "({p}, {i}): {got} vs {want}");
            }
        }
        for row in &m.probs_over_images {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // One prompt: every image's probability over prompts is 1.
        let one = matrix(&texts[..1], &images, ls);
        assert_eq!(one.probs_over_prompts, vec![vec![1.0; 4]]);
        // No images: rows of nothing, no panic.
        assert_eq!(matrix(&texts, &[], ls).scores, vec![Vec::<f32>::new(); 3]);
    }
}
