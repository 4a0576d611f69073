//! CLIP's byte-level BPE tokenizer, with the ids of `CLIPTokenizerFast` (tokenizers 0.21,
//! transformers 4.50.3) for a model folder's `tokenizer.json` (or `vocab.json` + `merges.txt`).
//!
//! The pipeline CLIP's `tokenizer.json` declares, and the only one accepted here:
//! added tokens with `normalized: false` split out of the raw text -> normalizer `NFC`,
//! `Replace(\s+ -> " ")`, `Lowercase` -> added tokens with `normalized: true` (CLIP's two) split
//! out of the normalized text -> pre-tokenizer `Split(pattern, Removed, invert)` (keeps the
//! pattern's matches) -> `ByteLevel` (bytes to printable unicode, no prefix space) -> BPE with
//! `end_of_word_suffix = "</w>"` -> `<|startoftext|> ... <|endoftext|>`, truncated so the whole is
//! at most `max_len` ids and still ends with the end token. Text is processed left to right and
//! left as soon as `max_len` ids are known.
//!
//! Hand-written rather than the `tokenizers` crate: the crate pulls rayon, onig/fancy-regex and
//! much more into the wasm binary for this one fixed pipeline. Parity with `CLIPTokenizerFast` is
//! tested on every fixture prompt.

use crate::error::{Error, Result};
use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// CLIP's pre-tokenization pattern (OpenAI `simple_tokenizer.py`, lowercased), used for the
/// `vocab.json` + `merges.txt` form, where no pattern is stored.
const CLIP_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// The same with the special tokens in front, as some converters write it.
const CLIP_PATTERN_WITH_SPECIALS: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const SUFFIX: &str = "</w>";
/// Smallest piece of text normalized at a time: 75 CLIP tokens rarely span more, and the
/// per-piece overhead is negligible at this size.
const WINDOW: usize = 1024;
/// Words cached (as `tokenizers` does): at most this many, each at most this many bytes, so hostile
/// prompts cannot grow the cache without bound.
const CACHE_ENTRIES: usize = 10_000;
const CACHE_WORD_BYTES: usize = 256;

/// A CLIP tokenizer.
pub struct Tokenizer {
    /// `(left id, right id) -> (rank, merged id)`; lower ranks merge first.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The merged id of each rank (`merges`' values by rank).
    merged: Vec<u32>,
    /// The id of each byte's character, inside a word and as its last character (with `</w>`).
    byte_ids: [u32; 256],
    end_ids: [u32; 256],
    /// Bit `b` of `joined[a]`: some merged token holds byte `a`'s character right before byte
    /// `b`'s, so a word cannot be split between them without possibly changing its merges.
    joined: Box<[[u64; 4]; 256]>,
    split: Regex,
    whitespace: Regex,
    /// Added tokens matched in the raw text (`normalized: false`), longest first.
    raw_specials: Vec<(String, u32)>,
    /// Added tokens matched in the normalized text (`normalized: true`), longest first.
    specials: Vec<(String, u32)>,
    /// Whether text may be normalized piece by piece, cut before whitespace: true for CLIP's
    /// pattern, whose pieces never hold whitespace.
    windows: bool,
    bos: u32,
    eos: u32,
    cache: RefCell<HashMap<String, Vec<u32>>>,
}

/// An added token as `tokenizer.json` declares it.
struct Special {
    content: String,
    id: u32,
    normalized: bool,
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
                let id = u32::try_from(id)
                    .map_err(|_| tok_err(format!("added token {c:?} has a bad id {id}")))?;
                // `tokenizers`' default for a missing flag.
                let special = t.get("special").and_then(Value::as_bool) == Some(true);
                let normalized = t
                    .get("normalized")
                    .and_then(Value::as_bool)
                    .unwrap_or(!special);
                specials.push(Special {
                    content: c.to_string(),
                    id,
                    normalized,
                });
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
        // CLIPTokenizerFast converts these files with both special tokens `normalized: true`.
        let specials = [BOS, EOS]
            .iter()
            .filter_map(|s| {
                vocab.get(*s).map(|&id| Special {
                    content: s.to_string(),
                    id,
                    normalized: true,
                })
            })
            .collect();
        Self::build(vocab, merges, CLIP_PATTERN, specials)
    }

    fn build(
        vocab: HashMap<String, u32>,
        merge_list: Vec<(String, String)>,
        pattern: &str,
        specials: Vec<Special>,
    ) -> Result<Self> {
        let bos = *vocab
            .get(BOS)
            .ok_or_else(|| tok_err(format!("the vocabulary has no {BOS}")))?;
        let eos = *vocab
            .get(EOS)
            .ok_or_else(|| tok_err(format!("the vocabulary has no {EOS}")))?;
        // The regex crate's parse error draws a caret under the pattern over several lines; its
        // last line says what is wrong.
        let split = Regex::new(pattern).map_err(|e| {
            let shown = e.to_string();
            let why = shown.lines().last().unwrap_or_default();
            let why = why.strip_prefix("error: ").unwrap_or(why);
            tok_err(format!(
                "bad pre-tokenizer pattern (`Regex` in tokenizer.json): {why}"
            ))
        })?;
        let whitespace = Regex::new(r"\s+").expect("valid regex");

        // Merges by id, as `tokenizers` keeps them; like it, refuse a merge outside the vocabulary.
        let id_of = |s: &str| {
            vocab.get(s).copied().ok_or_else(|| {
                tok_err(format!(
                    "the merge result or part {s:?} is not in the vocabulary"
                ))
            })
        };
        let mut merges = HashMap::with_capacity(merge_list.len());
        let mut merged = Vec::with_capacity(merge_list.len());
        for (rank, (l, r)) in merge_list.iter().enumerate() {
            let rank = u32::try_from(rank).map_err(|_| tok_err("too many merges"))?;
            merged.push(id_of(&format!("{l}{r}"))?);
            merges.insert((id_of(l)?, id_of(r)?), (rank, merged[rank as usize]));
        }

        // Unknown characters become the unknown token, CLIP's <|endoftext|>.
        let byte_chars = bytes_to_unicode();
        let byte_ids = byte_chars.map(|c| vocab.get(c.encode_utf8(&mut [0; 4]) as &str).copied());
        let end_ids = byte_chars.map(|c| vocab.get(&format!("{c}{SUFFIX}")).copied());
        let known = byte_ids.iter().chain(&end_ids).all(Option::is_some);
        let injective = vocab.values().collect::<HashSet<_>>().len() == vocab.len();
        let joined = Box::new(if known && injective {
            let mut byte_of = HashMap::new();
            for (b, &c) in byte_chars.iter().enumerate() {
                byte_of.insert(c, b);
            }
            let mut joined = [[0u64; 4]; 256];
            for (l, r) in &merge_list {
                let chars: Vec<char> = l.chars().chain(r.chars()).collect();
                for w in chars.windows(2) {
                    if let (Some(&a), Some(&b)) = (byte_of.get(&w[0]), byte_of.get(&w[1])) {
                        joined[a][b / 64] |= 1 << (b % 64);
                    }
                }
            }
            joined
        } else {
            // A word is only cut where each id stands for its own characters.
            [[u64::MAX; 4]; 256]
        });

        let (raw, normalized): (Vec<_>, Vec<_>) = specials
            .into_iter()
            .filter(|s| !s.content.is_empty())
            .partition(|s| !s.normalized);
        let mut raw_specials: Vec<(String, u32)> =
            raw.into_iter().map(|s| (s.content, s.id)).collect();
        // `tokenizers` matches normalized added tokens by their normalized content.
        let mut specials: Vec<(String, u32)> = normalized
            .into_iter()
            .map(|s| (normalize(&whitespace, &s.content), s.id))
            .filter(|(s, _)| !s.is_empty())
            .collect();
        raw_specials.sort_by_key(|(s, _)| Reverse(s.len()));
        specials.sort_by_key(|(s, _)| Reverse(s.len()));
        let windows = (pattern == CLIP_PATTERN || pattern == CLIP_PATTERN_WITH_SPECIALS)
            && specials
                .iter()
                .all(|(s, _)| !s.contains(char::is_whitespace));
        Ok(Tokenizer {
            merges,
            merged,
            byte_ids: byte_ids.map(|id| id.unwrap_or(eos)),
            end_ids: end_ids.map(|id| id.unwrap_or(eos)),
            joined,
            split,
            whitespace,
            raw_specials,
            specials,
            windows,
            bos,
            eos,
            cache: RefCell::new(HashMap::new()),
        })
    }

    /// The end-of-text id (where CLIP pools).
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// Token ids of `text`: `[BOS] tokens [EOS]`, with the tokens truncated so that the whole is at
    /// most `max_len` long (CLIP: 77), as `tokenizer(text, truncation=True, max_length=77)`.
    ///
    /// Text after the last kept token is not processed, so the cost follows the kept tokens (and at
    /// worst the one word they end in, O(n log n) in its length), not the length of `text`.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<u32>> {
        if max_len < 2 {
            return Err(Error::Invalid(format!(
                "max_len {max_len} leaves no room for the start and end tokens"
            )));
        }
        // Room for the start token and the body; the end token is pushed last.
        let limit = max_len - 1;
        let mut ids = Vec::with_capacity(max_len.min(128));
        ids.push(self.bos);
        let mut rest = text;
        while ids.len() < limit && !rest.is_empty() {
            let (plain, special) = next_special(rest, &self.raw_specials);
            self.encode_raw(plain, &mut ids, limit)?;
            let Some((id, end)) = special else { break };
            if ids.len() < limit {
                ids.push(id);
            }
            rest = &rest[end..];
        }
        ids.push(self.eos);
        Ok(ids)
    }

    /// Raw text without raw-matched added tokens, one window at a time, until `ids` is `limit` long.
    fn encode_raw(&self, text: &str, ids: &mut Vec<u32>, limit: usize) -> Result<()> {
        let mut rest = text;
        while ids.len() < limit && !rest.is_empty() {
            let (window, tail) = rest.split_at(self.window_end(rest));
            rest = tail;
            let norm = normalize(&self.whitespace, window);
            let mut left = norm.as_str();
            while ids.len() < limit && !left.is_empty() {
                let (plain, special) = next_special(left, &self.specials);
                for word in self.split.find_iter(plain) {
                    if ids.len() >= limit {
                        return Ok(());
                    }
                    self.encode_word(word.as_str(), ids, limit)?;
                }
                let Some((id, end)) = special else { break };
                if ids.len() < limit {
                    ids.push(id);
                }
                left = &left[end..];
            }
        }
        Ok(())
    }

    /// Where the first window of `text` ends: at the first ASCII whitespace after a non-space
    /// character from `WINDOW` bytes on. There normalizing the two sides apart changes nothing: an
    /// ASCII character neither composes nor reorders under NFC, the whitespace run it starts is
    /// whole on the right, no canonical decomposition or lowercase mapping yields whitespace, and
    /// neither CLIP's pattern nor a special token matches across whitespace.
    fn window_end(&self, text: &str) -> usize {
        let b = text.as_bytes();
        if !self.windows || b.len() <= WINDOW {
            return b.len();
        }
        (WINDOW..b.len())
            .find(|&at| {
                b[at].is_ascii_whitespace()
                    && text[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| !c.is_whitespace())
            })
            .unwrap_or(b.len())
    }

    /// Token ids of one pre-tokenized (normalized) word, until `ids` is `limit` long.
    ///
    /// No merge can join two bytes that no merged token holds side by side, so the word is merged
    /// piece by piece between such bytes (the result is the same as merging it whole) and left
    /// once `limit` is reached; a word without such a cut is merged whole, in O(n log n). Words are
    /// not capped at a length: how far right a byte can still change a word's first tokens is not
    /// bounded by anything we can check in the merge list, so a cap could not be shown exact.
    fn encode_word(&self, word: &str, ids: &mut Vec<u32>, limit: usize) -> Result<()> {
        if word.len() >= u32::MAX as usize {
            return Err(Error::Invalid(format!(
                "the prompt holds a word of {} bytes; words must be shorter than 4 GiB",
                word.len()
            )));
        }
        if let Some(hit) = self.cache.borrow().get(word) {
            ids.extend_from_slice(&hit[..hit.len().min(limit - ids.len())]);
            return Ok(());
        }
        let start = ids.len();
        let bytes = word.as_bytes();
        let mut from = 0;
        for at in 1..bytes.len() {
            let (a, b) = (bytes[at - 1] as usize, bytes[at] as usize);
            if self.joined[a][b / 64] & (1 << (b % 64)) == 0 {
                self.merge(&bytes[from..at], false, ids);
                from = at;
                if ids.len() >= limit {
                    ids.truncate(limit);
                    return Ok(());
                }
            }
        }
        self.merge(&bytes[from..], true, ids);
        let mut cache = self.cache.borrow_mut();
        if bytes.len() <= CACHE_WORD_BYTES && cache.len() < CACHE_ENTRIES {
            cache.insert(word.to_string(), ids[start..].to_vec());
        }
        ids.truncate(limit);
        Ok(())
    }

    /// Byte-pair merges of a word's bytes (`ends_word`: its last byte ends the word and takes
    /// `</w>`), appended to `out`. `tokenizers`' `Word::merge_all`: a heap of candidate pairs by
    /// (rank, position) over a linked list of symbols, stale entries skipped when popped.
    /// `bytes` is shorter than `u32::MAX` (checked by the caller).
    fn merge(&self, bytes: &[u8], ends_word: bool, out: &mut Vec<u32>) {
        const NONE: u32 = u32::MAX;
        struct Symbol {
            id: u32,
            alive: bool,
            prev: u32,
            next: u32,
        }
        let n = bytes.len() as u32;
        let mut syms: Vec<Symbol> = (0..n)
            .zip(bytes)
            .map(|(i, &b)| Symbol {
                id: if ends_word && i + 1 == n {
                    self.end_ids[b as usize]
                } else {
                    self.byte_ids[b as usize]
                },
                alive: true,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
            })
            .collect();
        // Min-heap of (rank, left position): 8-byte entries keep a long word's heap in cache.
        let mut heap: BinaryHeap<Reverse<(u32, u32)>> = (0..n)
            .zip(syms.windows(2))
            .filter_map(|(i, w)| {
                let &(rank, _) = self.merges.get(&(w[0].id, w[1].id))?;
                Some(Reverse((rank, i)))
            })
            .collect();
        while let Some(Reverse((rank, pos))) = heap.pop() {
            let new_id = self.merged[rank as usize];
            let (left, right) = (&syms[pos as usize], syms[pos as usize].next);
            if !left.alive || right == NONE {
                continue;
            }
            // Skip an entry whose pair changed since it was pushed.
            let pair = (left.id, syms[right as usize].id);
            if self.merges.get(&pair).map(|m| m.1) != Some(new_id) {
                continue;
            }
            let after = syms[right as usize].next;
            syms[right as usize].alive = false;
            syms[pos as usize].id = new_id;
            syms[pos as usize].next = after;
            if after != NONE {
                syms[after as usize].prev = pos;
            }
            let before = syms[pos as usize].prev;
            if before != NONE {
                if let Some(&(rank, _)) = self.merges.get(&(syms[before as usize].id, new_id)) {
                    heap.push(Reverse((rank, before)));
                }
            }
            if after != NONE {
                if let Some(&(rank, _)) = self.merges.get(&(new_id, syms[after as usize].id)) {
                    heap.push(Reverse((rank, pos)));
                }
            }
        }
        let mut at = if n == 0 { NONE } else { 0 };
        while at != NONE {
            out.push(syms[at as usize].id);
            at = syms[at as usize].next;
        }
    }
}

/// CLIP's normalizer: NFC, whitespace runs to one space, lowercase.
fn normalize(whitespace: &Regex, text: &str) -> String {
    // Most text is NFC already, and the quick check costs far less than composing.
    let nfc: Cow<str> = match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => Cow::Borrowed(text),
        _ => Cow::Owned(text.nfc().collect()),
    };
    let spaced = whitespace.replace_all(&nfc, " ");
    if spaced.is_ascii() {
        spaced.to_ascii_lowercase()
    } else {
        spaced.chars().flat_map(char::to_lowercase).collect()
    }
}

/// `text` up to the first added token (leftmost, then longest), and that token's id and end.
fn next_special<'t>(text: &'t str, specials: &[(String, u32)]) -> (&'t str, Option<(u32, usize)>) {
    let hit = specials
        .iter()
        .filter_map(|(s, id)| text.find(s.as_str()).map(|at| (at, s.len(), *id)))
        .min_by_key(|&(at, len, _)| (at, Reverse(len)));
    match hit {
        Some((at, len, id)) => (&text[..at], Some((id, at + len))),
        None => (text, None),
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

    /// A tokenizer over the byte characters and three merges, with its vocabulary.
    fn toy() -> (Tokenizer, HashMap<String, u32>) {
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
        let specials = [BOS, EOS]
            .map(|s| Special {
                content: s.to_string(),
                id: vocab[s],
                normalized: true,
            })
            .into();
        let t = Tokenizer::build(vocab.clone(), merges, CLIP_PATTERN, specials).unwrap();
        (t, vocab)
    }

    #[test]
    fn merges_in_rank_order_and_truncates_keeping_eos() {
        let (t, vocab) = toy();
        let id = |s: &str| vocab[s];
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
        let (t, vocab) = toy();
        let ids = t.encode("ab<|endoftext|>ab", 77).unwrap();
        assert_eq!(
            ids,
            vec![t.bos, vocab["ab</w>"], t.eos, vocab["ab</w>"], t.eos]
        );
    }
}
