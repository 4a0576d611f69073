//! The hand-written CLIP tokenizer vs `CLIPTokenizerFast` (transformers 4.50.3, tokenizers 0.21)
//! on unicode corners, from all three file forms.

mod common;
use common::*;
use sciscore::Tokenizer;

fn cases() -> Vec<(String, Vec<u32>)> {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("goldens/tokenizer_cases.json")).unwrap(),
    )
    .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            (c["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

fn check(tok: &Tokenizer, form: &str) {
    let cases = cases();
    assert!(cases.len() > 30);
    for (text, want) in cases {
        assert_eq!(tok.encode(&text, 77).unwrap(), want, "{form}: {text:?}");
    }
}

#[test]
fn tokenizer_json_with_pair_merges() {
    let bytes = std::fs::read(model_dir("tiny224").join("tokenizer.json")).unwrap();
    check(
        &Tokenizer::from_tokenizer_json(&bytes).unwrap(),
        "tokenizer.json",
    );
}

#[test]
fn tokenizer_json_with_string_merges() {
    // Files written by tokenizers < 0.20 (SciScore's, CLIP-H's) store merges as "a b" strings.
    let bytes = std::fs::read(model_dir("tiny224").join("tokenizer.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let merges: Vec<serde_json::Value> = v["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()).into())
        .collect();
    v["model"]["merges"] = merges.into();
    check(
        &Tokenizer::from_tokenizer_json(v.to_string().as_bytes()).unwrap(),
        "string merges",
    );
}

#[test]
fn vocab_and_merges_files() {
    let d = model_dir("tiny224");
    let tok = Tokenizer::from_vocab_merges(
        &std::fs::read(d.join("vocab.json")).unwrap(),
        &std::fs::read(d.join("merges.txt")).unwrap(),
    )
    .unwrap();
    check(&tok, "vocab.json + merges.txt");
}

#[test]
fn malformed_tokenizer_files_are_errors() {
    assert!(Tokenizer::from_tokenizer_json(b"").is_err());
    assert!(Tokenizer::from_tokenizer_json(br#"{"model":{"type":"WordPiece"}}"#).is_err());
    assert!(Tokenizer::from_vocab_merges(b"{}", b"a b\n").is_err());
}
