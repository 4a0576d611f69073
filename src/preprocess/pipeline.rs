//! `CLIPImageProcessor.preprocess` on a decoded image: resize (shortest edge or exact size),
//! center crop, rescale, normalize, as transformers 4.50.3 `image_transforms.py` does them.

use super::decode::{check_pixels, decode_rgb};
use super::resample::resize;
use crate::error::Result;
use crate::models::clip::config::{PreprocessorConfig, ResizeTo};
use image::RgbImage;

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

/// [`decode_rgb`] then [`preprocess`]: file bytes -> `pixel_values` (3, ch, cw) f32.
pub fn image_to_pixels(name: &str, bytes: &[u8], cfg: &PreprocessorConfig) -> Result<Vec<f32>> {
    preprocess(&decode_rgb(name, bytes)?, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    // Expected values below were produced with transformers 4.50.3 (the fixture venv) by a
    // Python one-off.

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
