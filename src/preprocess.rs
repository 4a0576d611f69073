//! Image decoding and `CLIPImageProcessor`-equal preprocessing.
//!
//! The reference is the slow (PIL-based) `CLIPImageProcessor` of transformers 4.50.3 on an image
//! opened with Pillow 11.1.0:
//! - <https://github.com/huggingface/transformers/blob/v4.50.3/src/transformers/models/clip/image_processing_clip.py>
//!   (`preprocess`: convert RGB, resize, center crop, rescale, normalize),
//! - <https://github.com/huggingface/transformers/blob/v4.50.3/src/transformers/image_transforms.py>
//!   (`get_resize_output_image_size`, `resize`, `center_crop`, `rescale`, `normalize`),
//! - <https://github.com/python-pillow/Pillow/blob/11.1.0/src/libImaging/Resample.c>
//!   (`ImagingResample`, ported below bit for bit) and `Geometry.c` (`ImagingScaleAffine`, the
//!   nearest-neighbour resize).
//!
//! Shapes: (H, W) decoded image, (h, w) resized, (ch, cw) cropped.
//! ```text
//! bytes -> decode_rgb -> (H, W, 3) u8 -> resize -> (h, w, 3) u8 -> center crop -> (ch, cw, 3) u8
//!       -> rescale (f64, then f32) -> normalize (f32) -> (3, ch, cw) f32
//! ```
//! Everything up to the crop is integer arithmetic identical to Pillow's, so the only differences
//! to the reference come from the decoders (see [`decode_rgb`]).

use crate::config::{PreprocessorConfig, ResizeTo, Resample};
use crate::error::{Error, Result};
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;

/// Largest image, in pixels (width x height), that [`decode_rgb`] decodes and that a resize or
/// crop may produce: Pillow's `Image.MAX_IMAGE_PIXELS` (`1024 * 1024 * 1024 // 4 // 3`, "around
/// a quarter gigabyte for a 24-bit image"). Pillow only warns between this and twice it; we
/// refuse, because an (H, W, 3) u8 copy of such an image already takes 256 MiB of wasm memory.
/// The size is read from the file header, so a decompression bomb is refused before anything
/// is allocated for its pixels.
pub const MAX_PIXELS: u64 = 89_478_485;

const SUPPORTED: &str = "PNG, JPEG, WebP, GIF and BMP";

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes an image file (PNG, JPEG, WebP, GIF first frame, BMP; recognised by content, not by
/// name) to (H, W, 3) RGB, the way Pillow's `Image.open(f).convert("RGB")` does.
///
/// Per Pillow mode: RGBA / LA / palette with transparency keep the stored colour and drop alpha
/// (no compositing); L is replicated; palettes are looked up; 16-bit RGB(A) and LA keep the high
/// byte; 16-bit grayscale PNG (Pillow's `I;16`) is clipped to 255, as Pillow does.
///
/// Known differences to Pillow: JPEG is decoded by `zune-jpeg` rather than libjpeg-turbo and lossy
/// WebP by `image-webp` rather than libwebp, which can differ by a level in a few pixels; CMYK
/// JPEGs are converted by the `image` crate; EXIF orientation is ignored by both.
///
/// `name` is only used in error messages.
pub fn decode_rgb(name: &str, bytes: &[u8]) -> Result<RgbImage> {
    let format = sniff(name, bytes)?;
    let decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(|e| decode_error(name, format, e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::image(name, format!("the image has no pixels ({w}x{h})")));
    }
    check_pixels(&format!("image `{name}` ({w}x{h})"), u64::from(w) * u64::from(h))?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(name, format, e))?;
    rgb_like_pil(name, img, gray16_is_pil_i16(format, bytes))
}

/// The format, from the first bytes of the file.
fn sniff(name: &str, bytes: &[u8]) -> Result<ImageFormat> {
    if bytes.is_empty() {
        return Err(Error::image(name, "the file is empty (0 bytes)"));
    }
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(f),
        Ok(f @ (ImageFormat::Gif | ImageFormat::Bmp)) => Ok(f),
        Ok(f) => Err(Error::image(
            name,
            format!("{f:?} images are not supported; supported formats: {SUPPORTED}"),
        )),
        Err(_) => {
            let head = &bytes[..bytes.len().min(64)];
            let text = head.iter().all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
            let what = if text { "text, not an image" } else { "not a known image format" };
            Err(Error::image(
                name,
                format!("the content is {what}; supported formats: {SUPPORTED}"),
            ))
        }
    }
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        _ => "image",
    }
}

fn decode_error(name: &str, format: ImageFormat, e: ImageError) -> Error {
    let fmt = format_name(format);
    match e {
        ImageError::Limits(l) => Error::image(name, format!("{fmt} too large to decode: {l}")),
        ImageError::Unsupported(u) => Error::image(name, format!("unsupported {fmt} variant: {u}")),
        e => Error::image(
            name,
            format!("cannot decode {fmt}: {e} (is the file truncated or corrupt?)"),
        ),
    }
}

fn check_pixels(what: &str, pixels: u64) -> Result<()> {
    if pixels > MAX_PIXELS {
        return Err(Error::Limits {
            what: format!("{what}, in pixels,"),
            needed: pixels,
            available: MAX_PIXELS,
        });
    }
    Ok(())
}

/// Whether 16-bit gray pixels are Pillow's `I;16` (a grayscale PNG, whose `convert("RGB")` clips
/// to 255) rather than 16-bit LA (which Pillow opens as RGBA, keeping the high byte). The
/// `image` crate returns LA16 for both when a gray PNG has a `tRNS` chunk.
fn gray16_is_pil_i16(format: ImageFormat, bytes: &[u8]) -> bool {
    // PNG: 8-byte signature, IHDR length and tag, width, height, bit depth (24), colour type (25).
    format == ImageFormat::Png && bytes.get(25) == Some(&0)
}

/// (H, W, C) samples of any type -> (H, W, 3) u8 through `f`, one pixel at a time.
fn map_pixels<T>(
    name: &str,
    (w, h): (u32, u32),
    samples: &[T],
    channels: usize,
    f: impl Fn(&[T]) -> [u8; 3],
) -> Result<RgbImage> {
    let rgb: Vec<u8> = samples.chunks_exact(channels).flat_map(f).collect();
    RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| Error::image(name, "decoder returned a buffer of the wrong size"))
}

/// Pillow's `convert("RGB")` for every layout the enabled decoders produce.
fn rgb_like_pil(name: &str, img: DynamicImage, gray16_clips: bool) -> Result<RgbImage> {
    let dims = (img.width(), img.height());
    let hi = |v: u16| (v >> 8) as u8; // Pillow unpacks 16-bit RGB / RGBA / LA by the high byte
    let clip = |v: u16| v.min(255) as u8; // Pillow's I;16 -> RGB conversion clips
    let gray16 = move |v: u16| if gray16_clips { clip(v) } else { hi(v) };
    match img {
        DynamicImage::ImageRgb8(im) => Ok(im),
        DynamicImage::ImageRgba8(im) => map_pixels(name, dims, &im, 4, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma8(im) => map_pixels(name, dims, &im, 1, |p| [p[0]; 3]),
        DynamicImage::ImageLumaA8(im) => map_pixels(name, dims, &im, 2, |p| [p[0]; 3]),
        DynamicImage::ImageRgb16(im) => {
            map_pixels(name, dims, &im, 3, |p| [hi(p[0]), hi(p[1]), hi(p[2])])
        }
        DynamicImage::ImageRgba16(im) => {
            map_pixels(name, dims, &im, 4, |p| [hi(p[0]), hi(p[1]), hi(p[2])])
        }
        DynamicImage::ImageLuma16(im) => map_pixels(name, dims, &im, 1, |p| [clip(p[0]); 3]),
        DynamicImage::ImageLumaA16(im) => map_pixels(name, dims, &im, 2, |p| [gray16(p[0]); 3]),
        // Float layouts are not produced by the enabled decoders.
        other => Ok(other.to_rgb8()),
    }
}

// ---------------------------------------------------------------------------------------------
// Resampling: a port of Pillow 11.1.0 `libImaging/Resample.c` for 8-bit images
// ---------------------------------------------------------------------------------------------

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
    let (xs, ys) = (nearest_indices(img.width(), width), nearest_indices(img.height(), height));
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
    check_pixels(&format!("resizing to {width}x{height}"), u64::from(width) * u64::from(height))?;
    if img.dimensions() == (width, height) {
        return Ok(img.clone()); // `Image.resize` returns `self.copy()`
    }
    let Some(f) = filter_of(filter) else {
        return raw_to_image(width, height, resize_nearest(img, width, height));
    };
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let horiz = precompute_taps(img.width(), width, f);
    let vert = precompute_taps(img.height(), height, f);
    // Rows of the input the vertical pass reads (Pillow's ybox_first / ybox_last).
    let y0 = vert.bounds[0].0;
    let y1 = vert.bounds.last().map_or(in_h, |&(ymin, n)| ymin + n);
    let out = match (width as usize != in_w, height as usize != in_h) {
        (true, true) => {
            let tmp = resample_horizontal(img.as_raw(), in_w, y0, y1 - y0, &horiz);
            resample_vertical(&tmp, width as usize, y0, &vert)
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

// ---------------------------------------------------------------------------------------------
// CLIPImageProcessor
// ---------------------------------------------------------------------------------------------

/// transformers' `get_resize_output_image_size(image, size, default_to_square=False)` for a
/// shortest edge, or the exact size: (height, width).
fn resize_target(height: u32, width: u32, size: ResizeTo) -> Result<(u32, u32)> {
    let (h, w) = match size {
        ResizeTo::Exact { height, width } => (height as u64, width as u64),
        ResizeTo::ShortestEdge(s) => {
            let (short, long) = (u64::from(width.min(height)), u64::from(width.max(height)));
            let s = s as u64;
            // Python `int(s * long / short)`: exact int product, correctly rounded true
            // division (exact in f64 below 2^53), truncation.
            let new_long = ((s * long) as f64 / short as f64) as u64;
            if width <= height {
                (new_long, s)
            } else {
                (s, new_long)
            }
        }
    };
    check_pixels(&format!("resizing to {w}x{h}"), w.saturating_mul(h))?;
    Ok((h as u32, w as u32))
}

/// transformers' `center_crop` on (h, w, 3) u8 -> (ch, cw, 3) u8. Where the image is smaller than
/// the crop it is zero-padded, centred with the extra pixel after (`ceil` pad before, floor
/// offset): in both cases source index = output index + floor((size - crop) / 2).
fn center_crop(img: &RgbImage, ch: usize, cw: usize) -> Vec<u8> {
    let (h, w) = (img.height() as i64, img.width() as i64);
    let top = (h - ch as i64).div_euclid(2);
    let left = (w - cw as i64).div_euclid(2);
    let mut out = vec![0u8; ch * cw * 3];
    for y in 0..ch {
        let sy = y as i64 + top;
        if !(0..h).contains(&sy) {
            continue;
        }
        for x in 0..cw {
            let sx = x as i64 + left;
            if (0..w).contains(&sx) {
                let p = img.get_pixel(sx as u32, sy as u32).0;
                out[(y * cw + x) * 3..][..3].copy_from_slice(&p);
            }
        }
    }
    out
}

/// The f32 value of each u8 level per channel: `rescale` (`astype(float64) * factor`, then
/// `astype(float32)`) and `normalize` (`(x - mean) / std` in float32).
fn level_table(cfg: &PreprocessorConfig) -> [[f32; 256]; 3] {
    let mut t = [[0f32; 256]; 3];
    for (c, row) in t.iter_mut().enumerate() {
        for (v, out) in row.iter_mut().enumerate() {
            let x = if cfg.do_rescale {
                (v as f64 * cfg.rescale_factor) as f32
            } else {
                v as f32
            };
            *out = if cfg.do_normalize {
                (x - cfg.image_mean[c]) / cfg.image_std[c]
            } else {
                x
            };
        }
    }
    t
}

/// `CLIPImageProcessor` on one RGB image: resize, center crop, rescale, normalize, as set by
/// `cfg`. Returns `pixel_values` for this image, (3, ch, cw) f32 in CHW order, where (ch, cw)
/// is `cfg.crop_size` (or the resized size without center crop).
///
/// Differences to transformers: images 1 or 3 pixels high, which transformers mistakes for
/// channels-first arrays, are processed as the images they are.
pub fn preprocess(img: &RgbImage, cfg: &PreprocessorConfig) -> Result<Vec<f32>> {
    let resized;
    let img = if cfg.do_resize {
        let (h, w) = resize_target(img.height(), img.width(), cfg.size)?;
        resized = resize(img, w, h, cfg.resample)?;
        &resized
    } else {
        img
    };
    let (ch, cw) = if cfg.do_center_crop {
        cfg.crop_size
    } else {
        (img.height() as usize, img.width() as usize)
    };
    check_pixels(&format!("cropping to {cw}x{ch}"), (ch as u64).saturating_mul(cw as u64))?;
    let crop = center_crop(img, ch, cw); // (ch, cw, 3) u8
    let table = level_table(cfg);
    let mut out = vec![0f32; 3 * ch * cw]; // (3, ch, cw)
    for (i, px) in crop.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * ch * cw + i] = table[c][px[c] as usize];
        }
    }
    Ok(out)
}

/// [`decode_rgb`] then [`preprocess`]: file bytes -> `pixel_values` (3, ch, cw) f32.
pub fn image_to_pixels(name: &str, bytes: &[u8], cfg: &PreprocessorConfig) -> Result<Vec<f32>> {
    preprocess(&decode_rgb(name, bytes)?, cfg)
}
