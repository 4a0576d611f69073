//! `sciscore explain`: region maps of each image for one prompt (see [`run`]).

use super::common::{json_line, load, progress, BackendArg};
use anyhow::{bail, Context, Result};
use sciscore::{shown, ImageInput};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: String,
    #[arg(long)]
    prompt: String,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Also the occlusion map on a G x G grid of cells (1 to 32; 7 is a good start).
    #[arg(long, value_name = "G", allow_hyphen_values = true)]
    occlusion: Option<String>,
    /// Write per image a PNG of the crop with each map blended over it and a colour scale.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendArg,
    #[arg(long)]
    json: bool,
}

/// `sciscore explain`: the patch map of each image (and with `--occlusion G` its occlusion
/// map), as JSON or text, and with `--out-dir` as pictures. An image that cannot be decoded
/// gets an `error` entry and the others are still explained; the command then exits
/// non-zero, as `score` does on such an image.
pub fn run(a: Args) -> Result<()> {
    use sciscore::explain::{self as ex, MAX_OCCLUSION_GRID};
    let grid = match &a.occlusion {
        None => None,
        Some(g) => match g.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_OCCLUSION_GRID).contains(&n) => Some(n),
            _ => bail!(
                "--occlusion {}: expected a whole number in 1..={MAX_OCCLUSION_GRID} (cells a side)",
                shown(g)
            ),
        },
    };
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating --out-dir {}", dir.display()))?;
    }
    let m = load(&a.model, a.backend)?;
    let s = m.config().vision.image_size;
    if let Some(g) = grid {
        ex::check_occlusion_grid(g, s)?;
    }
    // Decode each image; one that fails keeps its error and the others go on.
    let mut pixels = Vec::new();
    let mut decoded: Vec<std::result::Result<usize, String>> = Vec::new();
    for p in &a.images {
        let name = p.display().to_string();
        let px = sciscore::preprocess::read_image_file(p).and_then(|bytes| {
            m.pixels(ImageInput {
                name: &name,
                bytes: &bytes,
            })
        });
        match px {
            Ok(px) => {
                decoded.push(Ok(pixels.len() / (3 * s * s)));
                pixels.extend(px);
            }
            Err(e) => decoded.push(Err(e.to_string())),
        }
    }
    let n_ok = pixels.len() / (3 * s * s);
    let maps = if n_ok > 0 {
        pollster::block_on(m.patch_maps(&a.prompt, &pixels, n_ok))?
    } else {
        Vec::new()
    };
    let one = |k: usize| &pixels[k * 3 * s * s..(k + 1) * 3 * s * s];
    let mut occlusion = Vec::new();
    if let Some(g) = grid {
        let bar = progress((n_ok * g * g) as u64, "occluded images");
        for (k, x) in maps.iter().enumerate() {
            let mut report = |done: usize, _total: usize| {
                bar.set_position((k * g * g + done) as u64);
                true
            };
            occlusion.push(pollster::block_on(m.occlusion_map(
                &a.prompt,
                one(k),
                g,
                x.score,
                &mut report,
            ))?);
        }
        bar.finish_and_clear();
    }
    let mut results = Vec::new();
    let mut failed = 0;
    for (i, (path, d)) in a.images.iter().zip(&decoded).enumerate() {
        let name = path.display().to_string();
        let k = match d {
            Ok(k) => *k,
            Err(e) => {
                failed += 1;
                results.push(json!({"image": name, "error": e}));
                continue;
            }
        };
        let x = &maps[k];
        let mut r = json!({
            "image": name,
            "score": x.score,
            "patch_grid": x.patch_map.grid,
            "patch_map": x.patch_map.values,
        });
        if let Some(o) = occlusion.get(k) {
            r["occlusion"] = json!({"grid": o.grid[0], "drop": o.values});
        }
        if let Some(dir) = &a.out_dir {
            let crop = ex::crop_rgb(one(k), s, m.preprocessor());
            let mut files = Vec::new();
            for (kind, map) in [
                ("patch", Some(&x.patch_map)),
                ("occlusion", occlusion.get(k)),
            ] {
                if let Some(map) = map {
                    let img = ex::render_overlay(&crop, map, 0.55);
                    let file = ex::write_png(dir, &ex::picture_name(path, i, kind), &img)?;
                    files.push(file.display().to_string());
                }
            }
            r["files"] = json!(files);
        }
        results.push(r);
    }
    if a.json {
        println!(
            "{}",
            json_line(&json!({"prompt": a.prompt, "results": results}))?
        );
    } else {
        print_explanations(&a.prompt, &results);
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be explained (see their errors above)",
            a.images.len()
        );
    }
    Ok(())
}

/// The human form of `explain`'s results: per image its score, where the patch map peaks and
/// dips, and the occlusion map as a table.
fn print_explanations(prompt: &str, results: &[serde_json::Value]) {
    println!("prompt: {}", shown(prompt));
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    for r in results {
        let image = shown(r["image"].as_str().unwrap_or_default()).into_owned();
        if let Some(e) = r["error"].as_str() {
            println!("{image}: error: {}", shown(e));
            continue;
        }
        let (map, gw) = (
            floats(&r["patch_map"]),
            r["patch_grid"][1].as_u64().unwrap_or(1) as usize,
        );
        let at = |i: usize| format!("row {}, col {}", i / gw.max(1), i % gw.max(1));
        let (lo, hi) = map.iter().enumerate().fold((0, 0), |(lo, hi), (i, &v)| {
            (
                if v < map[lo] { i } else { lo },
                if v > map[hi] { i } else { hi },
            )
        });
        println!(
            "{image}: score {:.4}",
            r["score"].as_f64().unwrap_or(f64::NAN)
        );
        if !map.is_empty() {
            println!(
                "  patch map {}x{}: highest {:.2} at {}, lowest {:.2} at {}",
                r["patch_grid"][0],
                gw,
                map[hi],
                at(hi),
                map[lo],
                at(lo)
            );
        }
        if let Some(g) = r["occlusion"]["grid"].as_u64() {
            println!("  occlusion {g}x{g} (score drop when the cell is greyed out):");
            for row in floats(&r["occlusion"]["drop"]).chunks(g as usize) {
                let cells: Vec<String> = row.iter().map(|v| format!("{v:>7.2}")).collect();
                println!("  {}", cells.join(""));
            }
        }
        for f in r["files"].as_array().into_iter().flatten() {
            println!("  wrote {}", shown(f.as_str().unwrap_or_default()));
        }
    }
}
