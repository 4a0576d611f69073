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
