//! Shared test helpers: fixture paths, golden readers, comparisons with named tolerances.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// f32 CPU path vs transformers f32: embeddings must agree to cosine >= this.
pub const EMBED_COS_F32: f64 = 0.99999;
/// Scores are `100 * cos`: an f32 reordering of sums moves them by ~1e-5; 0.01 is the contract.
pub const SCORE_ABS_F32: f64 = 0.01;
/// Hidden states: relative max-abs error vs the golden's magnitude. Both sides are f32 with
/// different summation orders (SDPA, MKL vs gemm); 1e-4 is ~1000 ulp of headroom over 2-3 layers.
pub const HIDDEN_REL_F32: f64 = 1e-4;
/// The GPU's default f16 weights vs transformers f32: |score difference| (the contract of
/// `src/testing/end_to_end.rs` SCORE_ABS_F16: each weight rounded to 11 significant bits).
pub const SCORE_ABS_F16: f64 = 0.1;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub const MODELS: [&str; 3] = ["tiny224", "odd", "bf16"];

pub fn golden_json(model: &str) -> Value {
    let p = fixtures().join("goldens").join(format!("{model}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// All F32 tensors of a golden safetensors file: name -> (shape, values).
pub fn golden_tensors(model: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let file = format!("{model}.safetensors");
    let bytes = std::fs::read(fixtures().join("goldens").join(&file)).unwrap();
    sciscore::io::read_f32_tensors(&file, &bytes).unwrap_or_else(|e| panic!("{e}"))
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[allow(unused_imports)] // not every test file compares vectors
pub use sciscore::stats::{cosine, max_abs};

/// Asserts `ours` equals `theirs` within `rel * (1 + max|theirs|)`, printing where it broke.
pub fn assert_close(what: &str, ours: &[f32], theirs: &[f32], rel: f64) -> f64 {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: length {} vs golden {}",
        ours.len(),
        theirs.len()
    );
    let scale = 1.0 + theirs.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    let (d, i) = max_abs(ours, theirs);
    assert!(
        d <= rel * scale,
        "{what}: max |diff| {d:.3e} at index {i} (ours {}, golden {}), allowed {:.3e}",
        ours[i],
        theirs[i],
        rel * scale
    );
    d
}

/// The bytes of fixture images `names` (tests/fixtures/images).
pub fn fixture_images(names: &[String]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|n| std::fs::read(fixtures().join("images").join(n)).unwrap())
        .collect()
}

/// `ImageInput`s over `names` and their `bytes`.
pub fn image_inputs<'a>(
    names: &'a [String],
    bytes: &'a [Vec<u8>],
) -> Vec<sciscore::ImageInput<'a>> {
    names
        .iter()
        .zip(bytes)
        .map(|(n, b)| sciscore::ImageInput { name: n, bytes: b })
        .collect()
}

pub fn load(model: &str) -> sciscore::Model {
    let src = sciscore::DirSource::new(model_dir(model)).unwrap();
    pollster::block_on(sciscore::Model::load(&src, sciscore::Backend::Cpu)).unwrap()
}

/// Whether a GPU adapter is usable here. With `SCISCORE_REQUIRE_GPU=1` (CI, which installs
/// lavapipe) a missing adapter fails the test instead of skipping the GPU half.
pub fn gpu_available() -> bool {
    let src = sciscore::DirSource::new(model_dir("odd")).unwrap();
    match pollster::block_on(sciscore::Model::load(&src, sciscore::Backend::Gpu)) {
        Ok(_) => true,
        Err(e) if std::env::var("SCISCORE_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("SCISCORE_REQUIRE_GPU=1 but the GPU backend failed: {e}")
        }
        Err(e) => {
            eprintln!("skipping the GPU backend: {e}");
            false
        }
    }
}

/// A private copy of a fixture model folder.
pub fn copy_model(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(model_dir(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

pub fn load_err(dir: &Path) -> String {
    let src = sciscore::DirSource::new(dir).unwrap();
    match pollster::block_on(sciscore::Model::load(&src, sciscore::Backend::Cpu)) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Splits a safetensors file into (header JSON, data section).
pub fn split(path: &Path) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&b[8..8 + n]).unwrap(),
        b[8 + n..].to_vec(),
    )
}

pub fn join(path: &Path, header: &serde_json::Map<String, Value>, data: &[u8]) {
    let h = Value::Object(header.clone()).to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

/// The JSON records of a `sciscore batch` output file, one per line.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The JSON on stdout of a command that must have succeeded.
pub fn ok_json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd`, killing it after `secs` (a bound far above the expected time, so that a
/// regression to an endless loop fails the test instead of hanging it).
pub fn run_bounded(mut cmd: std::process::Command, secs: u64) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed().as_secs() >= secs {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{cmd:?} still ran after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
