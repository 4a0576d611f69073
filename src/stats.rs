//! The small numeric helpers that the benchmarks, the GPU checks and the tests share: one copy.

/// Cosine similarity of two vectors, accumulated in f64 (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

/// Max |a - b| and the index where it occurs (0.0, 0 for empty inputs).
pub fn max_abs(a: &[f32], b: &[f32]) -> (f64, usize) {
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (&x, &y))| ((x as f64 - y as f64).abs(), i))
        .fold((0.0, 0), |m, v| if v.0 > m.0 { v } else { m })
}

/// The median of `v` (the upper one of an even count); NaN for an empty `v`.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_max_abs_and_median() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        assert_eq!(max_abs(&[1.0, 2.0, 3.0], &[1.0, 2.5, 2.0]), (1.0, 2));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(vec![]).is_nan());
    }
}
