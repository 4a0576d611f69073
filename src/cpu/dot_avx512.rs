//! `out (M, N; rows ldc apart) (+)= a (M, K) . b^T`, `b (N, K)`, for few rows M, natively on
//! AVX-512: each output is the dot product of a row of a and a row of b, both contiguous, in
//! tiles of 4 x 4 (sixteen 16-lane accumulators, eight loads per sixteen FMAs), reduced at the
//! end. Nothing is packed: for a short prompt's text tower the `gemm` crate's AVX-512 kernels
//! packed the whole weight for a dozen rows and ran 12 x 4096 x 1024 at 25 GFLOP/s, this at
//! 62 (docs/performance.md). Many rows want the packed, cache-blocked `gemm`.

use std::arch::x86_64::*;

/// Rows up to which [`gemm_nt`] is used (at 77 rows it and `gemm` measured even).
pub(super) const MAX_ROWS: usize = 32;

/// Whether this CPU runs [`gemm_nt`].
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// # Safety
/// The CPU has AVX-512F ([`available`]); `out` holds `(m - 1) * ldc + n` values, `a` `m * k`
/// and `b` `n * k`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_nt(
    out: *mut f32,
    ldc: usize,
    a: *const f32,
    b: *const f32,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    for j in (0..n).step_by(4) {
        let nj = (n - j).min(4);
        for i in (0..m).step_by(4) {
            let mi = (m - i).min(4);
            // SAFETY: the tile's rows and columns lie within the operands (caller's contract).
            unsafe {
                tile(
                    out.add(i * ldc + j),
                    ldc,
                    a.add(i * k),
                    b.add(j * k),
                    [mi, nj],
                    k,
                    accumulate,
                )
            };
        }
    }
}

/// One tile of `rows[0]` x `rows[1]` (each at most 4) outputs.
///
/// # Safety
/// As [`gemm_nt`], for the tile's `rows[0]` rows of a and `rows[1]` rows of b.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile(
    out: *mut f32,
    ldc: usize,
    a: *const f32,
    b: *const f32,
    rows: [usize; 2],
    k: usize,
    accumulate: bool,
) {
    let [mi, nj] = rows;
    // Rows past the tile's edge read its last row again (in bounds) and are never stored.
    // SAFETY: offsets of rows that exist (caller's contract).
    let ap: [*const f32; 4] = std::array::from_fn(|r| unsafe { a.add(r.min(mi - 1) * k) });
    let bp: [*const f32; 4] = std::array::from_fn(|c| unsafe { b.add(c.min(nj - 1) * k) });
    let mut acc = [[_mm512_setzero_ps(); 4]; 4];
    let mut p = 0;
    while p < k {
        // The last step loads only the k % 16 values left (masked loads read nothing past them).
        let mask: __mmask16 = if k - p >= 16 {
            0xffff
        } else {
            ((1u32 << (k - p)) - 1) as u16
        };
        // SAFETY: p + popcount(mask) <= k for every row read.
        unsafe {
            let bv = bp.map(|q| _mm512_maskz_loadu_ps(mask, q.add(p)));
            for (acc_r, q) in acc.iter_mut().zip(ap) {
                let av = _mm512_maskz_loadu_ps(mask, q.add(p));
                for (acc_rc, bc) in acc_r.iter_mut().zip(bv) {
                    *acc_rc = _mm512_fmadd_ps(av, bc, *acc_rc);
                }
            }
        }
        p += 16;
    }
    for (r, acc_r) in acc.iter().enumerate().take(mi) {
        for (c, acc_rc) in acc_r.iter().enumerate().take(nj) {
            let s = _mm512_reduce_add_ps(*acc_rc);
            // SAFETY: (r, c) is inside the tile.
            unsafe {
                let o = out.add(r * ldc + c);
                *o = if accumulate { *o + s } else { s };
            }
        }
    }
}
