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
    let recs: Vec<serde_json::Value> = records(&out);
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
    let lines: Vec<serde_json::Value> = records(&out);
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

/// Runs the CLI, killing it after `secs` (see [`run_bounded`]).
fn sciscore_bounded(args: &[&str], secs: u64) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sciscore"));
    c.args(args);
    run_bounded(c, secs)
}

/// A manifest line scoring fixture image `i` of the tiny224 goldens against `prompt`.
fn manifest_line(prompt: &str, i: usize, group: Option<&str>) -> String {
    let names = strings(&golden_json("tiny224")["images"]);
    let image = fixtures().join("images").join(&names[i]);
    let mut v = serde_json::json!({"prompt": prompt, "image": image.to_str().unwrap()});
    if let Some(g) = group {
        v["group"] = g.into();
    }
    v.to_string()
}

/// `sciscore batch` on the tiny224 model with `--backend cpu` and `extra` flags.
fn batch(manifest: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let model = model_dir("tiny224");
    let mut args = vec![
        "batch",
        "--backend",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ];
    args.extend(extra);
    sciscore_bounded(&args, 120)
}

#[test]
fn batch_refuses_its_manifest_as_out() {
    let prompts = strings(&golden_json("tiny224")["prompts"]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let lines = manifest_line(&prompts[0], 0, None) + "\n" + &manifest_line(&prompts[1], 1, None);
    std::fs::write(&manifest, "").unwrap();
    let mut same = vec![manifest.clone(), dir.path().join(".").join("m.jsonl")];
    std::fs::hard_link(&manifest, dir.path().join("hard.jsonl")).unwrap();
    same.push(dir.path().join("hard.jsonl"));
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&manifest, dir.path().join("link.jsonl")).unwrap();
        same.push(dir.path().join("link.jsonl"));
    }
    // With a final newline every output line is a new manifest line and the run never ends;
    // without one, resuming cut the manifest's last line.
    for text in [lines.clone() + "\n", lines] {
        std::fs::write(&manifest, &text).unwrap();
        for out in &same {
            let o = batch(&manifest, &["--out", out.to_str().unwrap()]);
            let err = stderr_of(&o);
            assert!(!o.status.success(), "{}: {err}", out.display());
            assert!(err.contains("is the manifest"), "{}: {err}", out.display());
            assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
        }
    }
}

#[test]
fn batch_refuses_an_out_that_is_not_its_output() {
    let prompts = strings(&golden_json("tiny224")["prompts"]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    std::fs::write(&manifest, manifest_line(&prompts[0], 0, None) + "\n").unwrap();
    let png = std::fs::read(fixtures().join("images/rgb_gradient.png")).unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("picture.png", &png),
        ("notes.txt", b"keep these notes\n"),
        // No newline: not to be taken for a torn record and cut.
        ("note.txt", b"keep me"),
        (
            "other.jsonl",
            b"{\"line\": 0, \"prompt\": \"a\", \"image\": \"b\"}\n{\"id\": 7}\n",
        ),
    ];
    for (name, bytes) in cases {
        let out = dir.path().join(name);
        std::fs::write(&out, bytes).unwrap();
        let o = batch(&manifest, &["--out", out.to_str().unwrap()]);
        let err = stderr_of(&o);
        assert!(!o.status.success(), "{name}: {err}");
        assert!(err.contains("not sciscore batch output"), "{name}: {err}");
        assert_eq!(std::fs::read(&out).unwrap(), bytes, "{name} was changed");
    }
    let o = batch(&manifest, &["--out", dir.path().to_str().unwrap()]);
    assert!(
        stderr_of(&o).contains("is a directory"),
        "{}",
        stderr_of(&o)
    );
    #[cfg(unix)]
    {
        let o = batch(&manifest, &["--out", "/dev/null"]);
        assert!(
            stderr_of(&o).contains("not a regular file"),
            "{}",
            stderr_of(&o)
        );
    }
    // An existing empty file is an output with no records yet.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, b"").unwrap();
    let o = batch(&manifest, &["--json", "--out", empty.to_str().unwrap()]);
    assert_eq!(ok_json(&o)["scored"], 1);
}

#[test]
fn batch_numbers_physical_lines_and_goes_on_past_bad_lines() {
    let g = golden_json("tiny224");
    let prompts = strings(&g["prompts"]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let mut bytes = b"\n".to_vec(); // 0: blank
    bytes.extend(manifest_line(&prompts[0], 0, None).bytes()); // 1
    bytes.extend(b"\n   \n"); // 2: blank
    bytes.extend(b"{\"prompt\": \"caf\xe9\", \"image\": \"x.png\"}\n"); // 3: Latin-1, not UTF-8
    let long = manifest_line(&"a very long prompt ".repeat(60_000), 0, None);
    bytes.extend(long.bytes()); // 4: over 1 MiB
    bytes.push(b'\n');
    bytes.extend(manifest_line(&prompts[1], 2, None).bytes()); // 5, no final newline
    std::fs::write(&manifest, &bytes).unwrap();
    let out = dir.path().join("scores.jsonl");
    let o = batch(&manifest, &["--json", "--out", out.to_str().unwrap()]);
    let s = ok_json(&o);
    assert_eq!(
        (
            s["lines"].as_u64(),
            s["scored"].as_u64(),
            s["errors"].as_u64()
        ),
        (Some(4), Some(2), Some(2)),
        "{s}"
    );
    let recs: Vec<serde_json::Value> = records(&out);
    let lines: Vec<u64> = recs.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [1, 3, 4, 5]);
    for (r, (p, i)) in [(&recs[0], (0, 0)), (&recs[3], (1, 2))] {
        let want = g["scores"][p][i].as_f64().unwrap();
        assert!(
            (r["score"].as_f64().unwrap() - want).abs() <= SCORE_ABS_F32,
            "{r} vs {want}"
        );
    }
    assert!(
        recs[1]["error"].as_str().unwrap().contains("UTF-8"),
        "{}",
        recs[1]
    );
    assert!(
        recs[2]["error"].as_str().unwrap().contains("longer than"),
        "{}",
        recs[2]
    );
    // Messages on stderr count lines from 1, as editors do.
    let err = stderr_of(&o);
    assert!(err.contains("line 4: the line is not valid UTF-8"), "{err}");
    // The rerun finds every line done.
    let s = ok_json(&batch(
        &manifest,
        &["--json", "--out", out.to_str().unwrap()],
    ));
    assert_eq!(s["resumed"], 4);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 4);
}

#[test]
fn batch_errors_reach_stderr_without_a_terminal_and_controls_are_escaped() {
    let prompts = strings(&golden_json("tiny224")["prompts"]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let text = manifest_line(&prompts[0], 0, Some("g\u{1b}]0;title\u{7}\u{9b}2J"))
        + "\n"
        + &serde_json::json!({"prompt": "x", "image": "no\u{1b}[31mpe.png"}).to_string()
        + "\n";
    std::fs::write(&manifest, text).unwrap();
    for o in [
        batch(&manifest, &[]),
        batch(
            &manifest,
            &["--out", dir.path().join("s.jsonl").to_str().unwrap()],
        ),
    ] {
        let err = stderr_of(&o);
        assert!(o.status.success(), "{err}");
        assert!(
            err.contains("line 2: image `")
                && err.contains("cannot read it")
                && err.contains("no\\u{1b}[31mpe.png"),
            "{err}"
        );
        for (what, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "raw control characters on {what}: {text:?}"
            );
        }
    }
    // Without --out the records are JSON on stdout, the C1 CSI escaped like the others.
    let o = batch(&manifest, &[]);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["group"], "g\u{1b}]0;title\u{7}\u{9b}2J");
}

/// `sciscore eval` on the tiny224 model with `--backend cpu` and `args`.
fn eval(args: &[&str]) -> std::process::Output {
    let model = model_dir("tiny224");
    let mut all = vec![
        "eval",
        "--backend",
        "cpu",
        "--model",
        model.to_str().unwrap(),
    ];
    all.extend(args);
    sciscore_bounded(&all, 300)
}

#[test]
fn eval_checks_its_outputs_before_the_work() {
    let shard = fixtures().join("science_t2i/test-00000-of-00002.parquet");
    let dir = tempfile::tempdir().unwrap();
    // An unwritable --out is found before the model is even loaded.
    let bad = dir.path().join("no/such/folder/summary.json");
    let o = sciscore_bounded(
        &[
            "eval",
            "--backend",
            "cpu",
            "--model",
            "/nonexistent/model",
            "--dataset",
            shard.to_str().unwrap(),
            "--out",
            bad.to_str().unwrap(),
        ],
        120,
    );
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("summary.json"), "{}", stderr_of(&o));

    // An output that is the dataset, or the other output, is refused and nothing is written.
    let copy = dir.path().join("test-00000-of-00001.parquet");
    std::fs::copy(&shard, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let csv = dir.path().join("rows.csv");
    for args in [
        vec!["--out", copy.to_str().unwrap()],
        vec!["--csv", copy.to_str().unwrap()],
        vec![
            "--out",
            csv.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ],
    ] {
        let mut all = vec!["--dataset", copy.to_str().unwrap()];
        all.extend(&args);
        let o = eval(&all);
        let err = stderr_of(&o);
        assert!(!o.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("is the dataset file") || err.contains("is the same file as --out"),
            "{args:?}: {err}"
        );
        assert_eq!(std::fs::read(&copy).unwrap(), before, "{args:?}");
    }
    assert!(!csv.exists());

    // A write that fails at the end (a full disk) does not lose the summary on stdout.
    if std::path::Path::new("/dev/full").exists() {
        let o = eval(&[
            "--json",
            "--limit",
            "2",
            "--dataset",
            shard.to_str().unwrap(),
            "--out",
            "/dev/full",
        ]);
        assert!(!o.status.success());
        assert!(stderr_of(&o).contains("/dev/full"), "{}", stderr_of(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["rows"], 2);
    }
}

/// One Science-T2I row: prompt, (path, bytes) of the explicit and superficial images,
/// category, law.
type PqRow<'a> = (
    &'a str,
    (&'a str, &'a [u8]),
    (&'a str, &'a [u8]),
    &'a str,
    &'a str,
);

/// Writes `rows` as a parquet file with the Science-T2I columns, as pyarrow lays them out.
fn write_science_t2i(path: &std::path::Path, rows: &[PqRow]) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::{properties::WriterProperties, writer::SerializedFileWriter};
    use std::sync::Arc;
    let image = |name: &str| {
        format!(
            "optional group {name} (LIST) {{ repeated group list {{ optional group element {{ \
             optional binary bytes; optional binary path (UTF8); }} }} }}"
        )
    };
    let schema = format!(
        "message schema {{ optional binary implicit_prompt (UTF8); {} {} \
         optional binary category (UTF8); optional binary law (UTF8); }}",
        image("explicit_image"),
        image("superficial_image")
    );
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&schema).unwrap());
    let props = Arc::new(WriterProperties::builder().build());
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, props).unwrap();
    let b = |s: &[u8]| ByteArray::from(s.to_vec());
    // Leaf columns in schema order; the image leaves sit 4 optional/repeated levels deep.
    let columns: Vec<(Vec<ByteArray>, bool)> = vec![
        (rows.iter().map(|r| b(r.0.as_bytes())).collect(), false),
        (rows.iter().map(|r| b(r.1 .1)).collect(), true),
        (rows.iter().map(|r| b(r.1 .0.as_bytes())).collect(), true),
        (rows.iter().map(|r| b(r.2 .1)).collect(), true),
        (rows.iter().map(|r| b(r.2 .0.as_bytes())).collect(), true),
        (rows.iter().map(|r| b(r.3.as_bytes())).collect(), false),
        (rows.iter().map(|r| b(r.4.as_bytes())).collect(), false),
    ];
    let mut rg = w.next_row_group().unwrap();
    let mut columns = columns.into_iter();
    while let Some(mut col) = rg.next_column().unwrap() {
        let (values, nested) = columns.next().unwrap();
        let n = values.len();
        let (def, rep) = if nested {
            (vec![4i16; n], Some(vec![0i16; n]))
        } else {
            (vec![1i16; n], None)
        };
        col.typed::<ByteArrayType>()
            .write_batch(&values, Some(&def), rep.as_deref())
            .unwrap();
        col.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
}

#[test]
fn eval_row_errors_reach_stderr_without_a_terminal_and_controls_are_escaped() {
    let bad = fixtures().join("science_t2i_bad/bad_image.parquet");
    let o = eval(&["--dataset", bad.to_str().unwrap()]);
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("row 1: explicit_image"), "{err}");

    let png = std::fs::read(fixtures().join("images/rgb_gradient.png")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("controls.parquet");
    let category = "optics\u{1b}[2J\u{9b}1m";
    write_science_t2i(
        &data,
        &[
            (
                "a prism",
                ("e.png", &png),
                ("s.png", &png),
                category,
                "refraction",
            ),
            (
                "a lens",
                ("bad\u{1b}]0;title\u{7}.png", b"not an image"),
                ("s.png", &png),
                category,
                "refraction",
            ),
        ],
    );
    for json in [false, true] {
        let mut args = vec!["--dataset", data.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let o = eval(&args);
        let err = stderr_of(&o);
        assert!(o.status.success(), "{err}");
        assert!(
            err.contains("row 1: explicit_image: image `bad\\u{1b}]0;title\\u{7}.png`"),
            "{err}"
        );
        let out = String::from_utf8(o.stdout.clone()).unwrap();
        for (what, text) in [("stdout", &out), ("stderr", &err)] {
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "raw control characters on {what}: {text:?}"
            );
        }
        if json {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["category_accuracy"].as_object().unwrap().len(), 1);
            assert!(v["category_accuracy"][category].is_number(), "{v}");
        } else {
            assert!(out.contains("optics\\u{1b}[2J\\u{9b}1m"), "{out}");
        }
    }
}
