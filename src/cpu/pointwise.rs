//! Element-wise ops: the residual add, GELU and QuickGELU, and the `exp` they share with the
//! softmax.

use super::threads::for_each_chunk;

/// `x += y` (a residual connection).
pub(crate) fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

/// `e^x` for `x <= 0` (the softmax's shifted scores, GELU's `-z^2`) in f32 without a libm call:
/// Cody-Waite reduction `x = n ln2 + r`, |r| <= ln2 / 2, and the Cephes `expf` polynomial, then
/// `2^n` by exponent bits. Within 1.5e-7 relative of f64 (the test checks a dense grid); below
/// -87 (where e^x leaves f32's normal range) it returns e^-87, 1.6e-38. A libm `expf` call per
/// element would dominate GELU and the softmax in the browser.
#[inline(always)]
pub(crate) fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer (|x log2 e| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e = p * r * r + r + 1.0;
    // n in [-126, 0]: 2^n is a normal f32. n's integer is in `shifted`'s low mantissa bits
    // (its ulp is 1), read as bits because `n as i32` (a saturating cast) does not vectorize.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    e * f32::from_bits(n_int.wrapping_add(127) << 23)
}

/// erfc(z) for z >= 0 by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7 in exact arithmetic,
/// ~3e-7 in f32), the same approximation as `shaders/matmul.wgsl`: much cheaper than an f64
/// `libm::erf` per element, and its GELU error (<= 0.5 |x| 3e-7) is far below f32 matmul
/// rounding. Returned as erfc so GELU of negative inputs keeps its digits.
pub(super) fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    poly * exp_nonpos(-z * z)
}

/// Exact (erf) GELU of one value: `0.5 x (1 + erf(x / sqrt 2))`.
#[inline(always)] // compiled into `gelu_avx512` too
pub(super) fn gelu_scalar(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let c = erfc_nonneg(z.abs());
    // 1 + erf(z) = 2 - erfc(z) for z >= 0, and erfc(-z) for z < 0.
    0.5 * x * if z >= 0.0 { 2.0 - c } else { c }
}

/// `x = gelu(x)` in place (exact, erf), on all cores natively.
pub(crate) fn gelu(x: &mut [f32]) {
    for_each_chunk(x, 4096, |c| {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { gelu_avx512(c) };
        }
        c.iter_mut().for_each(|v| *v = gelu_scalar(*v))
    });
}

/// The same loop compiled for AVX-512 (16 values per instruction; the native build's baseline
/// is SSE2), the same operations in the same order: the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_avx512(c: &mut [f32]) {
    for v in c.iter_mut() {
        *v = gelu_scalar(*v);
    }
}

/// Whether the CPU has AVX-512F, for the pointwise loops compiled for it (std caches the test).
#[cfg(target_arch = "x86_64")]
pub(super) fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// `x = x * sigmoid(1.702 x)` in place, as transformers' `QuickGELUActivation`.
pub(crate) fn quick_gelu(x: &mut [f32]) {
    for_each_chunk(x, 4096, |c| {
        c.iter_mut().for_each(|v| *v = quick_gelu_scalar(*v))
    });
}

/// QuickGELU of one value.
#[inline(always)] // compiled into the packed product's activation too
pub(super) fn quick_gelu_scalar(x: f32) -> f32 {
    x * (1.0 / (1.0 + (-1.702 * x).exp()))
}
