//! Region maps (`sciscore::explain`, `sciscore explain`) against the transformers goldens of
//! `scripts/make_fixtures.py` (`goldens/regions_<model>.json`): patch maps and occlusion maps on
//! the CPU (f32 contract) and on the GPU (f16 weights; lavapipe in CI), and the CLI's JSON,
//! errors and pictures.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

fn regions(model: &str) -> Value {
    let p = fixtures()
        .join("goldens")
        .join(format!("regions_{model}.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The golden pixel values of `image` (bf16 shares tiny224's preprocessor and pixels).
fn golden_pixels(model: &str, image: &str) -> Vec<f32> {
    let src = if model == "bf16" { "tiny224" } else { model };
    golden_tensors(src)[&format!("pixel_values.{image}")]
        .1
        .clone()
}

fn load_on(model: &str, backend: sciscore::Backend) -> sciscore::Model {
    let src = sciscore::DirSource::new(model_dir(model)).unwrap();
    pollster::block_on(sciscore::Model::load(&src, backend)).unwrap()
}

/// Checks every golden patch map and occlusion map of every fixture model on `backend`, within
/// the scores' tolerance `tol`; returns the largest differences (patch map, occlusion).
fn check_goldens(backend: sciscore::Backend, tol: f64) {
    for m in MODELS {
        let model = load_on(m, backend);
        let (g, r) = (golden_json(m), regions(m));
        let prompts = strings(&g["prompts"]);
        let entries = r["entries"].as_array().unwrap();
        let (mut worst_map, mut worst_occ) = (0.0f64, 0.0f64);
        for (pi, prompt) in prompts.iter().enumerate() {
            let mine: Vec<&Value> = entries
                .iter()
                .filter(|e| e["prompt"].as_u64() == Some(pi as u64))
                .collect();
            if mine.is_empty() {
                continue;
            }
            // All of a prompt's images in one batched pass.
            let pixels: Vec<f32> = mine
                .iter()
                .flat_map(|e| golden_pixels(m, e["image"].as_str().unwrap()))
                .collect();
            let got = pollster::block_on(model.patch_maps(prompt, &pixels, mine.len())).unwrap();
            for (e, x) in mine.iter().zip(&got) {
                let what = format!("{m} {backend:?} prompt {pi} {}", e["image"]);
                let ws = e["score"].as_f64().unwrap();
                assert!(
                    (x.score as f64 - ws).abs() <= tol,
                    "{what}: score {} vs {ws}",
                    x.score
                );
                let grid: Vec<usize> = e["patch_grid"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(x.patch_map.grid.to_vec(), grid, "{what}: patch grid");
                let (d, i) = max_abs(&x.patch_map.values, &floats(&e["patch_map"]));
                assert!(
                    d <= tol,
                    "{what}: patch_map[{i}] {} vs golden {}, max |diff| {d:.3e}",
                    x.patch_map.values[i],
                    floats(&e["patch_map"])[i]
                );
                worst_map = worst_map.max(d);
                for occ in e["occlusion"].as_array().unwrap() {
                    let grid = occ["grid"].as_u64().unwrap() as usize;
                    let one = golden_pixels(m, e["image"].as_str().unwrap());
                    let mut calls = Vec::new();
                    let map = pollster::block_on(model.occlusion_map(
                        prompt,
                        &one,
                        grid,
                        x.score,
                        &mut |done, total| {
                            calls.push((done, total));
                            true
                        },
                    ))
                    .unwrap();
                    assert_eq!(map.grid, [grid, grid]);
                    assert_eq!(calls.last(), Some(&(grid * grid, grid * grid)));
                    let want = floats(&occ["drop"]);
                    let (d, i) = max_abs(&map.values, &want);
                    assert!(
                        d <= tol,
                        "{what}: occlusion G={grid} drop[{i}] {} vs golden {}, max |diff| {d:.3e}",
                        map.values[i],
                        want[i]
                    );
                    worst_occ = worst_occ.max(d);
                }
            }
        }
        eprintln!(
            "explain {m} {backend:?}: max |patch map diff| {worst_map:.2e}, max |occlusion diff| {worst_occ:.2e}"
        );
    }
}

#[test]
fn region_maps_match_transformers_on_the_cpu() {
    check_goldens(sciscore::Backend::Cpu, SCORE_ABS_F32);
}

#[test]
fn region_maps_match_transformers_on_the_gpu() {
    if !gpu_available() {
        return;
    }
    check_goldens(sciscore::Backend::Gpu, SCORE_ABS_F16);
}

/// The patch map's score is the plain score, and the occlusion map stops when asked to.
#[test]
fn patch_map_score_is_the_score_and_occlusion_can_be_cancelled() {
    let model = load("odd");
    let pixels = golden_pixels("odd", "rgb_gradient.png");
    let prompt = "an apple falling from a tree";
    let x = pollster::block_on(model.patch_maps(prompt, &pixels, 1)).unwrap();
    let plain = pollster::block_on(model.score_pixels(prompt, &pixels, 1)).unwrap();
    assert_eq!(x[0].score, plain[0].score);
    let mut calls = 0;
    let r = pollster::block_on(
        model.occlusion_map(prompt, &pixels, 7, x[0].score, &mut |_, _| {
            calls += 1;
            false
        }),
    );
    assert!(matches!(r, Err(sciscore::Error::Cancelled)), "{r:?}");
    assert_eq!(calls, 1);
    for bad in [0, 33] {
        let e =
            pollster::block_on(model.occlusion_map(prompt, &pixels, bad, 0.0, &mut |_, _| true))
                .unwrap_err()
                .to_string();
        assert!(e.contains("occlusion grid"), "{e}");
    }
}

// ---- the CLI ----

/// `sciscore explain --backend cpu --model <fixture model odd> ARGS...`
fn explain(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sciscore"))
        .args(["explain", "--backend", "cpu", "--model"])
        .arg(model_dir("odd"))
        .args(args)
        .output()
        .unwrap()
}

fn image(name: &str) -> String {
    fixtures()
        .join("images")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn cli_explain_json_matches_goldens() {
    let (g, r) = (golden_json("odd"), regions("odd"));
    let prompt = strings(&g["prompts"])[0].clone();
    let (a, b) = (image("photo_rgb.jpg"), image("rgb_gradient.png"));
    let out = explain(&["--json", "--prompt", &prompt, "--occlusion", "7", &a, &b]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["prompt"], prompt.as_str());
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (res, (path, name)) in results
        .iter()
        .zip([(&a, "photo_rgb.jpg"), (&b, "rgb_gradient.png")])
    {
        assert_eq!(res["image"], path.as_str());
        let e = r["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["prompt"] == 0 && e["image"] == name)
            .unwrap();
        // From the image files: preprocessing is within the scores' tolerance of transformers.
        let ws = e["score"].as_f64().unwrap();
        assert!((res["score"].as_f64().unwrap() - ws).abs() <= SCORE_ABS_F32);
        assert_eq!(res["patch_grid"], e["patch_grid"]);
        let (d, _) = max_abs(&floats(&res["patch_map"]), &floats(&e["patch_map"]));
        assert!(d <= SCORE_ABS_F32, "{name}: patch map max |diff| {d}");
        assert_eq!(res["occlusion"]["grid"], 7);
        let drop = floats(&res["occlusion"]["drop"]);
        assert_eq!(drop.len(), 49);
        if let Some(occ) = e["occlusion"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["grid"] == 7)
        {
            let (d, _) = max_abs(&drop, &floats(&occ["drop"]));
            assert!(d <= SCORE_ABS_F32, "{name}: occlusion max |diff| {d}");
        }
    }
    // Without --occlusion there is no occlusion key.
    let out = explain(&["--json", "--prompt", &prompt, &b]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["results"][0].get("occlusion").is_none(), "{v}");
}

#[test]
fn cli_explain_rejects_bad_grids_in_one_line() {
    for bad in ["0", "33", "abc", "-1"] {
        let out = explain(&["--prompt", "x", "--occlusion", bad, &image("tiny.png")]);
        assert!(!out.status.success(), "--occlusion {bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("1..=32"), "--occlusion {bad}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn cli_explain_reports_an_undecodable_image_and_explains_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"definitely not an image").unwrap();
    let good = image("tiny.png");
    let out = explain(&[
        "--json",
        "--prompt",
        "x",
        "--occlusion",
        "2",
        bad.to_str().unwrap(),
        &good,
    ]);
    // Like `score` with an undecodable image: a non-zero exit and a one-line error; the JSON of
    // the images that could be explained is still printed.
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("1 of 2 images"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["image"], bad.to_str().unwrap());
    assert!(
        r[0]["error"].as_str().unwrap().contains("broken.png"),
        "{}",
        r[0]
    );
    assert!(r[0].get("score").is_none());
    assert_eq!(r[1]["image"], good.as_str());
    assert_eq!(r[1]["occlusion"]["drop"].as_array().unwrap().len(), 4);
}

#[test]
fn cli_explain_writes_pictures_into_out_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("new/pictures");
    // Two inputs with one file stem get distinct pictures.
    let copy = dir.path().join("tiny.png");
    std::fs::copy(image("tiny.png"), &copy).unwrap();
    let out = explain(&[
        "--prompt",
        "x",
        "--occlusion",
        "3",
        "--out-dir",
        out_dir.to_str().unwrap(),
        &image("tiny.png"),
        copy.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "tiny-0-occlusion.png",
            "tiny-0-patch.png",
            "tiny-1-occlusion.png",
            "tiny-1-patch.png"
        ]
    );
    let png = std::fs::read(out_dir.join("tiny-0-patch.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A link planted where a picture goes is refused, not followed.
    #[cfg(unix)]
    {
        let target = dir.path().join("elsewhere.png");
        std::fs::write(&target, b"keep").unwrap();
        std::fs::remove_file(out_dir.join("tiny-0-patch.png")).unwrap();
        std::os::unix::fs::symlink(&target, out_dir.join("tiny-0-patch.png")).unwrap();
        let out = explain(&[
            "--prompt",
            "x",
            "--out-dir",
            out_dir.to_str().unwrap(),
            &image("tiny.png"),
        ]);
        assert!(!out.status.success());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
