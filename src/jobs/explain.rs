//! Region maps: where in an image a prompt's score comes from (`sciscore explain`, the page's
//! *Show regions*).
//!
//! - Patch map, from the one vision pass that scores the image: with `h` the vision tower's last
//!   hidden state (before `post_layernorm`) and `t` the prompt's text features,
//!   `patch_map[i] = exp(logit_scale) * cos(visual_projection(post_layernorm(h[1 + i])), t)` for
//!   each patch token i (not the class token), on the (S/p) x (S/p) patch grid, row-major.
//! - Occlusion map, what the score actually depends on: the preprocessed S x S crop in G x G
//!   cells, cell (r, c) covering rows floor(r S / G) .. floor((r + 1) S / G) - 1 and the same
//!   columns; each cell in turn is set to 0 in normalized pixels (the mean colour) in all three
//!   channels and scored again: `drop[r G + c] = score(original) - score(occluded)`. The G*G
//!   occluded images go through the batched forward in chunks.
//!
//! Both are checked against `transformers` (`scripts/make_fixtures.py`,
//! `tests/fixtures/goldens/regions_<model>.json`; `tests/explain.rs`).

use crate::error::{Error, Result};
use crate::model::{Backend, Model};
use crate::models::clip::config::PreprocessorConfig;
use crate::score;
use image::{Rgb, RgbImage};
use std::ops::Range;

/// The occlusion grid when none is asked for.
pub const DEFAULT_OCCLUSION_GRID: usize = 7;
/// The finest occlusion grid (32 x 32 = 1024 extra forward passes).
pub const MAX_OCCLUSION_GRID: usize = 32;

/// Values on a grid of image cells, row-major.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegionMap {
    /// [rows, columns]
    pub grid: [usize; 2],
    /// `grid[0] * grid[1]` values, row by row.
    pub values: Vec<f32>,
}

/// The score of one image for a prompt and its patch map.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PatchExplanation {
    /// `exp(logit_scale) * cos(text, image)`, as [`Model::score`].
    pub score: f32,
    /// The patch map on the patch grid.
    pub patch_map: RegionMap,
}

/// A one-line error unless `grid` is 1 to [`MAX_OCCLUSION_GRID`] and no larger than the crop.
pub fn check_occlusion_grid(grid: usize, crop: usize) -> Result<()> {
    if !(1..=MAX_OCCLUSION_GRID.min(crop)).contains(&grid) {
        return Err(Error::Invalid(format!(
            "occlusion grid {grid}: expected 1 to {} cells a side",
            MAX_OCCLUSION_GRID.min(crop)
        )));
    }
    Ok(())
}

/// Pixel rows (and, alike, columns) of cell `r` of `g` over `size`: floor(r size / g) ..
/// floor((r + 1) size / g).
pub fn cell_span(r: usize, g: usize, size: usize) -> Range<usize> {
    r * size / g..(r + 1) * size / g
}

/// The cell of `g` over `size` that pixel row (or column) `pos` falls in: the largest r with
/// floor(r size / g) <= pos.
fn cell_at(pos: usize, g: usize, size: usize) -> usize {
    ((pos + 1) * g - 1) / size
}

/// One preprocessed image (3, S, S) with cell `cell` (= r G + c) of the G x G grid set to 0 in
/// every channel.
pub fn occlude(pixels: &[f32], s: usize, g: usize, cell: usize) -> Vec<f32> {
    let mut out = pixels.to_vec();
    let (rows, cols) = (cell_span(cell / g, g, s), cell_span(cell % g, g, s));
    for ch in out.chunks_exact_mut(s * s) {
        for y in rows.clone() {
            ch[y * s + cols.start..y * s + cols.end].fill(0.0);
        }
    }
    out
}

/// Occluded images per forward pass: a few batched passes on the GPU (49 images in 4); on the
/// CPU, chunks small enough to report progress often (one image at a time in the browser).
pub fn occlusion_chunk(backend: Backend) -> usize {
    match backend {
        Backend::Gpu => 16,
        Backend::Cpu if cfg!(target_arch = "wasm32") => 1,
        Backend::Cpu => 8,
    }
}

/// Occluded copies of one preprocessed image (3, S, S), one per cell of `cells`: (n, 3, S, S).
pub fn occluded_batch(pixels: &[f32], s: usize, g: usize, cells: Range<usize>) -> Vec<f32> {
    cells.flat_map(|c| occlude(pixels, s, g, c)).collect()
}

/// `exp(logit_scale) * cos(text, v)` for each of `rows` (n x P, flat), failing on a non-finite one.
fn scores_of(
    text: &[f32],
    rows: &[f32],
    p: usize,
    logit_scale: f32,
    what: &str,
) -> Result<Vec<f32>> {
    let vs: Vec<Vec<f32>> = rows.chunks_exact(p).map(<[f32]>::to_vec).collect();
    let s = score::scores(text, &vs, logit_scale);
    if let Some(i) = s.iter().position(|x| !x.is_finite()) {
        return Err(Error::Invalid(format!(
            "{what} {i} has a non-finite score: the model computed a non-finite embedding \
             (weights beyond the f16 range on the GPU? try `--backend cpu`)"
        )));
    }
    Ok(s)
}

impl Model {
    /// Score and patch map of each of `n` preprocessed images ((n, 3, S, S), [`Model::pixels`])
    /// for `prompt`, from one vision pass.
    pub async fn patch_maps(
        &self,
        prompt: &str,
        pixels: &[f32],
        n: usize,
    ) -> Result<Vec<PatchExplanation>> {
        if n == 0 {
            return Err(Error::Invalid("no images to explain".into()));
        }
        let text = self.text_embeds(&[prompt]).await?.remove(0);
        let (feats, patches) = self.embed_pixels_and_patches(pixels, n).await?;
        let (p, g, ls) = (
            self.config().projection_dim,
            self.config().vision.grid(),
            self.logit_scale(),
        );
        let scores = scores_of(&text, &feats, p, ls, "image")?;
        scores
            .into_iter()
            .zip(patches.chunks_exact(g * g * p))
            .map(|(score, patches)| {
                Ok(PatchExplanation {
                    score,
                    patch_map: RegionMap {
                        grid: [g, g],
                        values: scores_of(&text, patches, p, ls, "patch")?,
                    },
                })
            })
            .collect()
    }

    /// Occluded images per forward pass on this model's backend ([`occlusion_chunk`]).
    pub fn occlusion_chunk(&self) -> usize {
        occlusion_chunk(self.backend())
    }

    /// `score(original) - score(occluded)` for cells `cells` of the `grid` x `grid` occlusion of
    /// one preprocessed image (3, S, S), in one batched pass; `original` is the image's score
    /// ([`Model::patch_maps`]).
    pub async fn occlusion_drops(
        &self,
        prompt: &str,
        pixels: &[f32],
        grid: usize,
        cells: Range<usize>,
        original: f32,
    ) -> Result<Vec<f32>> {
        let s = self.config().vision.image_size;
        check_occlusion_grid(grid, s)?;
        if pixels.len() != 3 * s * s || cells.end > grid * grid {
            return Err(Error::Invalid(format!(
                "occlusion of {} pixel values, cells {cells:?}: expected one image of 3x{s}x{s} \
                 and cells within 0..{}",
                pixels.len(),
                grid * grid
            )));
        }
        if cells.is_empty() {
            return Ok(Vec::new());
        }
        let text = self.text_embeds(&[prompt]).await?.remove(0);
        let batch = occluded_batch(pixels, s, grid, cells.clone());
        let feats = self.embed_pixels(&batch, cells.len()).await?.concat();
        let p = self.config().projection_dim;
        let scores = scores_of(&text, &feats, p, self.logit_scale(), "occluded image")?;
        Ok(scores.into_iter().map(|x| original - x).collect())
    }

    /// The `grid` x `grid` occlusion map of one preprocessed image (3, S, S) whose score is
    /// `original`, in chunks of [`Model::occlusion_chunk`]; `progress(done, total)` after each
    /// chunk, returning false to stop with [`Error::Cancelled`].
    pub async fn occlusion_map(
        &self,
        prompt: &str,
        pixels: &[f32],
        grid: usize,
        original: f32,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<RegionMap> {
        check_occlusion_grid(grid, self.config().vision.image_size)?;
        let total = grid * grid;
        let mut values = Vec::with_capacity(total);
        let chunk = self.occlusion_chunk();
        while values.len() < total {
            let cells = values.len()..(values.len() + chunk).min(total);
            values.extend(
                self.occlusion_drops(prompt, pixels, grid, cells, original)
                    .await?,
            );
            if !progress(values.len(), total) {
                return Err(Error::Cancelled);
            }
        }
        Ok(RegionMap {
            grid: [grid, grid],
            values,
        })
    }
}

// ---- pictures: the map blended over the crop, with a colour scale ----

/// An approximation of matplotlib's viridis at `t` in [0, 1] (a degree-6 polynomial fit per
/// channel, within 5/255 of it): perceptually uniform and readable in grey and by
/// colour-blind viewers.
pub fn viridis(t: f32) -> [u8; 3] {
    const C: [[f32; 3]; 7] = [
        [0.277_727_3, 0.005_407_344, 0.334_099_8],
        [0.105_093_04, 1.404_613_5, 1.384_590_2],
        [-0.330_861_8, 0.214_847_56, 0.095_095_16],
        [-4.634_230_4, -5.799_101, -19.332_441],
        [6.228_27, 14.179_933, 56.690_55],
        [4.776_385, -13.745_145, -65.353_035],
        [-5.435_456, 4.645_852_6, 26.312_435],
    ];
    let t = t.clamp(0.0, 1.0);
    let mut out = [0u8; 3];
    for (ch, o) in out.iter_mut().enumerate() {
        let v = C.iter().rev().fold(0.0f32, |acc, c| acc * t + c[ch]);
        *o = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    }
    out
}

/// The preprocessed crop (3, S, S) back in 8-bit RGB: normalization and rescaling undone.
pub fn crop_rgb(pixels: &[f32], s: usize, pre: &PreprocessorConfig) -> RgbImage {
    let mut img = RgbImage::new(s as u32, s as u32);
    for (i, px) in img.pixels_mut().enumerate() {
        for c in 0..3 {
            let mut v = pixels[c * s * s + i];
            if pre.do_normalize {
                v = v * pre.image_std[c] + pre.image_mean[c];
            }
            if pre.do_rescale {
                v /= pre.rescale_factor as f32;
            }
            px.0[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    img
}

/// 3 x 5 glyphs of the characters a number label needs, one row of 3 bits per entry.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '-' => [0, 0, 7, 0, 0],
        '.' => [0, 0, 0, 0, 2],
        _ => [0; 5],
    }
}

/// Pixels per glyph pixel of the labels.
const FONT_SCALE: u32 = 2;

fn draw_text(img: &mut RgbImage, text: &str, x0: u32, y0: u32, color: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..3u32 {
                if bits & (4 >> col) == 0 {
                    continue;
                }
                for dy in 0..FONT_SCALE {
                    for dx in 0..FONT_SCALE {
                        let x = x0 + (i as u32 * 4 + col) * FONT_SCALE + dx;
                        let y = y0 + row as u32 * FONT_SCALE + dy;
                        if x < img.width() && y < img.height() {
                            img.put_pixel(x, y, color);
                        }
                    }
                }
            }
        }
    }
}

/// The crop enlarged to at least 224 px, `map` blended over it in viridis at `alpha` (min to
/// max of the map), and below it a colour scale labelled with the map's min and max.
pub fn render_overlay(crop: &RgbImage, map: &RegionMap, alpha: f32) -> RgbImage {
    let (w, h) = (crop.width(), crop.height());
    let k = 224u32.div_ceil(w.max(h)).max(1);
    let (lo, hi) = map
        .values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let norm = |v: f32| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    let [gh, gw] = map.grid;
    const PAD: u32 = 4;
    const BAR: u32 = 10;
    let text_h = 5 * FONT_SCALE;
    let mut out = RgbImage::from_pixel(w * k, h * k + 3 * PAD + BAR + text_h, Rgb([24, 24, 24]));
    for y in 0..h * k {
        for x in 0..w * k {
            let (sx, sy) = (x / k, y / k);
            let cell =
                cell_at(sy as usize, gh, h as usize) * gw + cell_at(sx as usize, gw, w as usize);
            let c = viridis(norm(map.values[cell]));
            let src = crop.get_pixel(sx, sy).0;
            let px = std::array::from_fn(|i| {
                ((1.0 - alpha) * src[i] as f32 + alpha * c[i] as f32).round() as u8
            });
            out.put_pixel(x, y, Rgb(px));
        }
    }
    let bar_y = h * k + PAD;
    let width = w * k;
    for x in 0..width {
        let c = Rgb(viridis(x as f32 / (width - 1).max(1) as f32));
        for y in bar_y..bar_y + BAR {
            out.put_pixel(x, y, c);
        }
    }
    let (lo_s, hi_s) = (format!("{lo:.2}"), format!("{hi:.2}"));
    let label_y = bar_y + BAR + PAD;
    let white = Rgb([240, 240, 240]);
    draw_text(&mut out, &lo_s, 0, label_y, white);
    let hi_w = hi_s.chars().count() as u32 * 4 * FONT_SCALE;
    draw_text(&mut out, &hi_s, width.saturating_sub(hi_w), label_y, white);
    out
}

/// A file name for picture `kind` of input `index` whose path is `image`: its file stem with
/// anything but ASCII letters, digits, `-`, `_` and `.` replaced by `_`, then the index (two
/// inputs with one stem do not collide) and the kind: `photo-0-patch.png`.
pub fn picture_name(image: &std::path::Path, index: usize, kind: &str) -> String {
    let stem: String = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = if stem.trim_matches('.').is_empty() {
        "image".to_string()
    } else {
        stem
    };
    format!("{stem}-{index}-{kind}.png")
}

/// Writes `img` as PNG to `dir/name`, creating `dir` if missing. Refuses a `name` that is not a
/// plain file name and a target that is a symbolic link or not a regular file, so nothing is
/// written outside `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_png(dir: &std::path::Path, name: &str, img: &RgbImage) -> Result<std::path::PathBuf> {
    use std::path::{Component, Path};
    let io = |what: &Path, e: &dyn std::fmt::Display| Error::Io {
        name: what.display().to_string(),
        message: e.to_string(),
    };
    let mut parts = Path::new(name).components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) {
        return Err(Error::Invalid(format!(
            "picture name `{name}` is not a plain file name"
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
    let path = dir.join(name);
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !meta.file_type().is_file() {
            return Err(Error::Invalid(format!(
                "{} exists and is not a regular file (a link or a folder): not writing there",
                path.display()
            )));
        }
    }
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| io(&path, &e))?;
    std::fs::write(&path, bytes).map_err(|e| io(&path, &e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_tile_the_crop_with_floor_edges() {
        for (s, g) in [(224, 7), (36, 7), (36, 32), (224, 16), (5, 5), (10, 1)] {
            let mut seen = vec![0; s];
            for r in 0..g {
                for y in cell_span(r, g, s) {
                    seen[y] += 1;
                    assert_eq!(cell_at(y, g, s), r, "s {s} g {g} y {y}");
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "s {s} g {g}");
        }
        assert_eq!(cell_span(1, 7, 36), 5..10);
    }

    #[test]
    fn occlude_zeroes_one_cell_in_every_channel() {
        let (s, g) = (10, 3);
        let px: Vec<f32> = (0..3 * s * s).map(|i| 1.0 + i as f32).collect();
        let o = occlude(&px, s, g, g + 2); // row 1, column 2: rows 3..6, columns 6..10
        for c in 0..3 {
            for y in 0..s {
                for x in 0..s {
                    let i = (c * s + y) * s + x;
                    let inside = (3..6).contains(&y) && (6..10).contains(&x);
                    assert_eq!(o[i] == 0.0, inside, "c {c} y {y} x {x}");
                }
            }
        }
    }

    #[test]
    fn grid_bounds() {
        assert!(check_occlusion_grid(0, 224).is_err());
        assert!(check_occlusion_grid(33, 224).is_err());
        assert!(check_occlusion_grid(1, 224).is_ok());
        assert!(check_occlusion_grid(32, 224).is_ok());
        assert!(check_occlusion_grid(7, 5).is_err());
    }

    #[test]
    fn viridis_ends_and_middle() {
        // matplotlib: viridis(0) = #440154, viridis(0.5) = #21918c, viridis(1) = #fde725.
        for (t, want) in [
            (0.0, [68, 1, 84]),
            (0.5, [33, 145, 140]),
            (1.0, [253, 231, 37]),
        ] {
            let got = viridis(t);
            for i in 0..3 {
                assert!(
                    (got[i] as i32 - want[i]).abs() <= 5,
                    "t {t}: {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn picture_names_are_plain_and_distinct() {
        use std::path::Path;
        assert_eq!(
            picture_name(Path::new("a/b/photo.jpg"), 0, "patch"),
            "photo-0-patch.png"
        );
        assert_eq!(
            picture_name(Path::new("../x y/é.png"), 3, "occlusion"),
            "_-3-occlusion.png"
        );
        assert_eq!(
            picture_name(Path::new(".."), 1, "patch"),
            "image-1-patch.png"
        );
        assert_ne!(
            picture_name(Path::new("a/p.png"), 0, "patch"),
            picture_name(Path::new("b/p.png"), 1, "patch")
        );
    }

    #[test]
    fn overlay_has_the_scale_and_blends_the_map() {
        let crop = RgbImage::from_pixel(36, 36, Rgb([100, 100, 100]));
        let map = RegionMap {
            grid: [2, 2],
            values: vec![0.0, 1.0, 2.0, 3.0],
        };
        let img = render_overlay(&crop, &map, 1.0);
        let k = 224u32.div_ceil(36);
        assert_eq!(img.width(), 36 * k);
        assert!(img.height() > 36 * k + 10);
        // alpha 1: the top-left cell is the map's minimum (viridis 0), the bottom-right its max.
        assert_eq!(img.get_pixel(0, 0).0, viridis(0.0));
        assert_eq!(img.get_pixel(36 * k - 1, 36 * k - 1).0, viridis(1.0));
    }
}
