//! Work split over all cores natively (rayon); one thread in the browser, where a page has no
//! threads without cross-origin isolation.

/// Runs `f` over chunks of `data`.
pub(super) fn for_each_chunk<F: Fn(&mut [f32]) + Sync + Send>(
    data: &mut [f32],
    chunk: usize,
    f: F,
) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk).for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    data.chunks_mut(chunk).for_each(f);
}

/// `[f(0), f(1), ..., f(n - 1)]`.
pub(super) fn par_map<F: Fn(usize) -> Vec<f32> + Sync + Send>(n: usize, f: F) -> Vec<Vec<f32>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..n).map(f).collect()
}
