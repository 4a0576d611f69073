//! Sharded `sciscore batch` and `sciscore merge` as a cluster runs them (issue 17): shard
//! processes side by side, killed and rerun, merged into the scores of an unsharded run; the
//! shard index from Slurm's and Kubernetes' variables; hostile flags and variables; exit codes;
//! parquet output; the role summary; the Ray Data example where Ray is installed.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fixture images that decode fast: the kill test scores a thousand lines.
const SMALL: [&str; 8] = [
    "tiny.png",
    "palette_p.png",
    "rgba_alpha.png",
    "frame.gif",
    "lossless.webp",
    "rgb_gradient.png",
    "gray_l.png",
    "gray.jpg",
];

/// The variables a cluster engine sets: removed from every run unless a test sets them.
const ENGINE_VARS: [&str; 6] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
    "SCISCORE_SHARDS",
];

/// Environment variables of a run: (name, value).
type Vars<'a> = &'a [(&'a str, &'a str)];

fn sciscore(args: &[&str], env: Vars) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sciscore"));
    c.args(args);
    for v in ENGINE_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// `sciscore batch` on the tiny224 model on the CPU, one image per pass (so that every line's
/// score is bit for bit the same whichever lines share its pass).
fn batch_cmd(manifest: &Path, extra: &[&str], env: Vars) -> Command {
    let model = model_dir("tiny224");
    let mut args = vec![
        "batch",
        "--backend",
        "cpu",
        "--batch",
        "1",
        "--model",
        model.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ];
    args.extend(extra);
    sciscore(&args, env)
}

/// `sciscore merge --manifest M --out OUT [flags] SHARDS...`.
fn merge(manifest: &Path, out: &Path, flags: &[&str], shards: &[PathBuf]) -> Output {
    let mut args = vec![
        "merge",
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(flags);
    args.extend(shards.iter().map(|p| p.to_str().unwrap()));
    run_bounded(sciscore(&args, &[]), 60)
}

fn image(name: &str) -> String {
    fixtures()
        .join("images")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn line_numbers(recs: &[Value]) -> Vec<u64> {
    recs.iter().map(|r| r["line"].as_u64().unwrap()).collect()
}

/// A seed for the kill times: `SCISCORE_SHARD_SEED`, else the clock (printed, to replay).
fn seed() -> u64 {
    let s = std::env::var("SCISCORE_SHARD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
                | 1
        });
    eprintln!("kill times from SCISCORE_SHARD_SEED={s}");
    s
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn four_shards_killed_rerun_and_merged_equal_an_unsharded_run() {
    let prompts = strings(&golden_json("tiny224")["prompts"]);
    let dir = tempfile::tempdir().unwrap();
    // Line k scores prompt k mod 12 against image k mod 8; two lines are blank and one names a
    // missing image.
    let pair = |k: usize| {
        (
            prompts[k % prompts.len()].clone(),
            image(SMALL[k % SMALL.len()]),
        )
    };
    let (blank, bad) = ([10usize, 500], 777usize);
    let mut text = String::new();
    for k in 0..1000 {
        if !blank.contains(&k) {
            let (p, i) = pair(k);
            let i = if k == bad { "missing.png".into() } else { i };
            text += &json!({"prompt": p, "image": i, "group": format!("g{}", k % 3)}).to_string();
        }
        text += "\n";
    }
    let manifest = dir.path().join("manifest.jsonl");
    std::fs::write(&manifest, &text).unwrap();

    // The unsharded run, over the 24 distinct (prompt, image) pairs of the manifest: at one
    // image per pass a line's score is a function of its pair alone (bit for bit), so this is
    // the unsharded run's score of every line, at a fortieth of its cost. (With several images
    // per pass the CPU's f32 sums depend on the pass's size: scores move by up to ~4e-6.)
    let pairs = dir.path().join("pairs.jsonl");
    let pairs_text: String = (0..24)
        .map(|k| json!({"prompt": pair(k).0, "image": pair(k).1}).to_string() + "\n")
        .collect();
    std::fs::write(&pairs, pairs_text).unwrap();
    let reference = dir.path().join("reference.jsonl");
    let t0 = Instant::now();
    ok_json(&run_bounded(
        batch_cmd(
            &pairs,
            &["--json", "--out", reference.to_str().unwrap()],
            &[],
        ),
        300,
    ));
    let want: std::collections::HashMap<(String, String), Value> = records(&reference)
        .into_iter()
        .map(|r| {
            let key = (
                r["prompt"].as_str().unwrap().to_string(),
                r["image"].as_str().unwrap().to_string(),
            );
            (key, r["score"].clone())
        })
        .collect();

    // Four shard processes side by side; two are killed at random points and rerun.
    let out_dir = dir.path().join("out");
    let out_arg = format!("{}/", out_dir.display());
    let shard_out = |i: usize| out_dir.join(format!("scores-{i:05}-of-00004.jsonl"));
    let partial = |i: usize| PathBuf::from(format!("{}.partial", shard_out(i).display()));
    let spawn = |i: usize| {
        let s = format!("{i}/4");
        batch_cmd(
            &manifest,
            &["--json", "--shard", &s, "--out", &out_arg],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    // Shard 1 is killed (SIGKILL) at a random point; shard 3 is asked to stop (SIGTERM, as
    // Slurm and Kubernetes preempt) at a random point after its first record.
    let mut rng = seed();
    let killed = [1usize, 3];
    let mut children: Vec<_> = (0..4).map(spawn).collect();
    std::thread::sleep(Duration::from_millis(800 + xorshift(&mut rng) % 1200));
    children[killed[0]].kill().unwrap();
    let t = Instant::now();
    while !std::fs::read(partial(killed[1])).is_ok_and(|b| b.contains(&b'\n')) {
        assert!(
            t.elapsed().as_secs() < 120,
            "shard {} wrote nothing",
            killed[1]
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(xorshift(&mut rng) % 500));
    let pid = children[killed[1]].id().to_string();
    assert!(Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap()
        .success());
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        if i == killed[0] {
            assert!(!o.status.success(), "shard {i} was killed");
        } else if i == killed[1] {
            // Stopped after the pass in flight, its records whole, with the retry status.
            let err = stderr_of(&o);
            assert_eq!(o.status.code(), Some(75), "shard {i}: {err}");
            assert!(err.contains("interrupted by signal 15"), "{err}");
            let text = std::fs::read_to_string(partial(i)).unwrap();
            assert!(text.ends_with('\n'), "no torn line after a SIGTERM");
        } else {
            assert!(o.status.success(), "shard {i}: {}", stderr_of(&o));
            assert!(shard_out(i).exists() && !partial(i).exists(), "shard {i}");
            continue;
        }
        assert!(!shard_out(i).exists(), "shard {i}: no finished output");
    }
    // A kill can also tear a record inside a character: the rerun cuts the torn tail.
    let done_before: Vec<usize> = killed
        .iter()
        .map(|&i| {
            std::fs::read(partial(i))
                .map(|b| b.iter().filter(|&&c| c == b'\n').count())
                .unwrap_or(0)
        })
        .collect();
    if partial(killed[0]).exists() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(partial(killed[0]))
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"line\":5,\"prompt\":\"caf\xc3").unwrap();
    }
    let reruns: Vec<_> = killed.iter().map(|&i| spawn(i)).collect();
    for (n, (c, &i)) in reruns.into_iter().zip(&killed).enumerate() {
        let o = c.wait_with_output().unwrap();
        let s: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(o.status.success(), "rerun of shard {i}: {s}");
        assert_eq!(s["resumed"], done_before[n], "shard {i}: {s}");
        assert_eq!(s["shard"], format!("{i}/4"));
        assert!(shard_out(i).exists() && !partial(i).exists(), "shard {i}");
    }
    // A finished shard run again scores nothing and leaves its output as it is.
    let before = std::fs::read(shard_out(0)).unwrap();
    let o = run_bounded(
        batch_cmd(
            &manifest,
            &["--json", "--shard", "0/4", "--out", &out_arg],
            &[],
        ),
        60,
    );
    assert_eq!(ok_json(&o)["resumed"], 249, "line 500 is blank");
    assert!(
        stderr_of(&o).contains("complete already"),
        "{}",
        stderr_of(&o)
    );
    assert_eq!(std::fs::read(shard_out(0)).unwrap(), before);
    eprintln!(
        "shards scored, killed and rerun in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Each shard holds its own lines: k mod 4.
    for i in 0..4 {
        for l in line_numbers(&records(&shard_out(i))) {
            assert_eq!(l % 4, i as u64, "shard {i}");
        }
    }
    let merged = dir.path().join("merged.jsonl");
    let shards: Vec<PathBuf> = (0..4).map(shard_out).collect();
    let report = ok_json(&merge(&manifest, &merged, &["--json"], &shards));
    assert_eq!(report["lines"], 998);
    assert_eq!(report["scored"], 997);
    assert_eq!(report["failed"], json!([bad]));
    assert_eq!(report["shards"], 4);
    let recs = records(&merged);
    let expect: Vec<u64> = (0..1000u64)
        .filter(|k| !blank.contains(&(*k as usize)))
        .collect();
    assert_eq!(
        line_numbers(&recs),
        expect,
        "every line once, in manifest order"
    );
    for r in &recs {
        let l = r["line"].as_u64().unwrap() as usize;
        if l == bad {
            assert!(r["error"].as_str().unwrap().contains("missing.png"), "{r}");
            continue;
        }
        assert_eq!(r["score"], want[&pair(l)], "line {l}: {r}");
    }
}

/// Six manifest lines and a blank one (line 3), for the quick runs below.
fn small_manifest(dir: &Path) -> PathBuf {
    let prompts = strings(&golden_json("tiny224")["prompts"]);
    let mut text = String::new();
    for k in 0..7 {
        if k != 3 {
            text += &json!({"prompt": prompts[k], "image": image(SMALL[k])}).to_string();
        }
        text += "\n";
    }
    let m = dir.join("m.jsonl");
    std::fs::write(&m, text).unwrap();
    m
}

#[test]
fn slurm_and_kubernetes_variables_choose_the_shard_and_merge_checks_the_shards() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small_manifest(dir.path());
    let out = dir.path().join("out");
    let out_arg = format!("{}/", out.display());
    let shard_out = |i: usize| out.join(format!("scores-{i:05}-of-00003.jsonl"));
    let cases: [(Vars, usize, &str); 3] = [
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            0,
            "shard 0/3 (from SLURM_ARRAY_TASK_ID=0, SLURM_ARRAY_TASK_COUNT=3)",
        ),
        // --array=3-5: task 4 is shard 1.
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_MIN", "3"),
                ("SLURM_ARRAY_TASK_MAX", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            1,
            "shard 1/3 (from SLURM_ARRAY_TASK_ID=4, SLURM_ARRAY_TASK_MIN=3, SLURM_ARRAY_TASK_MAX=5)",
        ),
        (
            &[("JOB_COMPLETION_INDEX", "2"), ("SCISCORE_SHARDS", "3")],
            2,
            "shard 2/3 (from JOB_COMPLETION_INDEX=2, SCISCORE_SHARDS=3)",
        ),
    ];
    for (env, index, says) in cases {
        let o = run_bounded(
            batch_cmd(&manifest, &["--json", "--out", &out_arg], env),
            120,
        );
        let s = ok_json(&o);
        assert!(stderr_of(&o).contains(says), "{}", stderr_of(&o));
        let lines = line_numbers(&records(&shard_out(index)));
        let want: Vec<u64> = [0u64, 1, 2, 4, 5, 6]
            .into_iter()
            .filter(|l| l % 3 == index as u64)
            .collect();
        assert_eq!(lines, want, "{env:?}");
        assert_eq!(s["lines"], want.len(), "{s}");
    }
    // Kubernetes with the count as a flag.
    let o = run_bounded(
        batch_cmd(
            &manifest,
            &["--json", "--shards", "3", "--out", &out_arg],
            &[("JOB_COMPLETION_INDEX", "2")],
        ),
        60,
    );
    assert!(
        stderr_of(&o).contains("(from JOB_COMPLETION_INDEX=2, --shards 3)"),
        "{}",
        stderr_of(&o)
    );
    assert_eq!(ok_json(&o)["resumed"], 2);

    let merged = dir.path().join("merged.jsonl");
    let merge = |shards: &[PathBuf]| merge(&manifest, &merged, &[], shards);
    let all: Vec<PathBuf> = (0..3).map(shard_out).collect();
    let o = merge(&all);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("6 lines: 6 scored, 0 errors"), "{text}");
    assert_eq!(line_numbers(&records(&merged)), [0, 1, 2, 4, 5, 6]);
    std::fs::remove_file(&merged).unwrap();

    // Refusals: one line on stderr, exit 1, nothing written.
    let partial = dir.path().join("x.jsonl.partial");
    std::fs::copy(shard_out(0), &partial).unwrap();
    let other = dir.path().join("other.jsonl");
    std::fs::write(
        &other,
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace(SMALL[1], SMALL[0]),
    )
    .unwrap();
    let mut mixed = all.clone();
    mixed[1] = dir.path().join("s00001.jsonl");
    let s1 = run_bounded(
        batch_cmd(
            &other,
            &[
                "--shard",
                "1/3",
                "--out",
                dir.path().join("s{shard}.jsonl").to_str().unwrap(),
            ],
            &[],
        ),
        60,
    );
    assert!(s1.status.success(), "{}", stderr_of(&s1));
    let cases: [(Vec<PathBuf>, &str); 4] = [
        (
            vec![all[0].clone(), all[2].clone()],
            "2 manifest line(s) in no shard output (lines from 1: 2, 5)",
        ),
        (
            vec![
                all[0].clone(),
                all[1].clone(),
                all[2].clone(),
                all[1].clone(),
            ],
            "2 line(s) in more than one record (lines from 1: 2, 5;",
        ),
        (vec![partial.clone()], "unfinished shard output"),
        (mixed, "another manifest"),
    ];
    for (shards, says) in cases {
        let o = merge(&shards);
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(1), "{shards:?}: {err}");
        assert!(err.contains(says), "{shards:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!merged.exists());
    }
}

#[test]
fn hostile_shards_and_variables_fail_with_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small_manifest(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let out_arg = out.to_str().unwrap();
    let cases: [(&[&str], Vars, &str); 16] = [
        (
            &["--shard", "3/2"],
            &[],
            "--shard `3/2`: the shard index 3 is not below",
        ),
        (
            &["--shard", "0/0"],
            &[],
            "--shard `0/0`: the shard count 0 is not in",
        ),
        (
            &["--shard", "1/18446744073709551615"],
            &[],
            "is not in 1..=1000000",
        ),
        (&["--shard", "1/99999999999999999999"], &[], "is too large"),
        (&["--shard", "one/two"], &[], "`one` is not a whole number"),
        (&["--shard", "1"], &[], "expected INDEX/COUNT"),
        (&["--shard", "1/-2"], &[], "`-2` is not a whole number"),
        (&["--shard", "0/2", "--shards", "3"], &[], "disagree"),
        (
            &[],
            &[
                ("SLURM_ARRAY_TASK_ID", "abc"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
            "SLURM_ARRAY_TASK_ID: `abc`",
        ),
        (
            &[],
            &[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_MIN", "5"),
                ("SLURM_ARRAY_TASK_MAX", "2"),
            ],
            "SLURM_ARRAY_TASK_MIN=5 is above SLURM_ARRAY_TASK_MAX=2",
        ),
        (
            &[],
            &[
                ("SLURM_ARRAY_TASK_ID", "9"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "3"),
            ],
            "SLURM_ARRAY_TASK_ID=9 is outside",
        ),
        (&[], &[("SLURM_ARRAY_TASK_ID", "1")], "pass --shards N"),
        (&[], &[("JOB_COMPLETION_INDEX", "1")], "SCISCORE_SHARDS"),
        (
            &[],
            &[("JOB_COMPLETION_INDEX", "5"), ("SCISCORE_SHARDS", "3")],
            "not below the count 3",
        ),
        (
            &[],
            &[("JOB_COMPLETION_INDEX", "1"), ("SCISCORE_SHARDS", "3\n")],
            "SCISCORE_SHARDS: `3\\n`",
        ),
        (
            &["--shards", "1e3"],
            &[("JOB_COMPLETION_INDEX", "1")],
            "--shards: `1e3`",
        ),
    ];
    for (args, env, says) in cases {
        let mut all = vec!["--out", out_arg];
        all.extend(args);
        let o = run_bounded(batch_cmd(&manifest, &all, env), 60);
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?} {env:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(says),
            "{args:?} {env:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "{args:?}: wrote a file"
        );
    }
    // Several shards cannot share one file.
    let o = run_bounded(
        batch_cmd(&manifest, &["--shard", "1/2", "--out", "scores.jsonl"], &[]),
        60,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr_of(&o).contains("{shard}"), "{}", stderr_of(&o));
    // A missing GPU is the machine's problem: retry (elsewhere).
    let model = model_dir("tiny224");
    let o = run_bounded(
        sciscore(
            &[
                "batch",
                "--backend",
                "gpu",
                "--model",
                model.to_str().unwrap(),
                "--manifest",
                manifest.to_str().unwrap(),
            ],
            &[
                ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
                ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
            ],
        ),
        120,
    );
    assert_eq!(o.status.code(), Some(75), "{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("no GPU adapter"),
        "{}",
        stderr_of(&o)
    );
}

/// The records of a parquet output, read back with the parquet crate, as JSONL-like values.
fn parquet_records(path: &Path) -> Vec<Value> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    r.get_row_iter(None)
        .unwrap()
        .map(|row| {
            let mut v = serde_json::Map::new();
            for (name, f) in row.unwrap().get_column_iter() {
                let x = match f {
                    Field::Null => continue,
                    Field::Long(n) => json!(n),
                    Field::Str(s) => json!(s),
                    Field::Float(x) => json!(x),
                    other => panic!("{name}: {other:?}"),
                };
                v.insert(name.clone(), x);
            }
            Value::Object(v)
        })
        .collect()
}

#[test]
fn roles_summary_parquet_output_and_merge() {
    let prompts = strings(&golden_json("tiny224")["prompts"]);
    let dir = tempfile::tempdir().unwrap();
    let line = |g: &str, role: &str, p: usize, i: usize| {
        json!({"prompt": prompts[p], "image": image(SMALL[i]), "group": g, "role": role})
            .to_string()
    };
    let text = [
        line("a", "implicit", 0, 0),
        line("a", "explicit", 0, 1),
        line("a", "superficial", 0, 2),
        line("a", "implicit", 0, 3),
        // Explicit and superficial alike: EP == SP, no position.
        line("b", "implicit", 1, 4),
        line("b", "explicit", 1, 5),
        line("b", "superficial", 1, 5),
        line("b", "bogus", 1, 6),
        json!({"prompt": prompts[2], "image": image(SMALL[7])}).to_string(),
    ]
    .join("\n")
        + "\n";
    let manifest = dir.path().join("roles.jsonl");
    std::fs::write(&manifest, text).unwrap();
    let jsonl = dir.path().join("roles.out.jsonl");
    let pq = dir.path().join("roles.parquet");
    let s = ok_json(&run_bounded(
        batch_cmd(
            &manifest,
            &["--json", "--out", jsonl.to_str().unwrap()],
            &[],
        ),
        120,
    ));
    let recs = records(&jsonl);
    assert_eq!(recs.len(), 9);
    assert_eq!(recs[1]["role"], "explicit");
    assert!(
        recs[8].get("role").is_none(),
        "no role, no field: {}",
        recs[8]
    );
    assert!(
        recs[7]["error"]
            .as_str()
            .unwrap()
            .contains("role `bogus` is not one of"),
        "{}",
        recs[7]
    );
    let score = |i: usize| recs[i]["score"].as_f64().unwrap();
    let ip = (score(0) + score(3)) / 2.0;
    let want = (ip - score(2)) / (score(1) - score(2));
    let a = &s["roles"]["groups"]["a"];
    assert_eq!(a["implicit"]["n"], 2);
    assert!(
        (a["implicit"]["mean_score"].as_f64().unwrap() - ip).abs() < 1e-4,
        "{s}"
    );
    assert!(
        (a["position"].as_f64().unwrap() - want).abs() < 1e-3,
        "{s} vs {want}"
    );
    assert_eq!(s["roles"]["groups"]["b"]["position"], Value::Null, "{s}");
    assert_eq!(s["roles"]["all"]["implicit"]["n"], 3);

    // Parquet: the same records, written when the run completes.
    let o = run_bounded(
        batch_cmd(
            &manifest,
            &[
                "--json",
                "--format",
                "parquet",
                "--out",
                pq.to_str().unwrap(),
            ],
            &[],
        ),
        120,
    );
    assert_eq!(ok_json(&o)["roles"], s["roles"]);
    assert!(!Path::new(&format!("{}.partial", pq.display())).exists());
    let back = parquet_records(&pq);
    assert_eq!(back.len(), recs.len());
    for (p, j) in back.iter().zip(&recs) {
        for k in ["line", "prompt", "image", "group", "role", "error"] {
            assert_eq!(p.get(k), j.get(k), "{k}: {p} vs {j}");
        }
        assert_eq!(
            p.get("score").map(|x| x.as_f64().unwrap() as f32),
            j.get("score").map(|x| x.as_f64().unwrap() as f32),
            "{p} vs {j}"
        );
    }

    // Merge reads parquet and JSONL shards and prints the same role summary.
    let merged = dir.path().join("merged.jsonl");
    let o = merge(&manifest, &merged, &[], std::slice::from_ref(&pq));
    assert!(o.status.success(), "{}", stderr_of(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("position n/a"), "{text}");
    assert!(text.contains("failed lines (from 1): 8"), "{text}");
    assert_eq!(
        std::fs::read(&merged).unwrap(),
        std::fs::read(&jsonl).unwrap()
    );
    let merged_pq = dir.path().join("merged.parquet");
    let flags = ["--json", "--format", "parquet"];
    let r = ok_json(&merge(
        &manifest,
        &merged_pq,
        &flags,
        std::slice::from_ref(&jsonl),
    ));
    assert_eq!(r["roles"], s["roles"]);
    assert_eq!(parquet_records(&merged_pq), back);
}

/// A Python with Ray for the Ray Data example: `SCISCORE_RAY_PYTHON`, else `python3`.
fn ray_python() -> Option<String> {
    let py = std::env::var("SCISCORE_RAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import ray, ray.data"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

#[test]
fn ray_data_example_scores_a_manifest_when_ray_is_installed() {
    let Some(py) = ray_python() else {
        eprintln!(
            "skipped: Ray is not importable (pip install \"ray[data]\" and set \
             SCISCORE_RAY_PYTHON to that python to run docs/ray_score.py here)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = small_manifest(dir.path());
    let out = dir.path().join("ray.jsonl");
    let reference = dir.path().join("ref.jsonl");
    ok_json(&run_bounded(
        batch_cmd(
            &manifest,
            &["--json", "--out", reference.to_str().unwrap()],
            &[],
        ),
        120,
    ));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ray_score.py");
    let o = run_bounded(
        {
            let mut c = Command::new(&py);
            c.arg(script)
                .args(["--sciscore", env!("CARGO_BIN_EXE_sciscore")])
                .args(["--model", model_dir("tiny224").to_str().unwrap()])
                .args(["--manifest", manifest.to_str().unwrap()])
                .args(["--out", out.to_str().unwrap()])
                .args([
                    "--backend",
                    "cpu",
                    "--num-gpus",
                    "0",
                    "--actors",
                    "2",
                    "--cpus-per-actor",
                    "0.5",
                ])
                .args(["--rows-per-batch", "2", "--sciscore-batch", "1"])
                .env("RAY_ADDRESS", "local")
                .env("RAY_DISABLE_USAGE_STATS", "1");
            c
        },
        600,
    );
    assert!(o.status.success(), "{}", stderr_of(&o));
    let got = records(&out);
    let want = records(&reference);
    assert_eq!(got, want, "Ray's merged output is the unsharded run's");
}
