//! Image decoding and `CLIPImageProcessor`-equal preprocessing.
//!
//! The reference is the slow (PIL-based) `CLIPImageProcessor` of transformers 4.50.3 on an image
//! opened with Pillow 13.0.0:
//! - <https://github.com/huggingface/transformers/blob/v4.50.3/src/transformers/models/clip/image_processing_clip.py>
//!   (`preprocess`: convert RGB, resize, center crop, rescale, normalize),
//! - <https://github.com/huggingface/transformers/blob/v4.50.3/src/transformers/image_transforms.py>
//!   (`get_resize_output_image_size`, `resize`, `center_crop`, `rescale`, `normalize`),
//! - <https://github.com/python-pillow/Pillow/blob/13.0.0/src/libImaging/Resample.c>
//!   (`ImagingResample`, ported bit for bit in `resample.rs`) and `Geometry.c` (`ImagingScaleAffine`, the
//!   nearest-neighbour resize). Pillow before 13 always ran the horizontal pass first; 13 runs the
//!   vertical one first for images whose height shrinks more than twice as much as their width
//!   (python-pillow/Pillow#9549), so tall images differ by a level here and there between the
//!   two. We follow 13, what a new install of transformers gets.
//!
//! Files: `decode.rs` (bytes -> RGB, size limits, reading files), `jpeg.rs` (the libjpeg-turbo
//! port), `resample.rs` (Pillow's resize), `pipeline.rs` (resize, crop, rescale, normalize).
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

mod decode;
mod jpeg;
mod pipeline;
mod resample;

pub use decode::{decode_rgb, MAX_PIXELS};
#[cfg(not(target_arch = "wasm32"))]
pub use decode::{read_image_file, MAX_IMAGE_FILE_BYTES};
pub use pipeline::{image_to_pixels, preprocess};
pub use resample::resize;
