//! Bad input gets a clear error that names the problem, never a panic: corrupt or truncated
//! weights, wrong shapes, missing tensors, unsupported configs, undecodable or huge images.

mod common;
use common::*;
use sciscore::{DirSource, ImageInput, Model};
use serde_json::Value;

const FC1: &str = "vision_model.encoder.layers.0.mlp.fc1.weight";

#[test]
fn truncated_weights() {
    let d = copy_model("tiny224");
    let p = d.path().join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let m = load_err(d.path());
    assert!(
        m.contains("model.safetensors") && m.contains("truncated"),
        "{m}"
    );
}

#[test]
fn header_length_past_the_end() {
    let d = copy_model("tiny224");
    let p = d.path().join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    let huge = b.len() as u64 * 4;
    b[..8].copy_from_slice(&huge.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let m = load_err(d.path());
    assert!(
        m.contains("header length") && m.contains("past the end"),
        "{m}"
    );
}

#[test]
fn garbage_header() {
    let d = copy_model("tiny224");
    let p = d.path().join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    b[8] = b'#';
    std::fs::write(&p, &b).unwrap();
    let m = load_err(d.path());
    assert!(m.contains("not valid JSON"), "{m}");
}

#[test]
fn overlapping_offsets() {
    let d = copy_model("tiny224");
    let p = d.path().join("model.safetensors");
    let (mut h, data) = split(&p);
    let (a, b) = {
        let o = h[FC1]["data_offsets"].as_array().unwrap();
        (o[0].as_u64().unwrap(), o[1].as_u64().unwrap())
    };
    // Move another tensor of the same size onto fc1's bytes.
    let other = "vision_model.encoder.layers.1.mlp.fc1.weight";
    h.get_mut(other).unwrap()["data_offsets"] = serde_json::json!([a + 4, b + 4]);
    join(&p, &h, &data);
    let m = load_err(d.path());
    assert!(m.contains("overlap"), "{m}");
}

#[test]
fn missing_tensor_is_named() {
    let d = copy_model("tiny224");
    let p = d.path().join("model.safetensors");
    let (mut h, data) = split(&p);
    h.remove(FC1);
    join(&p, &h, &data);
    let m = load_err(d.path());
    assert!(m.contains(FC1) && m.contains("missing"), "{m}");
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let d = copy_model("tiny224");
    let p = d.path().join("model.safetensors");
    let (mut h, data) = split(&p);
    h.get_mut(FC1).unwrap()["shape"] = serde_json::json!([64, 128]); // stored (128, 64)
    join(&p, &h, &data);
    let m = load_err(d.path());
    assert!(
        m.contains(FC1) && m.contains("[64, 128]") && m.contains("[128, 64]"),
        "{m}"
    );
}

#[test]
fn shape_byte_length_mismatch() {
    let d = copy_model("tiny224");
    let p = d.path().join("model.safetensors");
    let (mut h, data) = split(&p);
    h.get_mut(FC1).unwrap()["shape"] = serde_json::json!([128, 65]);
    join(&p, &h, &data);
    let m = load_err(d.path());
    assert!(m.contains(FC1) && m.contains("needs"), "{m}");
}

#[test]
fn missing_shard_and_zero_byte_file() {
    let d = copy_model("odd");
    std::fs::remove_file(d.path().join("model-00002-of-00003.safetensors")).unwrap();
    let m = load_err(d.path());
    assert!(m.contains("model-00002-of-00003.safetensors"), "{m}");

    let d = copy_model("tiny224");
    std::fs::write(d.path().join("model.safetensors"), b"").unwrap();
    let m = load_err(d.path());
    assert!(m.contains("0 bytes"), "{m}");
}

#[test]
fn unknown_hidden_act() {
    let d = copy_model("tiny224");
    let p = d.path().join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    c["vision_config"]["hidden_act"] = "gelu_new".into();
    std::fs::write(&p, c.to_string()).unwrap();
    let m = load_err(d.path());
    assert!(
        m.contains("vision_config.hidden_act") && m.contains("gelu_new"),
        "{m}"
    );
}

#[test]
fn missing_files_say_what_to_do() {
    let d = copy_model("tiny224");
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    std::fs::write(d.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let m = load_err(d.path());
    assert!(
        m.contains("safetensors") && m.contains("save_pretrained"),
        "{m}"
    );

    let d = copy_model("tiny224");
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    assert!(load_err(d.path()).contains("config.json"));
    assert!(DirSource::new(d.path().join("nope")).is_err());
}

fn score_err(model: &Model, name: &str, bytes: &[u8]) -> String {
    let good = std::fs::read(fixtures().join("images/tiny.png")).unwrap();
    let imgs = [
        ImageInput {
            name: "tiny.png",
            bytes: &good,
        },
        ImageInput { name, bytes },
    ];
    match pollster::block_on(model.score("a cat", &imgs)) {
        Ok(_) => panic!("scoring {name} should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_images_are_named_errors_and_the_model_still_works() {
    let model = load("tiny224");
    let m = score_err(&model, "empty.png", b"");
    assert!(m.contains("empty.png"), "{m}");
    let m = score_err(&model, "notes.png", b"this is a text file, not an image\n");
    assert!(m.contains("notes.png"), "{m}");
    // A BMP header that claims 40000 x 40000 pixels (4.8 GB decoded) and carries no data.
    let mut bmp = Vec::new();
    bmp.extend(b"BM");
    bmp.extend(&(54u32).to_le_bytes());
    bmp.extend(&[0u8; 4]);
    bmp.extend(&(54u32).to_le_bytes());
    bmp.extend(&(40u32).to_le_bytes());
    bmp.extend(&(40000i32).to_le_bytes());
    bmp.extend(&(40000i32).to_le_bytes());
    bmp.extend(&(1u16).to_le_bytes());
    bmp.extend(&(24u16).to_le_bytes());
    bmp.extend(&[0u8; 24]);
    let m = score_err(&model, "bomb.bmp", &bmp);
    assert!(m.contains("bomb.bmp") || m.contains("pixels"), "{m}");
    // The model is unharmed: the good image still scores.
    let good = std::fs::read(fixtures().join("images/tiny.png")).unwrap();
    let ok = pollster::block_on(model.score(
        "a cat",
        &[ImageInput {
            name: "tiny.png",
            bytes: &good,
        }],
    ))
    .unwrap();
    assert_eq!(ok[0].prob, 1.0);
}

#[test]
fn an_unreadable_image_has_its_own_error_and_the_others_score_without_it() {
    let model = load("tiny224");
    let read = |n: &str| std::fs::read(fixtures().join("images").join(n)).unwrap();
    let (a, b) = (read("tiny.png"), read("rgb_gradient.png"));
    let bad = b"this is a text file, not an image\n".to_vec();
    let imgs = [
        ImageInput {
            name: "tiny.png",
            bytes: &a,
        },
        ImageInput {
            name: "notes.png",
            bytes: &bad,
        },
        ImageInput {
            name: "rgb_gradient.png",
            bytes: &b,
        },
    ];
    let prompts = ["a cat", "a glass of water"];
    let s = pollster::block_on(model.score_each(&prompts, &imgs)).unwrap();
    let err = s.get(0, 1).unwrap_err().to_string();
    assert!(err.contains("notes.png"), "{err}");
    assert_eq!(s.spread(&s.matrix.scores)[1][1], None);
    // The others score exactly as they do alone; their probabilities are over them alone.
    let alone = pollster::block_on(model.score_matrix(&prompts, &[imgs[0], imgs[2]])).unwrap();
    assert_eq!(s.matrix, alone);
    assert_eq!(s.get(1, 2).unwrap().score, alone.scores[1][1]);
    // The strict form fails with that image's error, as `score_matrix` does.
    let strict = s.clone().into_matrix().unwrap_err().to_string();
    assert_eq!(strict, err);
    let m = pollster::block_on(model.score_matrix(&prompts, &imgs)).unwrap_err();
    assert_eq!(m.to_string(), err);
    // Images the caller preprocessed take the same path.
    let pixels: Vec<_> = imgs.iter().map(|im| model.pixels(*im)).collect();
    let p = pollster::block_on(model.score_each_pixels(&prompts, pixels)).unwrap();
    assert_eq!(p.matrix, alone);
    assert_eq!(p.get(0, 1).unwrap_err().to_string(), err);
}

#[test]
fn over_long_prompts_are_truncated_not_rejected() {
    let model = load("odd");
    let long = "the photon travels at the speed of light ".repeat(60);
    let ids = model.tokenize(&long).unwrap();
    assert_eq!(ids.len(), 77);
    let good = std::fs::read(fixtures().join("images/tiny.png")).unwrap();
    let s = pollster::block_on(model.score(
        &long,
        &[ImageInput {
            name: "tiny.png",
            bytes: &good,
        }],
    ))
    .unwrap();
    assert!(s[0].score.is_finite());
}

fn sciscore(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sciscore"))
        .args(args)
        .output()
        .unwrap()
}

/// A one-line manifest next to nothing else: the flag checks come before any line is read.
fn one_line_manifest() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.jsonl");
    let img = fixtures().join("images/rgb_gradient.png");
    let line = serde_json::json!({"prompt": "a cat", "image": img.to_str().unwrap()});
    std::fs::write(&m, line.to_string() + "\n").unwrap();
    (dir, m)
}

#[test]
fn numeric_flags_are_bounded_and_the_error_says_the_bound() {
    let model = model_dir("tiny224");
    let model = model.to_str().unwrap();
    let (_dir, manifest) = one_line_manifest();
    let manifest = manifest.to_str().unwrap();
    let data = fixtures().join("science_t2i");
    let data = data.to_str().unwrap();
    let batch = [
        "batch",
        "--backend",
        "cpu",
        "--model",
        model,
        "--manifest",
        manifest,
    ];
    let bench = ["bench", "--backend", "cpu", "--random", "tiny"];
    let eval = [
        "eval",
        "--backend",
        "cpu",
        "--model",
        model,
        "--dataset",
        data,
    ];
    // (command, flag, value, the bound the error must state)
    let cases: [(&[&str], &str, &str, &str); 10] = [
        (&batch, "--batch", "18446744073709551615", "1..=1024"),
        (&batch, "--batch", "1000000000", "1..=1024"),
        (&batch, "--batch", "1e9", "1..=1024"),
        (&batch, "--batch", "0", "1..=1024"),
        (&bench, "--batch", "18446744073709551615", "1..=1024"),
        (&bench, "--layers", "0", "1..=1024"),
        (&bench, "--layers", "1025", "1..=1024"),
        (&bench, "--iters", "0", "1..=1000"),
        (&eval, "--limit", "0", ">= 1"),
        (&eval, "--limit", "99999999999999999999999", ">= 1"),
    ];
    for (cmd, flag, value, bound) in cases {
        let mut args = cmd.to_vec();
        args.extend([flag, value]);
        let o = sciscore(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(bound) && !err.contains("panicked"),
            "{} {flag} {value}: {err}",
            cmd[0]
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn usage_errors_are_one_line_naming_the_argument() {
    for (args, names) in [
        (&["score", "--modle", "x", "a.png"][..], "--modle"),
        (&["score", "--model", "x"][..], "<IMAGES>"),
        (&["frobnicate"][..], "frobnicate"),
        (
            &[
                "score",
                "--backend",
                "tpu",
                "--model",
                "x",
                "--prompt",
                "p",
                "a.png",
            ][..],
            "tpu",
        ),
    ] {
        let o = sciscore(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(names),
            "{args:?}: {err}"
        );
    }
    // Help still prints in full, to stdout, with success.
    let o = sciscore(&["score", "--help"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() > 5);
}

#[test]
fn bench_layers_past_the_geometry_use_its_own() {
    let o = sciscore(&[
        "bench",
        "--backend",
        "cpu",
        "--random",
        "tiny",
        "--iters",
        "1",
        "--layers",
        "5",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"], serde_json::json!([2, 2]), "{v}");
    assert!(err.contains("--layers 5 is more than tiny has"), "{err}");
}

#[test]
fn a_manifest_must_be_a_regular_file() {
    let model = model_dir("tiny224");
    let dir = tempfile::tempdir().unwrap();
    let mut cases = vec![(dir.path().to_str().unwrap(), "is a directory")];
    // /dev/zero is the case that aborted (one endless line); /dev/null is the same kind of
    // file and cannot exhaust memory if this check ever regresses.
    if cfg!(unix) {
        cases.push(("/dev/null", "not a regular file"));
    }
    for (manifest, want) in cases {
        let o = sciscore(&[
            "batch",
            "--backend",
            "cpu",
            "--model",
            model.to_str().unwrap(),
            "--manifest",
            manifest,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains(manifest) && err.contains(want), "{err}");
    }
}
