//! The `sciscore` binary: the JSON of DESIGN.md's CLI contract, and one-line errors.

mod common;
use common::*;
use std::process::Command;

fn sciscore(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sciscore"))
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn score_json_in_input_order() {
    let g = golden_json("odd");
    let names = strings(&g["images"]);
    let prompt = strings(&g["prompts"])[0].clone();
    // Two images; probabilities are a softmax over just these two.
    let (a, b) = (
        fixtures().join("images").join(&names[2]),
        fixtures().join("images").join(&names[0]),
    );
    let model = model_dir("odd");
    let out = sciscore(&[
        "score",
        "--backend",
        "cpu",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        &prompt,
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    let v = json_of(&out);
    assert_eq!(v["prompt"], prompt.as_str());
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["image"], a.to_str().unwrap());
    assert_eq!(r[1]["image"], b.to_str().unwrap());
    for (res, i) in r.iter().zip([2, 0]) {
        let want = g["scores"][0][i].as_f64().unwrap();
        assert!(
            (res["score"].as_f64().unwrap() - want).abs() <= SCORE_ABS_F32,
            "{res} vs {want}"
        );
    }
    let (s0, s1) = (
        g["scores"][0][2].as_f64().unwrap(),
        g["scores"][0][0].as_f64().unwrap(),
    );
    let p0 = 1.0 / (1.0 + (s1 - s0).exp());
    assert!((r[0]["prob"].as_f64().unwrap() - p0).abs() < 1e-3);
    let total: f64 = r.iter().map(|x| x["prob"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5);
}

#[test]
fn embed_json_is_unnormalized_features_and_raw_logit_scale() {
    let g = golden_json("tiny224");
    let t = golden_tensors("tiny224");
    let names = strings(&g["images"]);
    let prompts = strings(&g["prompts"]);
    let img = fixtures().join("images").join(&names[0]);
    let model = model_dir("tiny224");
    let out = sciscore(&[
        "embed",
        "--backend",
        "cpu",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--text",
        &prompts[1],
        "--text",
        &prompts[3],
        "--image",
        img.to_str().unwrap(),
    ]);
    let v = json_of(&out);
    let proj = 40;
    let te: Vec<Vec<f32>> = serde_json::from_value(v["text_embeds"].clone()).unwrap();
    let ie: Vec<Vec<f32>> = serde_json::from_value(v["image_embeds"].clone()).unwrap();
    assert_eq!((te.len(), ie.len()), (2, 1));
    for (row, p) in te.iter().zip([1, 3]) {
        assert_close(
            "text_embeds",
            row,
            &t["text_embeds"].1[p * proj..][..proj],
            HIDDEN_REL_F32,
        );
    }
    assert!(cosine(&ie[0], &t["image_embeds"].1[..proj]) >= EMBED_COS_F32);
    assert_eq!(
        v["logit_scale"].as_f64().unwrap(),
        g["logit_scale"].as_f64().unwrap()
    );
}

#[test]
fn errors_are_one_line_on_stderr_with_nonzero_exit() {
    let out = sciscore(&[
        "score",
        "--backend",
        "cpu",
        "--model",
        "/nonexistent/model",
        "--prompt",
        "x",
        "a.png",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error:"), "{err}");

    let model = model_dir("tiny224");
    let bad = fixtures().join("prompts.json"); // not an image
    let out = sciscore(&[
        "score",
        "--backend",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "x",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("prompts.json"), "{err}");
}
