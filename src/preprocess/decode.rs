//! Image files to (H, W, 3) RGB as Pillow's `Image.open(f).convert("RGB")` gives them: the
//! format sniffed from the content, JPEG by our libjpeg-turbo port (`jpeg.rs`), the other formats
//! by the `image` crate with Pillow's mode conversions, and the size limits checked from the file
//! header before any pixel is allocated.

use super::jpeg;
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

pub(super) fn check_pixels(what: &str, pixels: u64) -> Result<()> {
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
