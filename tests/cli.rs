//! The `sciscore` binary: the JSON of the CLI contract (docs/contracts.md), and one-line errors.

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

/// `sciscore score --backend cpu [--json]` on the tiny224 model.
fn score_cpu(prompts: &[&str], images: &[std::path::PathBuf], json: bool) -> std::process::Output {
    score_on("cpu", prompts, images, json)
}

fn score_on(
    backend: &str,
    prompts: &[&str],
    images: &[std::path::PathBuf],
    json: bool,
) -> std::process::Output {
    let model = model_dir("tiny224");
    let mut args = vec![
        "score",
        "--backend",
        backend,
        "--model",
        model.to_str().unwrap(),
    ];
    if json {
        args.push("--json");
    }
    for p in prompts {
        args.extend(["--prompt", p]);
    }
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    sciscore(&args)
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn score_several_prompts_gives_the_matrix_and_one_prompt_stays_as_before() {
    let g = golden_json("tiny224");
    let all_names = strings(&g["images"]);
    let all_prompts = strings(&g["prompts"]);
    // Golden indices: 3 prompts x 4 images (PNG, GIF, WebP decode bit-exactly with PIL).
    let (pi, ii) = ([1usize, 0, 2], [0usize, 8, 6, 3]);
    let prompts: Vec<&str> = pi.iter().map(|&p| all_prompts[p].as_str()).collect();
    let images: Vec<_> = ii
        .iter()
        .map(|&i| fixtures().join("images").join(&all_names[i]))
        .collect();
    let v = json_of(&score_cpu(&prompts, &images, true));
    assert_eq!(keys(&v), ["matrix", "prompt", "prompts", "results"]);
    assert_eq!(v["prompts"], serde_json::json!(prompts));
    let m = &v["matrix"];
    assert_eq!(
        keys(m),
        ["probs_over_images", "probs_over_prompts", "scores"]
    );
    let rows = |k: &str| -> Vec<Vec<f64>> {
        let r = m[k].as_array().unwrap();
        assert_eq!(r.len(), prompts.len(), "{k}: one row per prompt");
        r.iter().map(f64s).collect()
    };
    let (s, pim, ppr) = (
        rows("scores"),
        rows("probs_over_images"),
        rows("probs_over_prompts"),
    );
    for (p, &gp) in pi.iter().enumerate() {
        assert_eq!(s[p].len(), images.len(), "one column per image");
        for (i, &gi) in ii.iter().enumerate() {
            let want = g["scores"][gp][gi].as_f64().unwrap();
            assert!(
                (s[p][i] - want).abs() <= SCORE_ABS_F32,
                "prompt {p} image {i}: {} vs transformers {want}",
                s[p][i]
            );
        }
        let total: f64 = pim[p].iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "row {p} sums to {total}");
    }
    for i in 0..images.len() {
        let col: Vec<f64> = ppr.iter().map(|r| r[i]).collect();
        let total: f64 = col.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "column {i} sums to {total}");
        // Softmax over the prompts of this image's golden scores.
        let gs: Vec<f64> = pi
            .iter()
            .map(|&gp| g["scores"][gp][ii[i]].as_f64().unwrap())
            .collect();
        let max = gs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = gs.iter().map(|x| (x - max).exp()).sum();
        for (p, x) in gs.iter().enumerate() {
            let want = (x - max).exp() / sum;
            assert!(
                (col[p] - want).abs() < 1e-3,
                "prob over prompts ({p}, {i}): {} vs {want}",
                col[p]
            );
        }
    }

    // Each row is exactly what that prompt alone gives; alone, the JSON is today's.
    for (p, prompt) in prompts.iter().enumerate() {
        let one = json_of(&score_cpu(&[prompt], &images, true));
        assert_eq!(keys(&one), ["prompt", "results"], "one prompt: no matrix");
        let r = one["results"].as_array().unwrap();
        for (i, res) in r.iter().enumerate() {
            assert_eq!(keys(res), ["image", "prob", "score"]);
            assert_eq!(res["image"], images[i].to_str().unwrap());
            assert_eq!(res["score"].as_f64().unwrap(), s[p][i], "({p}, {i})");
            assert_eq!(res["prob"].as_f64().unwrap(), pim[p][i], "({p}, {i})");
        }
        if p == 0 {
            assert_eq!(v["prompt"], one["prompt"]);
            assert_eq!(
                v["results"], one["results"],
                "results describe the first prompt"
            );
        }
    }

    // Text: the prompts and images numbered, then one table row per prompt, with one best image
    // per row (*) and one best prompt per column (+).
    let out = score_cpu(&prompts, &images, false);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for (p, prompt) in prompts.iter().enumerate() {
        assert!(text.contains(&format!("P{}  {prompt}\n", p + 1)), "{text}");
    }
    for (i, im) in images.iter().enumerate() {
        assert!(
            text.contains(&format!("I{}  {}\n", i + 1, im.display())),
            "{text}"
        );
    }
    let table: Vec<&str> = text.lines().filter(|l| l.contains(" | ")).collect();
    assert_eq!(
        table.len(),
        1 + prompts.len(),
        "header and a row per prompt: {text}"
    );
    let cells = |l: &str| {
        l.split(" | ")
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(table[0]),
        ["I1", "I2", "I3", "I4"].map(|c| format!("{c:<29}"))
    );
    let mut plus = vec![0; images.len()];
    for (p, row) in table[1..].iter().enumerate() {
        assert!(row.starts_with(&format!("P{} ", p + 1)), "{row}");
        let c = cells(row);
        assert_eq!(c.len(), images.len(), "{row}");
        assert_eq!(c.iter().filter(|x| x.contains('*')).count(), 1, "{row}");
        let best = (0..images.len())
            .max_by(|&a, &b| s[p][a].total_cmp(&s[p][b]))
            .unwrap();
        assert!(
            c[best].contains('*'),
            "best image of prompt {p} is {best}: {row}"
        );
        for (i, x) in c.iter().enumerate() {
            assert!(
                x.trim_start().starts_with(&format!("{:.4}", s[p][i])),
                "{x}"
            );
            plus[i] += x.contains('+') as usize;
        }
    }
    assert_eq!(
        plus,
        vec![1; images.len()],
        "one best prompt per image: {text}"
    );
}

#[test]
fn score_needs_a_prompt() {
    let img = fixtures().join("images/tiny.png");
    let out = score_cpu(&[], &[img], true);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prompt"));
}

/// The GPU's f16 weights move tiny224's scores by up to this (src/testing/end_to_end.rs SCORE_ABS_F16).
const SCORE_ABS_F16: f64 = 0.1;
/// Several prompts go through the GPU text tower in one batch: each row must be what the prompt
/// gives alone, up to the summation order of another batch shape (lavapipe: bit for bit).
const BATCH_ABS: f64 = 1e-3;

#[test]
fn score_several_prompts_on_the_gpu() {
    if !gpu_available() {
        return;
    }
    let g = golden_json("tiny224");
    let all_names = strings(&g["images"]);
    let all_prompts = strings(&g["prompts"]);
    // Prompts of different token lengths in one text batch.
    let (pi, ii) = ([0usize, 5, 11], [0usize, 6]);
    let prompts: Vec<&str> = pi.iter().map(|&p| all_prompts[p].as_str()).collect();
    let images: Vec<_> = ii
        .iter()
        .map(|&i| fixtures().join("images").join(&all_names[i]))
        .collect();
    let v = json_of(&score_on("gpu", &prompts, &images, true));
    for (p, prompt) in prompts.iter().enumerate() {
        let row = f64s(&v["matrix"]["scores"][p]);
        let one = json_of(&score_on("gpu", &[prompt], &images, true));
        for (i, res) in one["results"].as_array().unwrap().iter().enumerate() {
            let alone = res["score"].as_f64().unwrap();
            assert!(
                (row[i] - alone).abs() <= BATCH_ABS,
                "({p}, {i}): {} in the matrix, {alone} alone",
                row[i]
            );
            let want = g["scores"][pi[p]][ii[i]].as_f64().unwrap();
            assert!(
                (row[i] - want).abs() <= SCORE_ABS_F16,
                "({p}, {i}): {} vs transformers {want}",
                row[i]
            );
        }
    }
}
