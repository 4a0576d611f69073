//! A port of Pillow 13.0.0 `libImaging/Resample.c` for 8-bit images (`ImagingResample`, bit for
//! bit) and of `Geometry.c`'s `ImagingScaleAffine` (the nearest-neighbour resize):
//! <https://github.com/python-pillow/Pillow/blob/13.0.0/src/libImaging/Resample.c>

use super::decode::check_pixels;
use crate::error::{Error, Result};
use crate::models::clip::config::Resample;
use image::RgbImage;

/// A separable filter kernel and its support (half-width in input pixels at scale 1).
#[derive(Clone, Copy)]
struct Filter {
    kernel: fn(f64) -> f64,
    support: f64,
}

fn box_kernel(x: f64) -> f64 {
    if x > -0.5 && x <= 0.5 {
        1.0
    } else {
        0.0
    }
}

fn bilinear_kernel(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn hamming_kernel(x: f64) -> f64 {
    let x = x.abs();
    if x == 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let x = x * std::f64::consts::PI;
    // Pillow writes `0.54f + 0.46f * cos(x)`: the constants are C floats widened to double.
    x.sin() / x * (f64::from(0.54_f32) + f64::from(0.46_f32) * x.cos())
}

fn bicubic_kernel(x: f64) -> f64 {
    // Keys' cubic convolution with a = -0.5, in Pillow's operation order.
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

fn lanczos_kernel(x: f64) -> f64 {
    // Truncated sinc, a = 3.
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Pillow's filter table; `None` for nearest neighbour, which Pillow resizes by an affine map.
fn filter_of(r: Resample) -> Option<Filter> {
    let (kernel, support): (fn(f64) -> f64, f64) = match r {
        Resample::Nearest => return None,
        Resample::Box => (box_kernel, 0.5),
        Resample::Bilinear => (bilinear_kernel, 1.0),
        Resample::Hamming => (hamming_kernel, 1.0),
        Resample::Bicubic => (bicubic_kernel, 2.0),
        Resample::Lanczos => (lanczos_kernel, 3.0),
    };
    Some(Filter { kernel, support })
}

/// Fixed-point fraction bits of the 8-bit path: 32 bits minus 8 for the value minus 2 because
/// the taps can sum above 1 or below 0 (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The taps of one axis: output pixel `i` reads inputs `bounds[i].0 ..` (`bounds[i].1` of them)
/// with weights `k[i * ksize ..]` in `PRECISION_BITS` fixed point.
#[derive(Debug)]
struct Taps {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    k: Vec<i32>, // (out, ksize)
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole input range.
fn precompute_taps(in_size: u32, out_size: u32, filter: Filter) -> Taps {
    // Pillow passes the source box as C floats, so the input size goes through f32.
    let scale = f64::from(in_size as f32) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = filter.support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut k = vec![0i32; out_size as usize * ksize];
    let mut w = vec![0f64; ksize];
    for (xx, row) in k.chunks_exact_mut(ksize).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C `(int)` truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) - xmin;
        let n = (xmax.max(0) as usize).min(ksize); // never more than ksize; the min guards indexing
        let mut ww = 0.0;
        for (x, wx) in w[..n].iter_mut().enumerate() {
            *wx = (filter.kernel)(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for (kx, &wx) in row.iter_mut().zip(&w[..n]) {
            *kx = to_fixed(if ww != 0.0 { wx / ww } else { wx });
        }
        bounds.push((xmin as usize, n));
    }
    Taps { ksize, bounds, k }
}

/// `(int)(k * (1 << PRECISION_BITS) ± 0.5)`: round half away from zero.
fn to_fixed(k: f64) -> i32 {
    let scaled = k * f64::from(1u32 << PRECISION_BITS);
    if k < 0.0 {
        (-0.5 + scaled) as i32
    } else {
        (0.5 + scaled) as i32
    }
}

/// Pillow's `clip8`: drop the fraction bits, clamp to 0..=255.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One output pixel: sum over taps of `pixel(j) * k[j]`, RGB at once. Wrapping adds, as the C
/// `int` accumulator does (Pillow's bound on the taps keeps it from overflowing).
fn convolve(k: &[i32], pixel: impl Fn(usize) -> [u8; 3]) -> [u8; 3] {
    let mut acc = [1i32 << (PRECISION_BITS - 1); 3]; // rounding offset
    for (j, &kj) in k.iter().enumerate() {
        let p = pixel(j);
        for c in 0..3 {
            acc[c] = acc[c].wrapping_add(i32::from(p[c]).wrapping_mul(kj));
        }
    }
    acc.map(clip8)
}

/// Horizontal pass over input rows `y0 .. y0 + rows`: (rows, in_w, 3) -> (rows, out_w, 3).
fn resample_horizontal(src: &[u8], in_w: usize, y0: usize, rows: usize, taps: &Taps) -> Vec<u8> {
    let out_w = taps.bounds.len();
    let mut out = Vec::with_capacity(rows * out_w * 3);
    for y in y0..y0 + rows {
        let row = &src[y * in_w * 3..(y + 1) * in_w * 3];
        for (xx, &(xmin, n)) in taps.bounds.iter().enumerate() {
            let k = &taps.k[xx * taps.ksize..][..n];
            out.extend(convolve(k, |j| {
                let i = (xmin + j) * 3;
                [row[i], row[i + 1], row[i + 2]]
            }));
        }
    }
    out
}

/// Vertical pass, rows relative to `y0`: (.., w, 3) -> (out_h, w, 3).
fn resample_vertical(src: &[u8], w: usize, y0: usize, taps: &Taps) -> Vec<u8> {
    let mut out = Vec::with_capacity(taps.bounds.len() * w * 3);
    for (yy, &(ymin, n)) in taps.bounds.iter().enumerate() {
        let k = &taps.k[yy * taps.ksize..][..n];
        for x in 0..w {
            out.extend(convolve(k, |j| {
                let i = ((ymin - y0 + j) * w + x) * 3;
                [src[i], src[i + 1], src[i + 2]]
            }));
        }
    }
    out
}

/// Pillow's nearest-neighbour resize (`ImagingScaleAffine`): source coordinate of each output
/// pixel by accumulating the scale in f64, exactly as Pillow does.
fn nearest_indices(in_size: u32, out_size: u32) -> Vec<Option<usize>> {
    let a = f64::from(in_size as f32) / f64::from(out_size);
    let mut pos = a * 0.5;
    (0..out_size)
        .map(|_| {
            let i = if pos < 0.0 { None } else { Some(pos as usize) };
            pos += a;
            i.filter(|&i| i < in_size as usize)
        })
        .collect()
}

fn resize_nearest(img: &RgbImage, width: u32, height: u32) -> Vec<u8> {
    let (xs, ys) = (
        nearest_indices(img.width(), width),
        nearest_indices(img.height(), height),
    );
    let mut out = vec![0u8; width as usize * height as usize * 3]; // unmapped pixels stay 0
    for (y, yi) in ys.iter().enumerate() {
        let Some(yi) = *yi else { continue };
        for (x, xi) in xs.iter().enumerate() {
            if let Some(xi) = *xi {
                let p = img.get_pixel(xi as u32, yi as u32).0;
                out[(y * width as usize + x) * 3..][..3].copy_from_slice(&p);
            }
        }
    }
    out
}

/// Resizes (H, W, 3) -> (height, width, 3) with the numbers of Pillow's `Image.resize((width,
/// height), filter)` (no `box`, no `reducing_gap`): same taps, same fixed-point rounding, same
/// 8-bit intermediate image between the horizontal and the vertical pass.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Resample) -> Result<RgbImage> {
    if width == 0 || height == 0 || img.width() == 0 || img.height() == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {}x{} image to {width}x{height}",
            img.width(),
            img.height()
        )));
    }
    check_pixels(
        &format!("resizing to {width}x{height}"),
        u64::from(width) * u64::from(height),
    )?;
    if img.dimensions() == (width, height) {
        return Ok(img.clone()); // `Image.resize` returns `self.copy()`
    }
    let Some(f) = filter_of(filter) else {
        return raw_to_image(width, height, resize_nearest(img, width, height));
    };
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let horiz = precompute_taps(img.width(), width, f);
    let vert = precompute_taps(img.height(), height, f);
    // Pillow 13's pass order: vertical first where the height shrinks by more than twice the
    // pixels the width does (the sizes are below 2^31, so i64 holds every difference).
    let shrink_h = in_h as i64 - out_h as i64;
    let vertical_first = shrink_h > 0 && shrink_h > (in_w as i64 - out_w as i64) * 2;
    let out = match (out_w != in_w, out_h != in_h) {
        (true, true) if vertical_first => {
            let tmp = resample_vertical(img.as_raw(), in_w, 0, &vert);
            resample_horizontal(&tmp, in_w, 0, out_h, &horiz)
        }
        (true, true) => {
            // Only the input rows the vertical pass reads (Pillow's ybox_first / ybox_last).
            let y0 = vert.bounds[0].0;
            let y1 = vert.bounds.last().map_or(in_h, |&(ymin, n)| ymin + n);
            let tmp = resample_horizontal(img.as_raw(), in_w, y0, y1 - y0, &horiz);
            resample_vertical(&tmp, out_w, y0, &vert)
        }
        (true, false) => resample_horizontal(img.as_raw(), in_w, 0, in_h, &horiz),
        (false, _) => resample_vertical(img.as_raw(), in_w, 0, &vert),
    };
    raw_to_image(width, height, out)
}

fn raw_to_image(width: u32, height: u32, raw: Vec<u8>) -> Result<RgbImage> {
    RgbImage::from_raw(width, height, raw)
        .ok_or_else(|| Error::Invalid("resize produced a buffer of the wrong size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values below were produced with Pillow 13.0.0 / transformers 4.50.3 (the fixture
    // venv) by a Python one-off, e.g. for a row:
    //   a = np.array(row, np.uint8)[None, :, None].repeat(3, 2)
    //   np.asarray(Image.fromarray(a).resize((w, 1), filter))[0, :, 0]

    /// A 1-row gray RGB image.
    fn row(values: &[u8]) -> RgbImage {
        let raw = values.iter().flat_map(|&v| [v; 3]).collect();
        RgbImage::from_raw(values.len() as u32, 1, raw).unwrap()
    }

    fn resized_row(values: &[u8], width: u32, filter: Resample) -> Vec<u8> {
        let out = resize(&row(values), width, 1, filter).unwrap();
        assert!(out.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        out.pixels().map(|p| p[0]).collect()
    }

    const IMPULSE: [u8; 9] = [0, 0, 0, 0, 255, 0, 0, 0, 0];

    #[test]
    fn impulse_response_matches_pillow() {
        #[rustfmt::skip]
        let cases: [(Resample, [u8; 4], [u8; 13]); 6] = [
            (Resample::Nearest, [0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0]),
            (Resample::Lanczos, [0, 68, 68, 0], [0, 0, 2, 4, 0, 89, 255, 89, 0, 4, 2, 0, 0]),
            (Resample::Bilinear, [0, 56, 56, 0], [0, 0, 0, 0, 0, 78, 255, 78, 0, 0, 0, 0, 0]),
            (Resample::Bicubic, [0, 63, 63, 0], [0, 0, 0, 0, 0, 76, 255, 76, 0, 0, 0, 0, 0]),
            (Resample::Box, [0, 85, 0, 0], [0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0]),
            (Resample::Hamming, [0, 46, 46, 0], [0, 0, 0, 0, 0, 34, 255, 34, 0, 0, 0, 0, 0]),
        ];
        for (filter, down, up) in cases {
            assert_eq!(resized_row(&IMPULSE, 4, filter), down, "{filter:?} 9 -> 4");
            assert_eq!(resized_row(&IMPULSE, 13, filter), up, "{filter:?} 9 -> 13");
        }
    }

    #[test]
    fn overshoot_is_clipped_like_pillow() {
        let step = [0, 0, 255, 255];
        assert_eq!(
            resized_row(&step, 9, Resample::Bicubic),
            [0, 0, 0, 8, 128, 247, 255, 255, 255]
        );
        assert_eq!(
            resized_row(&step, 9, Resample::Lanczos),
            [10, 0, 0, 10, 128, 245, 255, 255, 245]
        );
    }

    #[test]
    fn two_pass_resize_matches_pillow_in_both_pass_orders() {
        // (3, 5) ramp `arange(15) * 17`, bicubic: both passes, 8-bit intermediate.
        let raw = (0..15u8).flat_map(|v| [v * 17; 3]).collect();
        let img = RgbImage::from_raw(5, 3, raw).unwrap();
        let first_channel = |w, h| -> Vec<u8> {
            let out = resize(&img, w, h, Resample::Bicubic).unwrap();
            out.pixels().map(|p| p[0]).collect()
        };
        // -> (2, 7): the height shrinks, the width grows, so Pillow 13 runs the vertical pass
        // first (Pillow 11 gave 26 for the first pixel: horizontal first).
        let want = [
            25, 34, 48, 60, 72, 86, 95, 143, 152, 166, 178, 190, 204, 213,
        ];
        assert_eq!(first_channel(7, 2), want);
        // -> (2, 3): the width shrinks by 2, the height by 1: horizontal first.
        assert_eq!(first_channel(3, 2), [32, 60, 88, 150, 178, 206]);
    }

    #[test]
    fn taps_follow_pillow_bounds() {
        // 9 -> 4 bicubic, by hand from Resample.c: scale 2.25, support 2 * 2.25 = 4.5,
        // center = (i + 0.5) * 2.25, xmin = max(int(center - 4.5 + 0.5), 0),
        // xmax = min(int(center + 4.5 + 0.5), 9) - xmin.
        let taps = precompute_taps(9, 4, filter_of(Resample::Bicubic).unwrap());
        assert_eq!(taps.ksize, 11);
        assert_eq!(taps.bounds, [(0, 6), (0, 8), (1, 8), (3, 6)]);
        // Normalised weights sum to 1 in 22-bit fixed point, up to one rounding per tap.
        for (i, &(_, n)) in taps.bounds.iter().enumerate() {
            let sum: i32 = taps.k[i * taps.ksize..][..n].iter().sum();
            assert!(
                (sum - (1 << PRECISION_BITS)).abs() <= n as i32,
                "output {i}: {sum}"
            );
        }
    }

    #[test]
    fn same_size_resize_is_a_copy_and_nearest_is_supported() {
        let img = row(&IMPULSE);
        assert_eq!(resize(&img, 9, 1, Resample::Bicubic).unwrap(), img);
        assert!(resize(&img, 0, 1, Resample::Bicubic).is_err());
    }
}
