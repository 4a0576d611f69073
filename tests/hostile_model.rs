//! Model folders and files that ask for absurd amounts of memory or hold poisoned values: each is
//! a one-line error naming the cause, on both backends, never an abort or a NaN in the output.

mod common;
use common::*;
use sciscore::{Backend, DirSource, Model};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const FC1: &str = "vision_model.encoder.layers.0.mlp.fc1.weight";
const TOKENS: &str = "text_model.embeddings.token_embedding.weight";

/// The load error on each backend there is (the GPU one only where an adapter is usable).
fn load_errs(dir: &Path) -> Vec<String> {
    let mut backends = vec![Backend::Cpu];
    if gpu_available() {
        backends.push(Backend::Gpu);
    }
    backends
        .into_iter()
        .map(|b| {
            let src = DirSource::new(dir).unwrap();
            match pollster::block_on(Model::load(&src, b)) {
                Ok(_) => panic!("loading {} on {b:?} should fail", dir.display()),
                Err(e) => e.to_string(),
            }
        })
        .collect()
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let p = dir.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut c);
    std::fs::write(&p, c.to_string()).unwrap();
}

#[test]
fn a_layer_count_the_checkpoint_does_not_hold_is_refused_before_allocating() {
    // Before: `Vec::with_capacity(num_layers)` asked for ~50 GB and aborted the process.
    let d = copy_model("tiny224");
    edit_config(d.path(), |c| {
        c["vision_config"]["num_hidden_layers"] = 100_000_000.into()
    });
    for m in load_errs(d.path()) {
        assert!(
            m.contains("vision_config.num_hidden_layers` is 100000000")
                && m.contains("holds 2 `vision_model` encoder layers"),
            "{m}"
        );
    }
}

#[test]
fn a_nan_or_infinite_weight_is_named() {
    // Before: the model loaded and every score came out NaN (JSON null) with exit code 0.
    for (model, bits) in [
        ("tiny224", f32::NAN.to_bits()),
        ("tiny224", f32::INFINITY.to_bits()),
    ] {
        let d = copy_model(model);
        let p = d.path().join("model.safetensors");
        let (h, mut data) = split(&p);
        let begin = h[FC1]["data_offsets"][0].as_u64().unwrap() as usize;
        data[begin + 4 * 7..][..4].copy_from_slice(&bits.to_le_bytes());
        join(&p, &h, &data);
        for m in load_errs(d.path()) {
            assert!(m.contains(FC1) && m.contains("NaN or an infinite"), "{m}");
        }
    }
    // f16 storage: the half-precision matrices are checked as stored.
    let d = copy_model("odd");
    let mut hit = false;
    for shard in std::fs::read_dir(d.path()).unwrap() {
        let p = shard.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            continue;
        }
        let (h, mut data) = split(&p);
        if let Some(t) = h.get(FC1) {
            let begin = t["data_offsets"][0].as_u64().unwrap() as usize;
            data[begin + 2 * 3..][..2].copy_from_slice(&0x7e00u16.to_le_bytes()); // f16 NaN
            join(&p, &h, &data);
            hit = true;
        }
    }
    assert!(hit, "no shard of `odd` holds {FC1}");
    for m in load_errs(d.path()) {
        assert!(m.contains(FC1) && m.contains("NaN or an infinite"), "{m}");
    }
}

#[test]
fn a_tensor_larger_than_memory_is_an_error_not_an_abort() {
    // A token embedding of 2^31 - 1 rows (275 GB of f32), consistent with vocab_size, in a
    // sparse file of that size. Before: the CPU loader allocated it and aborted.
    let d = copy_model("tiny224");
    let vocab: u64 = (1 << 31) - 1;
    edit_config(d.path(), |c| c["text_config"]["vocab_size"] = vocab.into());
    let p = d.path().join("model.safetensors");
    let (mut h, data) = split(&p);
    let dt = h[TOKENS]["shape"][1].as_u64().unwrap();
    let end = data.len() as u64;
    let huge = vocab * dt * 4;
    h[TOKENS]["shape"] = serde_json::json!([vocab, dt]);
    h[TOKENS]["data_offsets"] = serde_json::json!([end, end + huge]);
    join(&p, &h, &data);
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(f.metadata().unwrap().len() + huge).unwrap(); // sparse: no disk used
    drop(f);
    for m in load_errs(d.path()) {
        // CPU: the allocation fails; GPU: the buffer is over the device's limit.
        assert!(
            m.contains(TOKENS) && (m.contains("not enough memory") || m.contains("GPU buffer")),
            "{m}"
        );
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sciscore"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn devices_and_folders_given_as_images_are_refused_before_reading() {
    // Before: `/dev/zero` was read until memory ran out.
    let model = model_dir("tiny224");
    let dir = tempfile::tempdir().unwrap();
    for bad in [Path::new("/dev/zero"), dir.path()] {
        for cmd in [&["score", "--prompt", "x"][..], &["embed"][..]] {
            let flag = if cmd[0] == "embed" {
                vec!["--image"]
            } else {
                vec![]
            };
            let mut args = cmd.to_vec();
            args.extend(["--backend", "cpu", "--model", model.to_str().unwrap()]);
            args.extend(flag);
            args.push(bad.to_str().unwrap());
            let out = cli(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?}");
            assert!(
                err.contains(bad.to_str().unwrap()) && err.contains("not a regular file"),
                "{args:?}: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        }
    }
}
