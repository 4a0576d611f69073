//! `y (M, N) += x (M, K) . W^T` for the browser's CPU path: a packed, register-blocked f32
//! product with a 4 x 8 SIMD128 micro-kernel, single-threaded (a page has no threads without
//! cross-origin isolation).
//!
//! It packs K blocks of x into 4-row panels (zero rows past M) and, per 8 output columns, the
//! same K block of W into an 8-column panel widened to f32 from whatever W is stored in (f32,
//! f16 or bf16: the f16-held CLIP-H weights need no separate widening pass), four k at a time
//! in SIMD on wasm (done value by value with stride 8 it cost 13% of the product), and adds full
//! tiles into y in SIMD. The micro-kernel keeps eight `v128` accumulators and two W vectors
//! live. With loop strength reduction on, LLVM hoisted every broadcast of a k step ahead of its
//! products, so a 6 x 8 tile needed 20 registers of the 15 V8 allocates on x86-64 and spilled
//! (13.5 GFLOP/s against 18.5 for 4 x 8 on the CLIP-H shapes in Chromium here). The wasm build
//! now turns LSR off (.cargo/config.toml: load offsets fold into memargs) and the broadcasts
//! interleave, but 5 x 8 and 6 x 8 still measured slower than 4 x 8 (24.5 against 26 GFLOP/s).
//!
//! Two builds of the same kernel: plain SIMD128 (multiply, then add) for every browser with
//! WebAssembly SIMD, and, with the `relaxed-simd` feature, `f32x4.relaxed_madd`, a fused
//! multiply-add where the CPU has FMA (29 GFLOP/s here, 20 for plain SIMD128). A module holding relaxed SIMD
//! instructions fails to compile where they are unknown, so www/worker.js loads that build only
//! where `WebAssembly.validate` accepts one. Native builds compile the same packing with a
//! portable micro-kernel (the unit tests), but use the `gemm` crate, which is faster there.

/// Rows of a packed x panel.
const MR: usize = 4;
/// Columns of a packed W panel.
const NR: usize = 8;
/// K per block: an 8-column W panel of 256 (8 KiB) stays in L1 while all x panels stream by
/// (128 and 512 measured slower or no better; so did unrolling k by two).
const KC: usize = 256;

/// W (N, K) row-major, in its storage precision.
#[derive(Clone, Copy)]
pub(crate) enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    BF16(&'a [half::bf16]),
}

impl Rows<'_> {
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
                    *o = crate::models::clip::weights::f16_bits_to_f32(h.to_bits());
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

/// `y (M, N) += x (M, K) . W^T`, y row-major with row stride N.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // natively only the checks
pub(crate) fn gemm_acc(y: &mut [f32], x: &[f32], w: Rows, m: usize, n: usize, k: usize) {
    gemm_acc_with(Micro::BEST, y, x, w, m, n, k)
}

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
                // Full panels four k at a time in SIMD (a scalar widen with stride 8 cost 13% of
                // the f16 products), the rest (partial panels, the last k % 4) value by value.
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
/// to f32 in one vector (f16 exactly as [`crate::models::clip::weights::f16_bits_to_f32`], bf16 by a shift),
/// then two 4 x 4 transposes give the panel's rows.
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

/// Four f16 bit patterns (zero-extended to u32 lanes) to f32, exactly as
/// [`crate::models::clip::weights::f16_bits_to_f32`] does one: magnitude shifted into place and scaled by
/// 2^112 (subnormals become exact), the all-ones exponent for infinities and NaNs, the sign.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn f16x4_to_f32(h: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
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

/// Checks `gemm_acc` against an f64 product on awkward shapes, W in f32, f16 and bf16 (panics
/// on a mismatch): the unit tests natively, `tests/wasm_gpu.rs` with the SIMD128 micro-kernel.
#[cfg(any(test, feature = "selftest"))]
pub(crate) fn check_awkward_shapes() -> String {
    // Edges of every kind: M and N not multiples of the panels, K over several blocks with a
    // partial last one, single rows and columns, ViT-H's 257 rows.
    let shapes = [
        (1, 1, 1),
        (6, 8, 256),
        (7, 9, 257),
        (13, 17, 600),
        (257, 20, 33),
        (5, 70, 1280),
        (77, 8, 3),
        (9, 24, 270),
    ];
    for (m, n, k) in shapes {
        check(m, n, k);
    }
    #[cfg(target_arch = "wasm32")]
    check_f16x4_all_values();
    format!(
        "packed CPU product: {} shapes x 3 weight types x {:?} match",
        shapes.len(),
        Micro::available()
    )
}

/// The SIMD f16 widening against `half` on all 65536 bit patterns (NaNs: any NaN).
#[cfg(all(target_arch = "wasm32", any(test, feature = "selftest")))]
fn check_f16x4_all_values() {
    use core::arch::wasm32::*;
    for b in (0..=u16::MAX as u32).step_by(4) {
        let got = f16x4_to_f32(u32x4(b, b + 1, b + 2, b + 3));
        let got = [
            f32x4_extract_lane::<0>(got),
            f32x4_extract_lane::<1>(got),
            f32x4_extract_lane::<2>(got),
            f32x4_extract_lane::<3>(got),
        ];
        for (i, g) in got.into_iter().enumerate() {
            let want = half::f16::from_bits((b + i as u32) as u16).to_f32();
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "f16x4_to_f32({:#06x}): {g} vs {want}",
                b + i as u32
            );
        }
    }
}

#[cfg(any(test, feature = "selftest"))]
fn check(m: usize, n: usize, k: usize) {
    {
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1)
            .collect();
        // Multiples of 1/8 in [-0.75, 0.75]: exact in f32, f16 and bf16.
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 17 % 13) as f32 - 6.0) * 0.125)
            .collect();
        let w16: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
        let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let all = [Rows::F32(&w), Rows::F16(&w16), Rows::BF16(&wb)];
        for (&kernel, rows) in Micro::available()
            .iter()
            .flat_map(|k| all.iter().map(move |r| (k, *r)))
        {
            let mut y: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
            gemm_acc_with(kernel, &mut y, &x, rows, m, n, k);
            for i in 0..m {
                for j in 0..n {
                    let want = (i * n + j) as f64 * 0.01f32 as f64
                        + (0..k)
                            .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                            .sum::<f64>();
                    let got = y[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(),
                        "{kernel:?} {m}x{n}x{k} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn packed_product_matches_f64_on_awkward_shapes() {
        super::check_awkward_shapes();
    }
}
