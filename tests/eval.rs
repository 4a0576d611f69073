//! `sciscore eval` and `sciscore batch` against transformers: benchmark accuracies exactly (no
//! tolerance on counts), per-row probabilities, bad rows, manifest streaming and resume.

mod common;
use common::*;
use std::process::Command;

fn sciscore(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sciscore"))
        .args(args)
        .output()
        .unwrap()
}

fn ok_json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn backends() -> Vec<&'static str> {
    if gpu_available() {
        vec!["cpu", "gpu"]
    } else {
        vec!["cpu"]
    }
}

#[test]
fn eval_reproduces_transformers_accuracies_exactly() {
    let data = fixtures().join("science_t2i");
    for backend in backends() {
        for m in MODELS {
            let want: serde_json::Value = serde_json::from_slice(
                &std::fs::read(fixtures().join(format!("goldens/eval_{m}.json"))).unwrap(),
            )
            .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let csv = dir.path().join("rows.csv");
            let out = dir.path().join("summary.json");
            let v = ok_json(&sciscore(&[
                "eval",
                "--backend",
                backend,
                "--json",
                "--model",
                model_dir(m).to_str().unwrap(),
                "--dataset",
                data.to_str().unwrap(),
                "--csv",
                csv.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]));
            for k in [
                "rows",
                "overall_accuracy",
                "category_accuracy",
                "law_accuracy",
            ] {
                assert_eq!(v[k], want[k], "{m} on {backend}: {k}");
            }
            let saved: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
            assert_eq!(saved["overall_accuracy"], want["overall_accuracy"]);
            let text = std::fs::read_to_string(&csv).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(
                lines[0],
                "row,category,law,prob_explicit,prob_superficial,correct"
            );
            assert_eq!(lines.len() - 1, want["rows"].as_u64().unwrap() as usize);
            for (line, w) in lines[1..].iter().zip(want["per_row"].as_array().unwrap()) {
                let f: Vec<&str> = line.split(',').collect();
                assert_eq!(f[0], w["row"].to_string());
                assert_eq!(
                    (f[1], f[2]),
                    (w["category"].as_str().unwrap(), w["law"].as_str().unwrap())
                );
                let p: f64 = f[3].parse().unwrap();
                assert!(
                    (p - w["prob_explicit"].as_f64().unwrap()).abs() < 1e-3,
                    "{m} {line} vs {w}"
                );
                assert_eq!(f[5], w["correct"].to_string(), "{m}: {line}");
            }
        }
    }
}

#[test]
fn eval_limit_and_single_file() {
    let shard = fixtures().join("science_t2i/test-00000-of-00002.parquet");
    let v = ok_json(&sciscore(&[
        "eval",
        "--backend",
        "cpu",
        "--json",
        "--model",
        model_dir("odd").to_str().unwrap(),
        "--dataset",
        shard.to_str().unwrap(),
        "--limit",
        "4",
    ]));
    assert_eq!(v["rows"], 4);
}

#[test]
fn eval_bad_inputs() {
    let bad = fixtures().join("science_t2i_bad");
    let model = model_dir("tiny224");
    let out = sciscore(&[
        "eval",
        "--backend",
        "cpu",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        bad.join("missing_column.parquet").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"law\"") && err.contains("implicit_prompt"),
        "{err}"
    );

    // Row 1 has an undecodable image: reported with its row, the others still count.
    let out = sciscore(&[
        "eval",
        "--backend",
        "cpu",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        bad.join("bad_image.parquet").to_str().unwrap(),
    ]);
    let v = ok_json(&out);
    assert_eq!(v["rows"], 2);
    assert_eq!(v["errors"][0]["row"], 1);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("explicit_image"),
        "{v}"
    );
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("goldens/eval_tiny224.json")).unwrap(),
    )
    .unwrap();
    let c = [0usize, 2]
        .iter()
        .filter(|&&r| want["per_row"][r]["correct"].as_bool().unwrap())
        .count();
    assert_eq!(v["overall_accuracy"].as_f64().unwrap(), c as f64 / 2.0);

    let empty = tempfile::tempdir().unwrap();
    let out = sciscore(&[
        "eval",
        "--backend",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no .parquet files"));
}

#[test]
fn batch_streams_scores_groups_and_resumes() {
    let g = golden_json("tiny224");
    let names = strings(&g["images"]);
    let prompts = strings(&g["prompts"]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.jsonl");
    let img = |i: usize| {
        fixtures()
            .join("images")
            .join(&names[i])
            .to_str()
            .unwrap()
            .to_string()
    };
    let pairs = [
        (0usize, 0usize, "a"),
        (0, 2, "a"),
        (3, 6, "b"),
        (3, 8, "b"),
        (5, 9, "b"),
    ];
    let mut text = String::new();
    for (p, i, grp) in pairs {
        text +=
            &serde_json::json!({"prompt": prompts[p], "image": img(i), "group": grp}).to_string();
        text += "\n";
    }
    text += &serde_json::json!({"prompt": "x", "image": "does/not/exist.png"}).to_string();
    text += "\nnot json\n";
    std::fs::write(&manifest, text).unwrap();
    let out = dir.path().join("scores.jsonl");
    let model = model_dir("tiny224");
    let run = || {
        ok_json(&sciscore(&[
            "batch",
            "--backend",
            "cpu",
            "--json",
            "--batch",
            "2",
            "--model",
            model.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]))
    };
    let s = run();
    assert_eq!(
        (
            s["lines"].as_u64(),
            s["scored"].as_u64(),
            s["errors"].as_u64()
        ),
        (Some(7), Some(5), Some(2)),
        "{s}"
    );
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 7);
    for (r, (p, i, _)) in recs.iter().zip(pairs) {
        let want = g["scores"][p][i].as_f64().unwrap();
        assert!(
            (r["score"].as_f64().unwrap() - want).abs() <= SCORE_ABS_F32,
            "{r} vs {want}"
        );
    }
    assert!(recs[5]["error"].as_str().unwrap().contains("exist.png"));
    let mean_b: f64 = [(3, 6), (3, 8), (5, 9)]
        .iter()
        .map(|&(p, i)| g["scores"][p][i].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!((s["groups"]["b"]["mean_score"].as_f64().unwrap() - mean_b).abs() < 0.01);
    assert_eq!(s["groups"]["b"]["n"], 3);

    // Everything done: a rerun adds nothing.
    let s = run();
    assert_eq!(s["resumed"], 7);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 7);

    // An interrupted run (two lines lost, the last one torn) resumes where it stopped.
    let full = std::fs::read_to_string(&out).unwrap();
    let keep: Vec<&str> = full.lines().take(4).collect();
    std::fs::write(&out, keep.join("\n") + "\n{\"line\": 4, \"pro").unwrap();
    let s = run();
    assert_eq!(s["resumed"], 4);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seen: Vec<u64> = lines.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, (0..7).collect::<Vec<_>>());

    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let o = sciscore(&[
        "batch",
        "--backend",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--manifest",
        empty.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("empty"));
}
