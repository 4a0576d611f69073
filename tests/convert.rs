//! `sciscore convert --dtype f16`: the converted folder loads, scores the fixture images within the
//! f16 tolerances against the transformers goldens, is about half the size, and bad `--out`
//! folders are refused before anything is written.
//!
//! That the converted tensors equal `CLIPModel.from_pretrained(dir).half()` value for value, and
//! that `transformers` loads the folder, was checked with transformers 4.50.3 (0 of 78 tensors
//! differ on tiny224 and bf16); CI runs no Python.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// f16 weights: embeddings against the f32 goldens (the GPU path's f16 tolerance).
const EMBED_COS_F16: f64 = 0.9995;
/// f16 weights: |score difference| (score = exp(logit_scale) cos, ~100 cos).
const SCORE_ABS_F16: f64 = 0.1;

fn convert(model: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sciscore"))
        .args(["convert", "--dtype", "f16", "--json", "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn converted(model: &Path, out: &Path) -> Value {
    let o = convert(model, out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn convert_err(model: &Path, out: &Path) -> String {
    let o = convert(model, out);
    assert!(
        !o.status.success(),
        "converting into {} should fail",
        out.display()
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

fn dtypes(header: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| (k.clone(), v["dtype"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn f16_folders_load_and_score_within_the_f16_tolerance() {
    for m in MODELS {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("f16");
        let summary = converted(&model_dir(m), &out);
        let (header, data) = split(&out.join("model.safetensors"));
        assert!(
            dtypes(&header).iter().all(|(_, d)| d == "F16"),
            "{m}: {header:?}"
        );
        assert_eq!(summary["kept_f32"], Value::Array(vec![]));
        let floats_in: u64 = summary["bytes_in"].as_u64().unwrap();
        if m == "tiny224" {
            // An f32 checkpoint halves.
            assert_eq!(data.len() as u64 * 2, floats_in, "{m}");
        }
        let config: Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["torch_dtype"], "float16");

        let src = sciscore::DirSource::new(&out).unwrap();
        let model = pollster::block_on(sciscore::Model::load(&src, sciscore::Backend::Cpu))
            .unwrap_or_else(|e| panic!("{m}: the f16 folder loads: {e}"));
        let g = golden_json(m);
        let names = strings(&g["images"]);
        let bytes = fixture_images(&names);
        let inputs = image_inputs(&names, &bytes);
        let mut worst = 0.0f64;
        for (p, prompt) in strings(&g["prompts"]).iter().enumerate() {
            let got = pollster::block_on(model.score(prompt, &inputs)).unwrap();
            for (i, s) in got.iter().enumerate() {
                let want = g["scores"][p][i].as_f64().unwrap();
                let d = (f64::from(s.score) - want).abs();
                worst = worst.max(d);
                assert!(
                    d <= SCORE_ABS_F16,
                    "{m}: score[{p}][{i}] {} vs {want}",
                    s.score
                );
            }
        }
        let feats = pollster::block_on(model.image_embeds(&inputs)).unwrap();
        let want = golden_tensors(m);
        let (_, want) = &want["image_embeds"];
        let dim = feats[0].len();
        let mut worst_cos = 1.0f64;
        for (i, f) in feats.iter().enumerate() {
            worst_cos = worst_cos.min(cosine(f, &want[i * dim..(i + 1) * dim]));
        }
        assert!(
            worst_cos >= EMBED_COS_F16,
            "{m}: image embeds cos {worst_cos}"
        );
        eprintln!("convert {m}: f16 max |score diff| {worst:.2e}, min image cos {worst_cos:.7}");
    }
}

#[test]
fn a_tensor_beyond_f16_range_stays_f32() {
    let dir = copy_model("tiny224");
    let path = dir.path().join("model.safetensors");
    let (header, mut data) = split(&path);
    let name = "text_model.final_layer_norm.bias";
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    data[start..start + 4].copy_from_slice(&1e6f32.to_le_bytes());
    join(&path, &header, &data);
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("f16");
    let summary = converted(dir.path(), &out);
    assert_eq!(summary["kept_f32"], serde_json::json!([name]));
    let (header, _) = split(&out.join("model.safetensors"));
    for (n, d) in dtypes(&header) {
        assert_eq!(d, if n == name { "F32" } else { "F16" }, "{n}");
    }
    let src = sciscore::DirSource::new(&out).unwrap();
    pollster::block_on(sciscore::Model::load(&src, sciscore::Backend::Cpu)).unwrap();
}

#[test]
fn bad_out_folders_and_models_are_refused_and_nothing_is_left_half_written() {
    let model = model_dir("tiny224");
    let err = convert_err(&model, &model);
    assert!(
        err.contains("not empty") || err.contains("model folder"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), b"mine").unwrap();
    let err = convert_err(&model, dir.path());
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("keep.txt")).unwrap(), b"mine");

    let file = dir.path().join("keep.txt");
    let err = convert_err(&model, &file);
    assert!(err.contains("not a folder"), "{err}");

    let err = convert_err(&dir.path().join("nope"), &dir.path().join("out"));
    assert!(err.contains("nope"), "{err}");
    assert!(!dir.path().join("out").exists());

    // A NaN is found while writing: the folder gets no model.safetensors.
    let bad = copy_model("tiny224");
    let path = bad.path().join("model.safetensors");
    let (header, mut data) = split(&path);
    let name = "vision_model.post_layernorm.weight";
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    data[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    join(&path, &header, &data);
    let out = dir.path().join("out");
    let err = convert_err(bad.path(), &out);
    assert!(err.contains(name) && err.contains("NaN"), "{err}");
    assert!(!out.join("model.safetensors").exists());

    let o = Command::new(env!("CARGO_BIN_EXE_sciscore"))
        .args(["convert", "--dtype", "f8", "--model", "x", "--out", "y"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("f8"));
}
