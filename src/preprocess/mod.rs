//! Image decoding and `CLIPImageProcessor`-equal preprocessing.
//!
//! The reference is the slow (PIL-based) `CLIPImageProcessor` of transformers 4.50.3 on an image
//! opened with Pillow 13.0.0:
//! - <https://github.com/huggingface/transformers/blob/v4.50.3/src/transformers/models/clip/image_processing_clip.py>
//!   (`preprocess`: convert RGB, resize, center crop, rescale, normalize),
//! - <https://github.com/huggingface/transformers/blob/v4.50.3/src/transformers/image_transforms.py>
//!   (`get_resize_output_image_size`, `resize`, `center_crop`, `rescale`, `normalize`),
//! - <https://github.com/python-pillow/Pillow/blob/13.0.0/src/libImaging/Resample.c>
//!   (`ImagingResample`, ported below bit for bit) and `Geometry.c` (`ImagingScaleAffine`, the
//!   nearest-neighbour resize). Pillow before 13 always ran the horizontal pass first; 13 runs the
//!   vertical one first for images whose height shrinks more than twice as much as their width
//!   (python-pillow/Pillow#9549), so tall images differ by a level here and there between the
//!   two. We follow 13, what a new install of transformers gets.
//!
//! Shapes: (H, W) decoded image, (h, w) resized, (ch, cw) cropped.
//! ```text
//! bytes -> decode_rgb -> (H, W, 3) u8 -> resize -> (h, w, 3) u8 -> center crop -> (ch, cw, 3) u8
//!       -> rescale (f64, then f32) -> normalize (f32) -> (3, ch, cw) f32
//! ```
//! Decoding, resizing and cropping are integer arithmetic identical to Pillow's, and rescale /
//! normalize repeat numpy's f64 / f32 steps, so `pixel_values` are bit-identical to the reference
//! on every fixture and on a few hundred other (image, config) pairs we checked.
//!
//! Known differences (all outside the usual inputs):
//! - Refused where Pillow decodes: arithmetic-coded, lossless and 12-bit JPEGs, JPEGs without
//!   Huffman tables (Motion JPEG), JPEGs of over 1000 scans, images over [`MAX_PIXELS`] (Pillow
//!   only warns up to twice it).
//! - Not reproduced: libjpeg's block smoothing of progressive JPEGs whose scans stop before the
//!   last bit of every coefficient (complete files are exact); Pillow enlarging a GIF whose first
//!   frame extends past the logical screen; how Pillow decodes corrupt data.
//! - Images 1 or 3 pixels tall, which transformers mistakes for channels-first arrays, are
//!   processed as the images they are.

use crate::error::{Error, Result};
use crate::models::clip::config::{PreprocessorConfig, Resample, ResizeTo};
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;

mod jpeg;

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
/// JPEG is decoded by our own port of libjpeg-turbo's output stages (`preprocess/jpeg.rs`), so
/// its pixels equal Pillow's; CMYK JPEGs are inverted and converted as Pillow does. The other
/// formats use the `image` crate, whose output equals Pillow's for every layout we tested
/// (including lossy WebP). EXIF orientation is ignored, as by Pillow's `Image.open`.
///
/// `name` is only used in error messages.
pub fn decode_rgb(name: &str, bytes: &[u8]) -> Result<RgbImage> {
    let format = sniff(name, bytes)?;
    if format == ImageFormat::Jpeg {
        return decode_jpeg(name, bytes);
    }
    let decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(|e| decode_error(name, format, e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::image(
            name,
            format!("the image has no pixels ({w}x{h})"),
        ));
    }
    check_pixels(
        &format!("image `{name}` ({w}x{h})"),
        u64::from(w) * u64::from(h),
    )?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(name, format, e))?;
    let mut rgb = rgb_like_pil(name, img, gray16_is_pil_i16(format, bytes))?;
    if format == ImageFormat::Gif {
        gif_fill_like_pil(&mut rgb, bytes);
    }
    Ok(rgb)
}

/// JPEG through our libjpeg-turbo-equal decoder (`jpeg.rs`): the size comes from the frame
/// header, before anything is allocated for the pixels.
fn decode_jpeg(name: &str, bytes: &[u8]) -> Result<RgbImage> {
    let bad = |m: String| Error::image(name, format!("cannot decode JPEG: {m}"));
    let jpeg = jpeg::Jpeg::read_header(bytes).map_err(bad)?;
    let (w, h) = jpeg.dimensions();
    check_pixels(
        &format!("image `{name}` ({w}x{h})"),
        u64::from(w) * u64::from(h),
    )?;
    let rgb = jpeg.decode_rgb().map_err(bad)?; // (H, W, 3)
    RgbImage::from_raw(w, h, rgb).ok_or_else(|| Error::image(name, "JPEG decoder size mismatch"))
}

/// The format, from the first bytes of the file.
fn sniff(name: &str, bytes: &[u8]) -> Result<ImageFormat> {
    if bytes.is_empty() {
        return Err(Error::image(name, "the file is empty (0 bytes)"));
    }
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(f),
        Ok(f @ (ImageFormat::Gif | ImageFormat::Bmp)) => Ok(f),
        Ok(f) => {
            let fmt = f
                .extensions_str()
                .first()
                .map_or(format!("{f:?}"), |e| e.to_uppercase());
            Err(Error::image(
                name,
                format!("{fmt} images are not supported; supported formats: {SUPPORTED}"),
            ))
        }
        Err(_) => {
            let head = &bytes[..bytes.len().min(64)];
            let text = head
                .iter()
                .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
            let what = if text {
                "text, not an image"
            } else {
                "not a known image format"
            };
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
            what: format!("{what}: pixel count"),
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

/// The first frame of a GIF: its rectangle on the logical screen and the colour Pillow shows
/// around it: palette entry `transparency` of the frame's graphic control extension, or 0
/// (`GifImagePlugin.load_prepare` fills with that index; a new "P" image is zeros).
struct GifFirstFrame {
    rect: (u32, u32, u32, u32), // x, y, width, height
    fill: [u8; 3],
}

fn gif_first_frame(b: &[u8]) -> Option<GifFirstFrame> {
    let le16 = |i: usize| Some(u32::from(*b.get(i)?) | u32::from(*b.get(i + 1)?) << 8);
    let table_len = |packed: u8| {
        if packed & 0x80 != 0 {
            3usize << ((packed & 7) + 1)
        } else {
            0
        }
    };
    let gct = b.get(13..13 + table_len(*b.get(10)?))?;
    let (mut i, mut transparency) = (13 + gct.len(), None);
    loop {
        match *b.get(i)? {
            0x21 => {
                // Extension: label, then sub-blocks; a graphic control block may name a
                // transparent index.
                let gce = *b.get(i + 1)? == 0xF9 && *b.get(i + 2)? >= 4;
                if gce && b.get(i + 3)? & 1 != 0 {
                    transparency = Some(usize::from(*b.get(i + 6)?));
                }
                i += 2;
                while *b.get(i)? != 0 {
                    i += usize::from(b[i]) + 1;
                }
                i += 1;
            }
            0x2C => {
                let packed = *b.get(i + 9)?;
                let lct = b
                    .get(i + 10..i + 10 + table_len(packed))
                    .filter(|t| !t.is_empty());
                let index = transparency.unwrap_or(0);
                let fill = match lct.or(Some(gct).filter(|t| !t.is_empty())) {
                    Some(p) => p
                        .get(3 * index..3 * index + 3)
                        .map_or([0; 3], |c| [c[0], c[1], c[2]]),
                    None => [index as u8; 3], // no palette: Pillow decodes as "L"
                };
                let rect = (le16(i + 1)?, le16(i + 3)?, le16(i + 5)?, le16(i + 7)?);
                return Some(GifFirstFrame { rect, fill });
            }
            _ => return None,
        }
    }
}

/// Paints the screen outside the first frame as Pillow does (the `image` crate leaves it black).
fn gif_fill_like_pil(img: &mut RgbImage, bytes: &[u8]) {
    let Some(GifFirstFrame {
        rect: (x0, y0, w, h),
        fill,
    }) = gif_first_frame(bytes)
    else {
        return;
    };
    let inside = |x: u32, y: u32| x >= x0 && x - x0 < w && y >= y0 && y - y0 < h;
    for (x, y, p) in img.enumerate_pixels_mut() {
        if !inside(x, y) {
            p.0 = fill;
        }
    }
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
// Resampling: a port of Pillow 13.0.0 `libImaging/Resample.c` for 8-bit images
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
    check_pixels(
        &format!("cropping to {cw}x{ch}"),
        (ch as u64).saturating_mul(cw as u64),
    )?;
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

/// Largest image file [`read_image_file`] reads: an image of [`MAX_PIXELS`] in the least compact
/// form we decode (a 16-bit RGBA PNG of stored, uncompressed blocks) takes 716 MB.
#[cfg(not(target_arch = "wasm32"))]
pub const MAX_IMAGE_FILE_BYTES: u64 = 1 << 30;

/// Reads an image file: a regular file (not a device, pipe or folder) of at most
/// [`MAX_IMAGE_FILE_BYTES`], so `/dev/zero` or a FIFO given as an image is an error, not a hang.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_image_file(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let name = path.display().to_string();
    let io = |e: std::io::Error| Error::image(&name, format!("cannot read it ({e})"));
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(Error::image(&name, "not a regular file"));
    }
    if meta.len() > MAX_IMAGE_FILE_BYTES {
        return Err(Error::Limits {
            what: format!("image `{name}`"),
            needed: meta.len(),
            available: MAX_IMAGE_FILE_BYTES,
        });
    }
    let mut bytes = Vec::new();
    // `take`: the file may grow between the size check and the read.
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_IMAGE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_IMAGE_FILE_BYTES {
        return Err(Error::Limits {
            what: format!("image `{name}`"),
            needed: bytes.len() as u64,
            available: MAX_IMAGE_FILE_BYTES,
        });
    }
    Ok(bytes)
}

/// [`decode_rgb`] then [`preprocess`]: file bytes -> `pixel_values` (3, ch, cw) f32.
pub fn image_to_pixels(name: &str, bytes: &[u8], cfg: &PreprocessorConfig) -> Result<Vec<f32>> {
    preprocess(&decode_rgb(name, bytes)?, cfg)
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

    #[test]
    fn shortest_edge_size_matches_transformers() {
        // get_resize_output_image_size(np.zeros((h, w, 3)), s, default_to_square=False)
        let cases = [
            ((1200, 1600, 224), (224, 298)),
            ((301, 180, 224), (374, 224)),
            ((7, 1000, 224), (224, 32000)),
            ((224, 224, 224), (224, 224)),
            ((10, 3, 36), (120, 36)),
        ];
        for ((h, w, s), want) in cases {
            assert_eq!(
                resize_target(h, w, ResizeTo::ShortestEdge(s)).unwrap(),
                want
            );
        }
        let exact = ResizeTo::Exact {
            height: 5,
            width: 7,
        };
        assert_eq!(resize_target(100, 1, exact).unwrap(), (5, 7));
        assert!(matches!(
            resize_target(1, 100_000, ResizeTo::ShortestEdge(224)),
            Err(Error::Limits { .. })
        ));
    }

    #[test]
    fn center_crop_pads_like_transformers() {
        // center_crop(x, (6, 3), input_data_format=LAST) of x = arange(1, 21).reshape(4, 5):
        // rows padded (1 above, 1 below), columns cropped from offset 1.
        let raw = (1..=20u8).flat_map(|v| [v; 3]).collect();
        let img = RgbImage::from_raw(5, 4, raw).unwrap();
        let got: Vec<u8> = center_crop(&img, 6, 3).chunks(3).map(|p| p[0]).collect();
        let want = [0, 0, 0, 2, 3, 4, 7, 8, 9, 12, 13, 14, 17, 18, 19, 0, 0, 0];
        assert_eq!(got, want);
    }

    #[test]
    fn levels_are_rescaled_in_f64_and_normalised_in_f32() {
        let cfg = PreprocessorConfig::from_json(b"{}").unwrap();
        let t = level_table(&cfg);
        let x = (200.0f64 * (1.0 / 255.0)) as f32;
        assert_eq!(t[1][200], (x - cfg.image_mean[1]) / cfg.image_std[1]);
    }
}
