//! CLIP's byte-level BPE tokenizer, with the ids of `CLIPTokenizerFast` (tokenizers 0.21,
//! transformers 4.50.3) for a model folder's `tokenizer.json` (or `vocab.json` + `merges.txt`).
//!
//! The pipeline CLIP's `tokenizer.json` declares, and the only one accepted here:
//! added special tokens split out of the raw text -> normalizer `NFC`, `Replace(\s+ -> " ")`,
//! `Lowercase` -> pre-tokenizer `Split(pattern, Removed, invert)` (keeps the pattern's matches) ->
//! `ByteLevel` (bytes to printable unicode, no prefix space) -> BPE with
//! `end_of_word_suffix = "</w>"` -> `<|startoftext|> ... <|endoftext|>`, truncated so the whole is
//! at most `max_len` ids and still ends with the end token.
//!
//! Hand-written rather than the `tokenizers` crate: the crate pulls rayon, onig/fancy-regex and
//! much more into the wasm binary for this one fixed pipeline. Parity with `CLIPTokenizerFast` is
//! tested on every fixture prompt.

use crate::error::{Error, Result};
use regex::Regex;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use unicode_normalization::UnicodeNormalization;

/// CLIP's pre-tokenization pattern (OpenAI `simple_tokenizer.py`, lowercased), used for the
/// `vocab.json` + `merges.txt` form, where no pattern is stored.
const CLIP_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const SUFFIX: &str = "</w>";

/// A CLIP tokenizer.
pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    /// Rank of each merge `(left, right)`; lower merges first.
    merges: HashMap<(String, String), u32>,
    split: Regex,
    whitespace: Regex,
    /// Special tokens matched verbatim in the raw text, longest first.
    specials: Vec<(String, u32)>,
    bos: u32,
    eos: u32,
    byte_chars: [char; 256],
    cache: RefCell<HashMap<String, Vec<u32>>>,
}

fn tok_err(m: impl Into<String>) -> Error {
    Error::Tokenizer(m.into())
}

/// GPT-2's reversible map from bytes to printable unicode characters.
fn bytes_to_unicode() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        out[b as usize] = if printable {
            char::from_u32(b).expect("latin-1")
        } else {
            n += 1;
            char::from_u32(255 + n).expect("small code point")
        };
    }
    out
}

impl Tokenizer {
    /// Builds from the text of a `tokenizer.json`.
    pub fn from_tokenizer_json(bytes: &[u8]) -> Result<Self> {
        let root: Value =
            serde_json::from_slice(bytes).map_err(|e| tok_err(format!("tokenizer.json: {e}")))?;
        let model = root
            .get("model")
            .ok_or_else(|| tok_err("tokenizer.json has no `model`"))?;
        if model.get("type").and_then(Value::as_str) != Some("BPE") {
            return Err(tok_err(
                "tokenizer.json: only CLIP's BPE model is supported",
            ));
        }
        if model.get("end_of_word_suffix").and_then(Value::as_str) != Some(SUFFIX) {
            return Err(tok_err(
                "tokenizer.json: expected CLIP's BPE with end_of_word_suffix \"</w>\"",
            ));
        }
        check_normalizer(root.get("normalizer"))?;
        let pattern = split_pattern(root.get("pre_tokenizer"))?;
        let vocab = parse_vocab(model.get("vocab"))?;
        let merges = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or_else(|| tok_err("tokenizer.json: `model.merges` is missing"))?
            .iter()
            .map(|m| match m {
                Value::String(s) => split_merge(s),
                Value::Array(a) => match (
                    a.first().and_then(Value::as_str),
                    a.get(1).and_then(Value::as_str),
                ) {
                    (Some(l), Some(r)) if a.len() == 2 => Ok((l.to_string(), r.to_string())),
                    _ => Err(tok_err(format!("tokenizer.json: bad merge {m}"))),
                },
                _ => Err(tok_err(format!("tokenizer.json: bad merge {m}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut specials = Vec::new();
        for t in root
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(c), Some(id)) = (
                t.get("content").and_then(Value::as_str),
                t.get("id").and_then(Value::as_u64),
            ) {
                specials.push((c.to_string(), id as u32));
            }
        }
        Self::build(vocab, merges, &pattern, specials)
    }

    /// Builds from `vocab.json` and `merges.txt` (the slow tokenizer's files).
    pub fn from_vocab_merges(vocab_json: &[u8], merges_txt: &[u8]) -> Result<Self> {
        let v: Value =
            serde_json::from_slice(vocab_json).map_err(|e| tok_err(format!("vocab.json: {e}")))?;
        let vocab = parse_vocab(Some(&v))?;
        let text =
            std::str::from_utf8(merges_txt).map_err(|_| tok_err("merges.txt is not UTF-8"))?;
        let merges = text
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(split_merge)
            .collect::<Result<Vec<_>>>()?;
        let specials = [BOS, EOS]
            .iter()
            .filter_map(|s| vocab.get(*s).map(|&id| (s.to_string(), id)))
            .collect();
        Self::build(vocab, merges, CLIP_PATTERN, specials)
    }

    fn build(
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
        pattern: &str,
        mut specials: Vec<(String, u32)>,
    ) -> Result<Self> {
        let bos = *vocab
            .get(BOS)
            .ok_or_else(|| tok_err(format!("the vocabulary has no {BOS}")))?;
        let eos = *vocab
            .get(EOS)
            .ok_or_else(|| tok_err(format!("the vocabulary has no {EOS}")))?;
        let split =
            Regex::new(pattern).map_err(|e| tok_err(format!("pre-tokenizer pattern: {e}")))?;
        let whitespace = Regex::new(r"\s+").expect("valid regex");
        specials.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        let merges = merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, i as u32))
            .collect();
        Ok(Tokenizer {
            vocab,
            merges,
            split,
            whitespace,
            specials,
            bos,
            eos,
            byte_chars: bytes_to_unicode(),
            cache: RefCell::new(HashMap::new()),
        })
    }

    /// The end-of-text id (where CLIP pools).
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// Token ids of `text`: `[BOS] tokens [EOS]`, with the tokens truncated so that the whole is at
    /// most `max_len` long (CLIP: 77), as `tokenizer(text, truncation=True, max_length=77)`.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<u32>> {
        if max_len < 2 {
            return Err(Error::Invalid(format!(
                "max_len {max_len} leaves no room for the start and end tokens"
            )));
        }
        let mut ids = vec![self.bos];
        let body = max_len - 2;
        let mut rest = text;
        'outer: while !rest.is_empty() {
            // The first special token in the remaining text, if any.
            let hit = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            let (plain, special) = match hit {
                Some((at, len, id)) => (&rest[..at], Some((id, at + len))),
                None => (rest, None),
            };
            for id in self.encode_plain(plain) {
                if ids.len() - 1 == body {
                    break 'outer;
                }
                ids.push(id);
            }
            match special {
                Some((id, end)) => {
                    if ids.len() - 1 == body {
                        break;
                    }
                    ids.push(id);
                    rest = &rest[end..];
                }
                None => break,
            }
        }
        ids.push(self.eos);
        Ok(ids)
    }

    fn encode_plain(&self, text: &str) -> Vec<u32> {
        let nfc: String = text.nfc().collect();
        let spaced = self.whitespace.replace_all(&nfc, " ");
        let lower: String = spaced.chars().flat_map(char::to_lowercase).collect();
        let mut out = Vec::new();
        for word in self.split.find_iter(&lower) {
            let mapped: String = word
                .as_str()
                .bytes()
                .map(|b| self.byte_chars[b as usize])
                .collect();
            if let Some(ids) = self.cache.borrow().get(&mapped) {
                out.extend_from_slice(ids);
                continue;
            }
            let ids = self.bpe(&mapped);
            out.extend_from_slice(&ids);
            self.cache.borrow_mut().insert(mapped, ids);
        }
        out
    }

    /// Byte-pair merges of one pre-tokenized word, lowest rank first.
    fn bpe(&self, word: &str) -> Vec<u32> {
        let mut parts: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = parts.last_mut() {
            last.push_str(SUFFIX);
        }
        loop {
            let best = parts
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.merges
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((rank, _)) = best else { break };
            let mut merged = Vec::with_capacity(parts.len());
            let mut i = 0;
            while i < parts.len() {
                if i + 1 < parts.len()
                    && self.merges.get(&(parts[i].clone(), parts[i + 1].clone())) == Some(&rank)
                {
                    merged.push(format!("{}{}", parts[i], parts[i + 1]));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut parts[i]));
                    i += 1;
                }
            }
            parts = merged;
        }
        // Every byte character is in CLIP's vocabulary; anything else maps to the unknown token,
        // which CLIP's tokenizer.json sets to <|endoftext|>.
        parts
            .iter()
            .map(|p| self.vocab.get(p).copied().unwrap_or(self.eos))
            .collect()
    }
}

fn split_merge(s: &str) -> Result<(String, String)> {
    let mut it = s.split(' ');
    match (it.next(), it.next(), it.next()) {
        (Some(l), Some(r), None) if !l.is_empty() && !r.is_empty() => {
            Ok((l.to_string(), r.to_string()))
        }
        _ => Err(tok_err(format!("bad merge line {s:?}"))),
    }
}

fn parse_vocab(v: Option<&Value>) -> Result<HashMap<String, u32>> {
    let obj = v
        .and_then(Value::as_object)
        .ok_or_else(|| tok_err("the vocabulary is missing or not an object"))?;
    obj.iter()
        .map(|(k, id)| {
            id.as_u64()
                .filter(|&i| i <= u32::MAX as u64)
                .map(|i| (k.clone(), i as u32))
                .ok_or_else(|| tok_err(format!("vocabulary entry {k:?} has a bad id")))
        })
        .collect()
}

/// Accepts exactly CLIP's normalizer: `Sequence[NFC, Replace(\s+, " "), Lowercase]`.
fn check_normalizer(n: Option<&Value>) -> Result<()> {
    let types: Vec<&str> = n
        .and_then(|n| n.get("normalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("type").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if types != ["NFC", "Replace", "Lowercase"] {
        return Err(tok_err(format!(
            "tokenizer.json: normalizer {types:?} is not CLIP's [NFC, Replace, Lowercase]"
        )));
    }
    Ok(())
}

/// The `Split` pattern of CLIP's pre-tokenizer `Sequence[Split(pattern, Removed, invert), ByteLevel]`.
fn split_pattern(p: Option<&Value>) -> Result<String> {
    let unsupported =
        || tok_err("tokenizer.json: pre_tokenizer is not CLIP's Sequence[Split, ByteLevel]");
    let seq = p
        .and_then(|p| p.get("pretokenizers"))
        .and_then(Value::as_array)
        .ok_or_else(unsupported)?;
    let [split, byte_level] = &seq[..] else {
        return Err(unsupported());
    };
    let ok = split.get("type").and_then(Value::as_str) == Some("Split")
        && split.get("behavior").and_then(Value::as_str) == Some("Removed")
        && split.get("invert").and_then(Value::as_bool) == Some(true)
        && byte_level.get("type").and_then(Value::as_str) == Some("ByteLevel")
        && byte_level.get("add_prefix_space").and_then(Value::as_bool) != Some(true);
    // ByteLevel's own GPT-2 regex (`use_regex: true`, as tokenizers 0.21 writes CLIP's file) is a
    // no-op after CLIP's Split: every piece is a contraction, a letter run, one digit or a run of
    // other non-space characters, which that regex matches whole.
    if !ok {
        return Err(unsupported());
    }
    split
        .get("pattern")
        .and_then(|p| p.get("Regex"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Tokenizer {
        let bytes = bytes_to_unicode();
        let mut vocab: HashMap<String, u32> = HashMap::new();
        for c in bytes.iter() {
            let n = vocab.len() as u32;
            vocab.insert(c.to_string(), n);
        }
        for c in bytes.iter() {
            let n = vocab.len() as u32;
            vocab.insert(format!("{c}</w>"), n);
        }
        for t in ["ab</w>", "aa", "aaa</w>", BOS, EOS] {
            let n = vocab.len() as u32;
            vocab.insert(t.to_string(), n);
        }
        let merges = vec![
            ("a".into(), "b</w>".into()),
            ("a".into(), "a".into()),
            ("aa".into(), "a</w>".into()),
        ];
        let specials = vec![(BOS.to_string(), vocab[BOS]), (EOS.to_string(), vocab[EOS])];
        Tokenizer::build(vocab, merges, CLIP_PATTERN, specials).unwrap()
    }

    #[test]
    fn merges_in_rank_order_and_truncates_keeping_eos() {
        let t = toy();
        let id = |s: &str| t.vocab[s];
        assert_eq!(
            t.encode("AB", 77).unwrap(),
            vec![t.bos, id("ab</w>"), t.eos]
        );
        assert_eq!(
            t.encode("aaa", 77).unwrap(),
            vec![t.bos, id("aaa</w>"), t.eos]
        );
        assert_eq!(t.encode("", 77).unwrap(), vec![t.bos, t.eos]);
        let long = "ab ".repeat(100);
        let ids = t.encode(&long, 77).unwrap();
        assert_eq!(ids.len(), 77);
        assert_eq!(*ids.last().unwrap(), t.eos);
        assert!(t.encode("x", 1).is_err());
    }

    #[test]
    fn special_tokens_in_text_are_kept_whole() {
        let t = toy();
        let ids = t.encode("ab<|endoftext|>ab", 77).unwrap();
        assert_eq!(
            ids,
            vec![t.bos, t.vocab["ab</w>"], t.eos, t.vocab["ab</w>"], t.eos]
        );
    }
}
