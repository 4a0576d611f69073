//! Work split over all cores: natively by rayon; in the browser by rayon over wasm-bindgen-rayon's
//! worker pool in the `threads` build (a cross-origin isolated page), else on the one thread a
//! page has.

/// Whether this build splits work over threads.
const PARALLEL: bool = cfg!(any(not(target_arch = "wasm32"), feature = "threads"));

/// Runs `f` over chunks of `data`.
pub(super) fn for_each_chunk<F: Fn(&mut [f32]) + Sync + Send>(
    data: &mut [f32],
    chunk: usize,
    f: F,
) {
    if PARALLEL {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk).for_each(f);
    } else {
        data.chunks_mut(chunk).for_each(f);
    }
}

/// Runs `f(i, &mut items[i])` for every item.
#[cfg(target_arch = "wasm32")]
pub(super) fn for_each_indexed<T: Send, F: Fn(usize, &mut T) + Sync + Send>(items: &mut [T], f: F) {
    if PARALLEL {
        use rayon::prelude::*;
        items.par_iter_mut().enumerate().for_each(|(i, t)| f(i, t));
    } else {
        items.iter_mut().enumerate().for_each(|(i, t)| f(i, t));
    }
}

/// `[f(0), f(1), ..., f(n - 1)]`.
pub(super) fn par_map<F: Fn(usize) -> Vec<f32> + Sync + Send>(n: usize, f: F) -> Vec<Vec<f32>> {
    if PARALLEL {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    } else {
        (0..n).map(f).collect()
    }
}

/// The threads work is split over (1 in a single-threaded browser build).
pub(crate) fn count() -> usize {
    if PARALLEL {
        rayon::current_num_threads()
    } else {
        1
    }
}
