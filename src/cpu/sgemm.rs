//! `y (M, N) += x (M, K) . W^T` for the browser's CPU path: a packed, register-blocked f32
//! product with a 4 x 8 SIMD128 micro-kernel, on one thread, or split by output columns over
//! the pool of the `threads` build (a cross-origin isolated page).
//!
//! It packs K blocks of x into 4-row panels (zero rows past M) and, per 8 output columns, the
//! same K block of W into an 8-column panel widened to f32 from whatever W is stored in (f32,
//! f16 or bf16: half-precision weights need no separate widening pass), four k at a time in SIMD
//! on wasm, and adds full tiles into y in SIMD. The micro-kernel keeps eight `v128` accumulators
//! and two W vectors live: wider tiles (5 x 8, 6 x 8) need more of the 15 `v128` registers V8
//! allocates on x86-64 and measured slower. The wasm build turns LLVM's loop strength reduction
//! off (.cargo/config.toml) so that load offsets fold into memargs.
//!
//! Two builds of the same kernel: plain SIMD128 (multiply, then add) for every browser with
//! WebAssembly SIMD, and, with the `relaxed-simd` feature, `f32x4.relaxed_madd`, a fused
//! multiply-add where the CPU has FMA (faster there). A module holding relaxed SIMD instructions
//! fails to compile where they are unknown, so www/worker.js loads that build only where
//! `WebAssembly.validate` accepts one. Native builds compile the same packing with a portable
//! micro-kernel (for the tests), but use the `gemm` crate, which is faster there.
//! The checks against f64 are in `super::selftest`.

/// Rows of a packed x panel.
const MR: usize = 4;
/// Columns of a packed W panel.
const NR: usize = 8;
/// K per block: an 8-column W panel of 256 (8 KiB) stays in L1 while all x panels stream by
/// (the best of the block sizes measured).
const KC: usize = 256;

/// W (N, K) row-major, in its storage precision.
#[derive(Clone, Copy)]
pub(crate) enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    BF16(&'a [half::bf16]),
}

impl<'a> Rows<'a> {
    /// Values `at..at + len` (whole rows of W).
    #[cfg(target_arch = "wasm32")]
    fn rows(&self, at: usize, len: usize) -> Rows<'a> {
        match *self {
            Rows::F32(v) => Rows::F32(&v[at..at + len]),
            Rows::F16(v) => Rows::F16(&v[at..at + len]),
            Rows::BF16(v) => Rows::BF16(&v[at..at + len]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Rows::F32(v) => v.len(),
            Rows::F16(v) => v.len(),
            Rows::BF16(v) => v.len(),
        }
    }

    /// `out[kk * stride] = W[at + kk]`, as many as `out` holds.
    fn widen(&self, at: usize, out: &mut [f32], stride: usize) {
        match self {
            Rows::F32(v) => {
                for (w, o) in v[at..].iter().zip(out.iter_mut().step_by(stride)) {
                    *o = *w;
                }
            }
            Rows::F16(v) => {
                for (h, o) in v[at..].iter().zip(out.iter_mut().step_by(stride)) {
                    *o = f16_bits_to_f32(h.to_bits());
                }
            }
            Rows::BF16(v) => {
                for (h, o) in v[at..].iter().zip(out.iter_mut().step_by(stride)) {
                    *o = h.to_f32();
                }
            }
        }
    }
}

/// Exact f16 -> f32 without branches (so that it vectorizes to SIMD128, where `half` converts
/// value by value): the magnitude bits moved to f32's place and scaled by 2^112 (the exponent
/// bias difference; f16 subnormals become exact f32 values, as wasm does not flush them),
/// infinities and NaNs given f32's all-ones exponent, then the sign.
#[inline]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let mag = (h & 0x7fff) << 13;
    let scaled = (f32::from_bits(mag) * f32::from_bits(0x7780_0000)).to_bits(); // x 2^112
    let bits = if h & 0x7c00 == 0x7c00 {
        mag | 0x7f80_0000
    } else {
        scaled
    };
    f32::from_bits(bits | ((h & 0x8000) << 16))
}

thread_local! {
    /// Packed x block and W panel, reused across products.
    static PACK: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Which micro-kernel runs the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Micro {
    /// SIMD128 multiply then add: every browser with WebAssembly SIMD.
    Simd128,
    /// `f32x4.relaxed_madd` (one fused instruction where the CPU has FMA): only in the build
    /// with the `relaxed-simd` feature, whose module needs a browser with relaxed SIMD.
    RelaxedMadd,
}

impl Micro {
    /// The fastest kernel this build has.
    pub(crate) const BEST: Micro = if cfg!(all(target_arch = "wasm32", feature = "relaxed-simd")) {
        Micro::RelaxedMadd
    } else {
        Micro::Simd128
    };
    /// The kernels this build has.
    #[cfg(any(test, feature = "selftest"))]
    pub(crate) fn available() -> &'static [Micro] {
        if Micro::BEST == Micro::RelaxedMadd {
            &[Micro::Simd128, Micro::RelaxedMadd]
        } else {
            &[Micro::Simd128]
        }
    }
}

/// `y (M, N) += x (M, K) . W^T`, y row-major with row stride N. With threads (the `threads`
/// build), the output columns are cut into about four blocks per thread, which rayon's work
/// stealing balances when a core is slowed; each block packs only its own rows of W and works on
/// a copy of its columns of y (2·M·N copies against M·N·K multiply-adds).
#[cfg(target_arch = "wasm32")]
pub(crate) fn gemm_acc(y: &mut [f32], x: &[f32], w: Rows, m: usize, n: usize, k: usize) {
    let threads = super::threads::count();
    let block = n.div_ceil(4 * threads).max(8 * NR).next_multiple_of(NR);
    if threads <= 1 || block >= n || m * n * k < 1 << 20 {
        return gemm_acc_with(Micro::BEST, y, x, w, m, n, k);
    }
    assert!(y.len() >= m * n && w.len() >= n * k, "sgemm: operand sizes");
    let cols = |b: usize| (b * block, block.min(n - b * block));
    // The copies' memory is allocated here, not in the pool: a failed allocation on a pool
    // thread would trap there, unseen by this one, which would wait for it forever.
    let mut blocks: Vec<Vec<f32>> = (0..n.div_ceil(block))
        .map(|b| Vec::with_capacity(m * cols(b).1))
        .collect();
    let yp = SendPtr(y.as_mut_ptr());
    super::threads::for_each_indexed(&mut blocks, |b, yb| {
        let (j0, nb) = cols(b);
        let yp = &yp;
        // SAFETY: y holds m * n values (asserted above) and each block reads and writes only
        // its own columns j0..j0 + nb of each row, so no two threads touch the same value.
        unsafe {
            for r in 0..m {
                yb.extend_from_slice(std::slice::from_raw_parts(yp.0.add(r * n + j0), nb));
            }
            gemm_acc_with(Micro::BEST, yb, x, w.rows(j0 * k, nb * k), m, nb, k);
            for r in 0..m {
                std::ptr::copy_nonoverlapping(yb.as_ptr().add(r * nb), yp.0.add(r * n + j0), nb);
            }
        }
    });
}

/// y's base pointer, shared by the blocks of [`gemm_acc`] (each writes only its own columns).
#[cfg(target_arch = "wasm32")]
struct SendPtr(*mut f32);
// SAFETY: see `gemm_acc`: the blocks touch disjoint values.
#[cfg(target_arch = "wasm32")]
unsafe impl Sync for SendPtr {}

/// `gemm_acc` with a chosen micro-kernel (the checks and the benchmark run each).
pub(crate) fn gemm_acc_with(
    kernel: Micro,
    y: &mut [f32],
    x: &[f32],
    w: Rows,
    m: usize,
    n: usize,
    k: usize,
) {
    assert!(
        y.len() >= m * n && x.len() >= m * k && w.len() >= n * k,
        "sgemm: operand sizes"
    );
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let panels = m.div_ceil(MR);
    PACK.with(|p| {
        let (apack, bpack) = &mut *p.borrow_mut();
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            // x panels: apack[p][kk][i] = x[6p + i, k0 + kk], zero past M.
            apack.clear();
            apack.resize(panels * kc * MR, 0.0);
            for r in 0..m {
                let (p, i) = (r / MR, r % MR);
                let panel = &mut apack[p * kc * MR..][..kc * MR];
                for (kk, &v) in x[r * k + k0..][..kc].iter().enumerate() {
                    panel[kk * MR + i] = v;
                }
            }
            bpack.resize(kc * NR, 0.0);
            for j0 in (0..n).step_by(NR) {
                let nr = NR.min(n - j0);
                // The W panel: bpack[kk][j] = W[j0 + j, k0 + kk], zero past N.
                if nr < NR {
                    bpack.fill(0.0);
                }
                // Full panels four k at a time in SIMD (a scalar widen with stride 8 is slow), the
                // rest (partial panels, the last k % 4) value by value.
                let done = if nr == NR {
                    pack_panel(w, j0 * k + k0, k, kc, &mut bpack[..kc * NR])
                } else {
                    0
                };
                if done < kc {
                    for j in 0..nr {
                        w.widen(
                            (j0 + j) * k + k0 + done,
                            &mut bpack[done * NR + j..kc * NR],
                            NR,
                        );
                    }
                }
                for p in 0..panels {
                    let mut tile = [[0.0f32; NR]; MR];
                    micro(
                        kernel,
                        kc,
                        &apack[p * kc * MR..][..kc * MR],
                        &bpack[..kc * NR],
                        &mut tile,
                    );
                    let rows = MR.min(m - p * MR);
                    if rows == MR && nr == NR {
                        add_tile(&mut y[p * MR * n + j0..], n, &tile);
                        continue;
                    }
                    for (i, t) in tile.iter().enumerate().take(rows) {
                        let yr = &mut y[(p * MR + i) * n + j0..][..nr];
                        for (o, v) in yr.iter_mut().zip(t) {
                            *o += v;
                        }
                    }
                }
            }
        }
    });
}

/// `y[i * n + j] += tile[i][j]` for the whole tile.
#[inline(always)]
fn add_tile(y: &mut [f32], n: usize, tile: &[[f32; NR]; MR]) {
    assert!(y.len() >= (MR - 1) * n + NR, "sgemm: tile bounds");
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the assertion bounds every row's 8 values.
    unsafe {
        use core::arch::wasm32::*;
        for (i, t) in tile.iter().enumerate() {
            let (yp, tp) = (y.as_mut_ptr().add(i * n), t.as_ptr());
            for h in [0, 4] {
                let (yv, tv) = (yp.add(h) as *mut v128, tp.add(h) as *const v128);
                v128_store(yv, f32x4_add(v128_load(yv), v128_load(tv)));
            }
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    for (i, t) in tile.iter().enumerate() {
        for (o, v) in y[i * n..][..NR].iter_mut().zip(t) {
            *o += v;
        }
    }
}

/// Packs a full panel four k at a time: `out[kk * 8 + j] = W[at + j * k + kk]` for j < 8 and
/// kk < kc rounded down to a multiple of 4, which it returns. Each row's four values are widened
/// to f32 in one vector (f16 exactly as [`f16_bits_to_f32`], bf16 by a shift), then two 4 x 4
/// transposes give the panel's rows.
#[cfg(target_arch = "wasm32")]
fn pack_panel(w: Rows, at: usize, k: usize, kc: usize, out: &mut [f32]) -> usize {
    use core::arch::wasm32::*;
    let kc4 = kc / 4 * 4;
    assert!(
        out.len() >= kc * NR && at + (NR - 1) * k + kc <= w.len(),
        "sgemm: panel bounds"
    );
    #[inline(always)]
    fn transpose_store(
        load: impl Fn(usize) -> v128,
        at: usize,
        k: usize,
        kc4: usize,
        out: &mut [f32],
    ) {
        // SAFETY (loads): `load(i)` reads W[i..i + 4], and i + 4 <= at + 7k + kc <= W's length
        // by the assertion above; stores: (kk + 3) * 8 + 8 <= kc * 8 <= out's length.
        unsafe {
            let o = out.as_mut_ptr();
            for kk in (0..kc4).step_by(4) {
                for half in 0..2 {
                    let r = |j: usize| load(at + (4 * half + j) * k + kk);
                    let (v0, v1, v2, v3) = (r(0), r(1), r(2), r(3));
                    let t0 = i32x4_shuffle::<0, 4, 1, 5>(v0, v1);
                    let t1 = i32x4_shuffle::<0, 4, 1, 5>(v2, v3);
                    let t2 = i32x4_shuffle::<2, 6, 3, 7>(v0, v1);
                    let t3 = i32x4_shuffle::<2, 6, 3, 7>(v2, v3);
                    let col = o.add(kk * NR + 4 * half);
                    v128_store(col as *mut v128, i32x4_shuffle::<0, 1, 4, 5>(t0, t1));
                    v128_store(
                        col.add(NR) as *mut v128,
                        i32x4_shuffle::<2, 3, 6, 7>(t0, t1),
                    );
                    v128_store(
                        col.add(2 * NR) as *mut v128,
                        i32x4_shuffle::<0, 1, 4, 5>(t2, t3),
                    );
                    v128_store(
                        col.add(3 * NR) as *mut v128,
                        i32x4_shuffle::<2, 3, 6, 7>(t2, t3),
                    );
                }
            }
        }
    }
    // SAFETY (each `load`): transpose_store calls it only within the bounds asserted above.
    macro_rules! pack {
        ($load:expr) => {
            transpose_store($load, at, k, kc4, out)
        };
    }
    match w {
        Rows::F32(v) => {
            let p = v.as_ptr();
            pack!(|i| unsafe { v128_load(p.add(i) as *const v128) })
        }
        Rows::F16(v) => {
            let p = v.as_ptr() as *const u16;
            pack!(|i| f16x4_to_f32(unsafe { u32x4_load_extend_u16x4(p.add(i)) }))
        }
        Rows::BF16(v) => {
            let p = v.as_ptr() as *const u16;
            pack!(|i| i32x4_shl(unsafe { u32x4_load_extend_u16x4(p.add(i)) }, 16))
        }
    }
    kc4
}

/// Four f16 bit patterns (zero-extended to u32 lanes) to f32, exactly as [`f16_bits_to_f32`]
/// does one: magnitude shifted into place and scaled by 2^112 (subnormals become exact), the
/// all-ones exponent for infinities and NaNs, the sign.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
pub(super) fn f16x4_to_f32(h: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    let mag = i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13);
    let scaled = f32x4_mul(mag, f32x4_splat(f32::from_bits(0x7780_0000)));
    let exp = u32x4_splat(0x7c00);
    let special = i32x4_eq(v128_and(h, exp), exp);
    let bits = v128_bitselect(v128_or(mag, u32x4_splat(0x7f80_0000)), scaled, special);
    v128_or(bits, i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16))
}

/// The portable packing (native builds): nothing in SIMD, `widen` does every value.
#[cfg(not(target_arch = "wasm32"))]
fn pack_panel(_: Rows, _: usize, _: usize, _: usize, _: &mut [f32]) -> usize {
    0
}

/// tile (4, 8) = a (kc, 4) panel^T . b (kc, 8) panel.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn micro(kernel: Micro, kc: usize, a: &[f32], b: &[f32], tile: &mut [[f32; NR]; MR]) {
    match kernel {
        // Safe to call on wasm: a module with relaxed SIMD instructions only instantiates in a
        // browser that validates them (www/worker.js picks the build).
        #[cfg(feature = "relaxed-simd")]
        Micro::RelaxedMadd => micro_madd(kc, a, b, tile),
        _ => micro_simd128(kc, a, b, tile),
    }
}

/// A micro-kernel whose accumulation step is `$madd(a, b, c) = a * b + c` (the invocations
/// carry the `cfg`s).
macro_rules! micro_kernel {
    ($(#[$attr:meta])* $name:ident, $madd:path) => {
        $(#[$attr])*
        fn $name(kc: usize, a: &[f32], b: &[f32], tile: &mut [[f32; NR]; MR]) {
            use core::arch::wasm32::*;
            assert!(a.len() >= kc * MR && b.len() >= kc * NR);
            // SAFETY: the assertion bounds every load below; stores go to `tile`'s own rows.
            unsafe {
                let mut lo = [f32x4_splat(0.0); MR];
                let mut hi = lo;
                let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
                for _ in 0..kc {
                    let b0 = v128_load(bp as *const v128);
                    let b1 = v128_load(bp.add(4) as *const v128);
                    for i in 0..MR {
                        let av = v128_load32_splat(ap.add(i) as *const u32);
                        lo[i] = $madd(av, b0, lo[i]);
                        hi[i] = $madd(av, b1, hi[i]);
                    }
                    ap = ap.add(MR);
                    bp = bp.add(NR);
                }
                for (row, (l, h)) in tile.iter_mut().zip(lo.into_iter().zip(hi)) {
                    v128_store(row.as_mut_ptr() as *mut v128, l);
                    v128_store(row.as_mut_ptr().add(4) as *mut v128, h);
                }
            }
        }
    };
}

/// `a * b + c` in SIMD128: multiply, then add.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn mul_add(
    a: core::arch::wasm32::v128,
    b: core::arch::wasm32::v128,
    c: core::arch::wasm32::v128,
) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    f32x4_add(c, f32x4_mul(a, b))
}

micro_kernel!(
    /// The SIMD128 micro-kernel.
    #[cfg(target_arch = "wasm32")]
    #[inline(always)]
    micro_simd128,
    mul_add
);

micro_kernel!(
    /// The relaxed-SIMD micro-kernel: `f32x4.relaxed_madd`, a fused multiply-add on CPUs with
    /// FMA (one rounding; the product's accuracy only improves), otherwise multiply then add.
    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    #[target_feature(enable = "relaxed-simd")]
    micro_madd,
    f32x4_relaxed_madd
);

/// The portable micro-kernel (native builds: the packing's unit tests).
#[cfg(not(target_arch = "wasm32"))]
fn micro(_: Micro, kc: usize, a: &[f32], b: &[f32], tile: &mut [[f32; NR]; MR]) {
    for kk in 0..kc {
        for (i, row) in tile.iter_mut().enumerate() {
            let av = a[kk * MR + i];
            for (j, t) in row.iter_mut().enumerate() {
                *t += av * b[kk * NR + j];
            }
        }
    }
}
