//! The hand-written CLIP tokenizer vs `CLIPTokenizerFast` (transformers 4.50.3, tokenizers 0.21)
//! on unicode corners, from all three file forms.

mod common;
use common::*;
use regex::Regex;
use sciscore::Tokenizer;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;
use unicode_normalization::UnicodeNormalization;

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

#[test]
fn merges_outside_the_vocabulary_are_errors() {
    // As in `tokenizers`, which refuses such a file: the merged token would have no id.
    let vocab = br#"{"a": 0, "b": 1, "b</w>": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}"#;
    let err = Tokenizer::from_vocab_merges(vocab, b"#version: 0.2\na b\n")
        .err()
        .expect("a merge whose result is not in the vocabulary");
    assert!(err.to_string().contains("\"ab\""), "{err}");
}

// ---- Long inputs and the merge loop, against a whole-text reference ----

/// CLIPTokenizerFast's pipeline done the plain way, the oracle for long and random inputs:
/// normalize the whole text, split out the special tokens (`normalized: true` in the fixtures),
/// pre-tokenize, run the tokenizer's old merge loop (lowest-ranked pair, all its occurrences left
/// to right, repeat) on every word, and only then truncate.
struct Reference {
    vocab: HashMap<String, u32>,
    /// `ranks[left][right]`: the merge's rank (a later duplicate wins, as in `tokenizers`).
    ranks: HashMap<String, HashMap<String, u32>>,
    split: Regex,
    /// Longest first.
    specials: Vec<(String, u32)>,
    byte_chars: Vec<char>,
    bos: u32,
    eos: u32,
}

impl Reference {
    fn new(tokenizer_json: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(tokenizer_json).unwrap();
        let vocab: HashMap<String, u32> = v["model"]["vocab"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, id)| (k.clone(), id.as_u64().unwrap() as u32))
            .collect();
        let mut ranks: HashMap<String, HashMap<String, u32>> = HashMap::new();
        for (rank, m) in v["model"]["merges"].as_array().unwrap().iter().enumerate() {
            let (l, r) = (m[0].as_str().unwrap(), m[1].as_str().unwrap());
            ranks
                .entry(l.to_string())
                .or_default()
                .insert(r.to_string(), rank as u32);
        }
        let pattern = v["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
            .as_str()
            .unwrap();
        let mut specials: Vec<(String, u32)> = v["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                assert_eq!(
                    t["normalized"], true,
                    "the reference matches after normalizing"
                );
                (
                    t["content"].as_str().unwrap().to_string(),
                    t["id"].as_u64().unwrap() as u32,
                )
            })
            .collect();
        specials.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        // GPT-2's bytes_to_unicode.
        let mut n = 0;
        let byte_chars = (0..256u32)
            .map(|b| {
                let printable = (0x21..=0x7e).contains(&b)
                    || (0xa1..=0xac).contains(&b)
                    || (0xae..=0xff).contains(&b);
                if printable {
                    char::from_u32(b).unwrap()
                } else {
                    n += 1;
                    char::from_u32(255 + n).unwrap()
                }
            })
            .collect();
        Reference {
            bos: vocab["<|startoftext|>"],
            eos: vocab["<|endoftext|>"],
            vocab,
            ranks,
            split: Regex::new(pattern).unwrap(),
            specials,
            byte_chars,
        }
    }

    fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let nfc: String = text.nfc().collect();
        let spaced = Regex::new(r"\s+").unwrap().replace_all(&nfc, " ");
        let norm: String = spaced.chars().flat_map(char::to_lowercase).collect();
        let mut body = Vec::new();
        let mut rest = norm.as_str();
        loop {
            let hit = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            let plain = hit.map_or(rest, |(at, _, _)| &rest[..at]);
            for word in self.split.find_iter(plain) {
                let mapped: String = word
                    .as_str()
                    .bytes()
                    .map(|b| self.byte_chars[b as usize])
                    .collect();
                body.extend(self.bpe(&mapped));
            }
            let Some((at, len, id)) = hit else { break };
            body.push(id);
            rest = &rest[at + len..];
        }
        body.truncate(max_len - 2);
        let mut ids = vec![self.bos];
        ids.extend(body);
        ids.push(self.eos);
        ids
    }

    /// The merge loop the tokenizer used before its heap: quadratic, obviously right.
    fn bpe(&self, word: &str) -> Vec<u32> {
        let mut parts: Vec<String> = word.chars().map(String::from).collect();
        parts.last_mut().unwrap().push_str("</w>");
        let rank = |l: &str, r: &str| self.ranks.get(l).and_then(|m| m.get(r)).copied();
        loop {
            let best = parts.windows(2).filter_map(|w| rank(&w[0], &w[1])).min();
            let Some(best) = best else { break };
            let mut merged = Vec::with_capacity(parts.len());
            let mut i = 0;
            while i < parts.len() {
                if i + 1 < parts.len() && rank(&parts[i], &parts[i + 1]) == Some(best) {
                    merged.push(format!("{}{}", parts[i], parts[i + 1]));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut parts[i]));
                    i += 1;
                }
            }
            parts = merged;
        }
        parts
            .iter()
            .map(|p| self.vocab.get(p).copied().unwrap_or(self.eos))
            .collect()
    }

    /// The bytes a vocabulary entry stands for (without `</w>`).
    fn token_bytes(&self, token: &str) -> Vec<u8> {
        let token = token.strip_suffix("</w>").unwrap_or(token);
        token
            .chars()
            .map(|c| self.byte_chars.iter().position(|&b| b == c).unwrap() as u8)
            .collect()
    }
}

/// Every distinct fixture `tokenizer.json`, with the tokenizer built from it.
fn fixture_tokenizers() -> Vec<(String, Tokenizer, Reference)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for m in MODELS {
        let bytes = std::fs::read(model_dir(m).join("tokenizer.json")).unwrap();
        if seen.insert(bytes.clone()) {
            let tok = Tokenizer::from_tokenizer_json(&bytes).unwrap();
            out.push((m.to_string(), tok, Reference::new(&bytes)));
        }
    }
    out
}

/// splitmix64: a seeded generator, so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Pieces that stress normalization, pre-tokenization and special tokens.
const AWKWARD: &[&str] = &[
    " ",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\u{a0}",
    "\u{2000}",
    "\u{3000}",
    "\u{85}",
    "A",
    "Z",
    "Σ",
    "ς",
    "İ",
    "ß",
    "ǅ",
    "ﬁ",
    "e\u{301}",
    "\u{301}",
    "\u{327}",
    "\u{1100}\u{1161}",
    "\u{11a8}",
    "한",
    "\u{b47}\u{b3e}",
    "\u{212b}",
    "１",
    "²",
    "½",
    "7",
    "'",
    "'s",
    "'LL",
    "'d",
    "中",
    "😀",
    "👍🏽",
    "\u{200d}",
    "-",
    "...",
    "<|endoftext|>",
    "<|startoftext|>",
    "<|EndOfText|>",
    "<|",
    "|>",
    "<|endof",
    "</w>",
    "\u{feff}",
];

/// A random text: vocabulary entries (so merges fire) and awkward pieces, joined with or without
/// spaces, so words run long.
fn random_text(rng: &mut Rng, r: &Reference, ids: &[&str], pieces: usize) -> String {
    let mut bytes = Vec::new();
    for _ in 0..pieces {
        if rng.below(3) == 0 {
            bytes.extend_from_slice(rng.pick(AWKWARD).as_bytes());
        } else {
            bytes.extend(r.token_bytes(rng.pick(ids)));
        }
        if rng.below(2) == 0 {
            bytes.push(b' ');
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn vocab_strings(r: &Reference) -> Vec<&str> {
    let mut v: Vec<&str> = r
        .vocab
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with("<|"))
        .collect();
    v.sort();
    v
}

#[test]
fn reference_reproduces_the_goldens() {
    // The oracle of the tests below is itself checked against CLIPTokenizerFast.
    for (name, _, r) in fixture_tokenizers() {
        for (text, want) in cases() {
            assert_eq!(r.encode(&text, 77), want, "{name}: {text:?}");
        }
    }
}

#[test]
fn random_texts_match_the_reference() {
    for (name, tok, r) in fixture_tokenizers() {
        let ids = vocab_strings(&r);
        let mut rng = Rng(13);
        for case in 0..3000 {
            // Mostly short texts; every tenth spans several of the tokenizer's windows.
            let pieces = if case % 10 == 0 {
                400 + rng.below(1500)
            } else {
                1 + rng.below(40)
            };
            let text = random_text(&mut rng, &r, &ids, pieces);
            let full = r.encode(&text, usize::MAX);
            for max_len in [2, 3, 77, usize::MAX] {
                let mut want = full.clone();
                if max_len < want.len() {
                    want.truncate(max_len - 1);
                    want.push(r.eos);
                }
                assert_eq!(
                    tok.encode(&text, max_len).unwrap(),
                    want,
                    "{name}: case {case}, max_len {max_len}: {text:?}"
                );
            }
        }
    }
}

#[test]
fn random_words_merge_like_the_old_loop() {
    // One pre-token each (letters only), so this is the merge loop alone.
    for (name, tok, r) in fixture_tokenizers() {
        let letters: Vec<&str> = vocab_strings(&r)
            .into_iter()
            .filter(|s| {
                s.trim_end_matches("</w>")
                    .chars()
                    .all(|c| c.is_ascii_lowercase())
            })
            .collect();
        let mut rng = Rng(7);
        for case in 0..3000 {
            let mut word = String::new();
            for _ in 0..1 + rng.below(30) {
                if rng.below(4) == 0 {
                    word.push((b'a' + rng.below(26) as u8) as char);
                } else {
                    word.push_str(rng.pick(&letters).trim_end_matches("</w>"));
                }
            }
            let want = r.encode(&word, usize::MAX);
            assert_eq!(
                tok.encode(&word, usize::MAX).unwrap(),
                want,
                "{name}: case {case}: {word:?}"
            );
        }
    }
}

/// Words of 64K+ characters, long runs of few distinct pairs (which the old loop can still
/// finish) and words that follow many short ones, so the cut falls inside the long word.
fn long_words(r: &Reference, rng: &mut Rng) -> Vec<String> {
    let letters: Vec<&str> = vocab_strings(r)
        .into_iter()
        .filter(|s| s.len() > 2 && s.chars().all(|c| c.is_ascii_lowercase()))
        .collect();
    let mut out = vec![
        "a".repeat(70_000),
        "ab".repeat(35_000),
        "!".repeat(70_000),
        "é".repeat(70_000),
        format!("{}b", "a".repeat(70_001)),
    ];
    for _ in 0..6 {
        let few: Vec<&str> = (0..3).map(|_| rng.pick(&letters)).collect();
        let mut w = String::new();
        while w.len() < 70_000 {
            w.push_str(rng.pick(&few));
        }
        out.push(w);
    }
    let prefix = "a photo of ".repeat(22); // 66 tokens, so 9 come from the long word
    let n = out.len();
    for i in 0..n {
        out.push(format!("{prefix}{}", out[i]));
    }
    out
}

#[test]
fn long_words_keep_the_reference_prefix() {
    for (name, tok, r) in fixture_tokenizers() {
        let mut rng = Rng(64);
        for word in long_words(&r, &mut rng) {
            let want = r.encode(&word, 77);
            assert_eq!(
                tok.encode(&word, 77).unwrap(),
                want,
                "{name}: {}...",
                &word[..40]
            );
        }
    }
}

#[test]
fn special_tokens_inside_long_text() {
    for (name, tok, r) in fixture_tokenizers() {
        let ids = vocab_strings(&r);
        let mut rng = Rng(5);
        for case in 0..20 {
            let mut text = random_text(&mut rng, &r, &ids, 20_000);
            // Specials at random places, some within the first 75 tokens.
            for _ in 0..10 {
                let span = if rng.below(2) == 0 { 200 } else { text.len() };
                let mut at = rng.below(span);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, rng.pick(&["<|endoftext|>", "<|startoftext|>"]));
            }
            assert_eq!(
                tok.encode(&text, 77).unwrap(),
                r.encode(&text, 77),
                "{name}: case {case}"
            );
        }
        let word = format!("{}<|endoftext|>x", "a".repeat(70_000));
        assert_eq!(
            tok.encode(&word, 1_000_000).unwrap(),
            r.encode(&word, 1_000_000)
        );
    }
}

#[test]
fn special_tokens_are_matched_after_normalizing() {
    // Their `normalized: true` in tokenizer.json: CLIPTokenizerFast matches them in the
    // lowercased, NFC, whitespace-collapsed text.
    let bytes = std::fs::read(model_dir("tiny224").join("tokenizer.json")).unwrap();
    let tok = Tokenizer::from_tokenizer_json(&bytes).unwrap();
    assert_eq!(
        tok.encode("a <|ENDOFTEXT|> b", 77).unwrap(),
        tok.encode("a <|endoftext|> b", 77).unwrap()
    );
}

/// `encode(text, 77)` on another thread, failing (not hanging) if it takes 30 s: the tokenizer
/// needs well under 1 s in this debug build; the old quadratic one needed about an hour for 1 MB.
fn encode_within_30s(text: String) -> Vec<u32> {
    let (send, recv) = mpsc::channel();
    std::thread::spawn(move || {
        let bytes = std::fs::read(model_dir("tiny224").join("tokenizer.json")).unwrap();
        let tok = Tokenizer::from_tokenizer_json(&bytes).unwrap();
        let _ = send.send(tok.encode(&text, 77).unwrap());
    });
    // Loading the 3.6 MB tokenizer.json is inside the bound too.
    recv.recv_timeout(Duration::from_secs(30))
        .expect("encode of a 1 MB prompt did not finish in 30 s")
}

fn random_letters(rng: &mut Rng, len: usize) -> String {
    (0..len)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect()
}

#[test]
fn one_megabyte_prompts_finish() {
    let mut rng = Rng(1);
    let one_word = random_letters(&mut rng, 1 << 20);
    let ids = encode_within_30s(one_word);
    assert_eq!(ids.len(), 77);
    // No cut is possible in a run of one letter: the whole word goes through the merges.
    let bytes = std::fs::read(model_dir("tiny224").join("tokenizer.json")).unwrap();
    let r = Reference::new(&bytes);
    let run = "a".repeat(1 << 20);
    assert_eq!(encode_within_30s(run.clone()), r.encode(&run, 77));
    let mut many = String::new();
    while many.len() < 1 << 20 {
        let n = 1 + rng.below(12);
        many.push_str(&random_letters(&mut rng, n));
        many.push(' ');
    }
    // Words are independent, so the first 200 words decide the first 75 tokens.
    let head: String = many.split(' ').take(200).collect::<Vec<_>>().join(" ");
    assert_eq!(encode_within_30s(many), r.encode(&head, 77));
}

/// Times of long prompts: `cargo test --release --test tokenizer -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_long_prompts() {
    let bytes = std::fs::read(model_dir("tiny224").join("tokenizer.json")).unwrap();
    let tok = Tokenizer::from_tokenizer_json(&bytes).unwrap();
    let mut rng = Rng(1);
    let mut many = String::new();
    while many.len() < 1 << 20 {
        let n = 1 + rng.below(12);
        many.push_str(&random_letters(&mut rng, n));
        many.push(' ');
    }
    let sizes: Vec<usize> = std::env::var("SCISCORE_TOK_BENCH_KB")
        .map(|s| {
            s.split(',')
                .map(|k| k.parse::<usize>().unwrap() << 10)
                .collect()
        })
        .unwrap_or(vec![128 << 10, 1 << 20]);
    for &len in &sizes {
        // The slowest case for the old tokenizer last, so a time limit cuts only it short.
        for (what, text) in [
            ("many-word", many[..len].to_string()),
            ("one-letter word", "a".repeat(len)),
            ("random one-word", random_letters(&mut rng, len)),
        ] {
            let t = std::time::Instant::now();
            let ids = tok.encode(&text, 77).unwrap();
            eprintln!(
                "{:>5} KB {what:<16} {:>10.3} ms ({} ids)",
                len >> 10,
                t.elapsed().as_secs_f64() * 1e3,
                ids.len()
            );
        }
    }
}
