//! Which manifest lines one process of a sharded `sciscore batch` scores, and where it writes.
//!
//! Line `k` (0-based, blank lines counted: the records' `line`) belongs to shard `k mod N`.
//! Round robin rather than contiguous ranges: every shard is known without reading the manifest
//! first, and slow regions of a manifest (large images, one slow folder) spread over all shards.
//! The index and count come from `--shard I/N`, or from the cluster engine's environment:
//! Slurm job arrays and Kubernetes Indexed Jobs. Docs: docs/cluster.md.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The most shards of one run: far more than any cluster runs at once, and small enough that a
/// typo (`--shard 1/10000000000`) is an error instead of a run of empty shards.
pub const MAX_SHARDS: u64 = 1_000_000;

/// Shard `index` of `count` (`0 <= index < count <= MAX_SHARDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Checks `index < count <= MAX_SHARDS`; `what` names the input in the message.
    pub fn new(index: u64, count: u64, what: &str) -> Result<Shard> {
        if count == 0 || count > MAX_SHARDS {
            return Err(Error::Invalid(format!(
                "{what}: the shard count {count} is not in 1..={MAX_SHARDS}"
            )));
        }
        if index >= count {
            return Err(Error::Invalid(format!(
                "{what}: the shard index {index} is not below the count {count} (indices are 0..={})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N`, as `--shard` takes it.
    pub fn parse(s: &str) -> Result<Shard> {
        let what = format!("--shard {}", shown(s));
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| Error::Invalid(format!("{what}: expected INDEX/COUNT, e.g. 0/4")))?;
        Shard::new(number(i, &what)?, number(n, &what)?, &what)
    }

    /// Whether manifest line `line` (0-based, blank lines counted) is this shard's.
    pub fn owns(&self, line: usize) -> bool {
        line as u64 % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A user's text in a one-line message: at most 40 characters, controls escaped.
pub(crate) fn shown(s: &str) -> String {
    let mut t: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.chars().count() > 40 {
        t.push('…');
    }
    format!("`{t}`")
}

/// A whole number of at most 20 ASCII digits (no sign, no spaces).
fn number(s: &str, what: &str) -> Result<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid(format!(
            "{what}: {} is not a whole number",
            shown(s)
        )));
    }
    s.parse::<u64>()
        .map_err(|_| Error::Invalid(format!("{what}: {} is too large", shown(s))))
}

/// Environment variable that gives the shard count of a Kubernetes Indexed Job (set it to the
/// Job's `completions`), when `--shards` is not passed.
pub const SHARDS_ENV: &str = "SCISCORE_SHARDS";

/// The shard this process runs and where that came from (for the log), or `None` for an
/// unsharded run. `shard` is `--shard`, `shards` is `--shards`; `env` reads the environment.
///
/// Order: `--shard`; Slurm's `SLURM_ARRAY_TASK_ID` (count from `_MIN`/`_MAX`, else `_COUNT`);
/// Kubernetes' `JOB_COMPLETION_INDEX` (count from `--shards` or `SCISCORE_SHARDS`).
pub fn detect(
    shard: Option<&str>,
    shards: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, String)>> {
    let count_arg = shards
        .map(|s| number(s, "--shards").map(|n| (n, format!("--shards {n}"))))
        .transpose()?;
    if let Some(s) = shard {
        let sh = Shard::parse(s)?;
        if let Some((n, _)) = count_arg.filter(|&(n, _)| n != sh.count) {
            return Err(Error::Invalid(format!(
                "--shard {sh} and --shards {n} disagree on the count; pass one of them"
            )));
        }
        return Ok(Some((sh, format!("--shard {sh}"))));
    }
    let var = |k: &str| env(k).map(|v| (k.to_string(), v));
    let num = |(k, v): &(String, String)| number(v, k);
    if let Some(id) = var("SLURM_ARRAY_TASK_ID") {
        let task = num(&id)?;
        let (min, max, cnt) = (
            var("SLURM_ARRAY_TASK_MIN"),
            var("SLURM_ARRAY_TASK_MAX"),
            var("SLURM_ARRAY_TASK_COUNT"),
        );
        let mut how = vec![format!("SLURM_ARRAY_TASK_ID={task}")];
        let (index, count) = match (&min, &max) {
            (Some(lo), Some(hi)) => {
                let (lo_n, hi_n) = (num(lo)?, num(hi)?);
                how.push(format!("SLURM_ARRAY_TASK_MIN={lo_n}"));
                how.push(format!("SLURM_ARRAY_TASK_MAX={hi_n}"));
                if lo_n > hi_n {
                    return Err(Error::Invalid(format!(
                        "SLURM_ARRAY_TASK_MIN={lo_n} is above SLURM_ARRAY_TASK_MAX={hi_n}"
                    )));
                }
                if !(lo_n..=hi_n).contains(&task) {
                    return Err(Error::Invalid(format!(
                        "SLURM_ARRAY_TASK_ID={task} is outside SLURM_ARRAY_TASK_MIN..=MAX ({lo_n}..={hi_n})"
                    )));
                }
                let n = hi_n - lo_n + 1;
                if let Some(c) = &cnt {
                    let c_n = num(c)?;
                    if c_n != n {
                        return Err(Error::Invalid(format!(
                            "SLURM_ARRAY_TASK_COUNT={c_n} but MIN..=MAX ({lo_n}..={hi_n}) spans {n} \
                             tasks: an array with a step or a list is not supported, use \
                             --array=0-{} (or pass --shard I/N)",
                            n.saturating_sub(1)
                        )));
                    }
                }
                (task - lo_n, n)
            }
            _ => match &cnt {
                Some(c) => {
                    let c_n = num(c)?;
                    how.push(format!("SLURM_ARRAY_TASK_COUNT={c_n}"));
                    (task, c_n)
                }
                None => match &count_arg {
                    Some((n, h)) => {
                        how.push(h.clone());
                        (task, *n)
                    }
                    None => {
                        return Err(Error::Invalid(format!(
                        "SLURM_ARRAY_TASK_ID={task} is set but neither SLURM_ARRAY_TASK_MIN/MAX \
                             nor SLURM_ARRAY_TASK_COUNT is: pass --shards N (or --shard I/N)"
                    )))
                    }
                },
            },
        };
        if let Some((n, _)) = count_arg.filter(|&(n, _)| n != count) {
            return Err(Error::Invalid(format!(
                "--shards {n} but the Slurm array has {count} tasks ({})",
                how.join(", ")
            )));
        }
        let how = how.join(", ");
        return Ok(Some((Shard::new(index, count, &how)?, how)));
    }
    if let Some(id) = var("JOB_COMPLETION_INDEX") {
        let index = num(&id)?;
        let (count, from) = match (&count_arg, var(SHARDS_ENV)) {
            (Some((n, h)), _) => (*n, h.clone()),
            (None, Some(c)) => {
                let n = num(&c)?;
                (n, format!("{SHARDS_ENV}={n}"))
            }
            (None, None) => {
                return Err(Error::Invalid(format!(
                    "JOB_COMPLETION_INDEX={index} is set (a Kubernetes Indexed Job) but not the \
                     shard count: pass --shards N or set {SHARDS_ENV} to the Job's completions \
                     (or pass --shard 0/1 to score every line)"
                )))
            }
        };
        let how = format!("JOB_COMPLETION_INDEX={index}, {from}");
        return Ok(Some((Shard::new(index, count, &how)?, how)));
    }
    match count_arg {
        Some((n, _)) => Err(Error::Invalid(format!(
            "--shards {n} needs a shard index: --shard I/{n}, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX"
        ))),
        None => Ok(None),
    }
}

/// Output formats of `batch` and `merge`: the same columns in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Jsonl,
    Parquet,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

/// The output file of `shard` from `--out`: a folder (an existing one, or a path ending in `/`)
/// gets `scores-{shard}-of-{count}.<ext>` in it; `{shard}` and `{count}` in a name are replaced
/// by the numbers, zero-padded to 5 digits (as Hugging Face names dataset shards). A plain file
/// name is taken as it is for a single shard and refused for several (they would share it).
pub fn out_path(out: &Path, shard: Shard, format: Format) -> Result<PathBuf> {
    let text = out.to_string_lossy();
    let folder = out.is_dir() || text.ends_with('/');
    let pattern = if folder {
        out.join(format!(
            "scores-{{shard}}-of-{{count}}.{}",
            format.extension()
        ))
        .to_string_lossy()
        .into_owned()
    } else {
        text.into_owned()
    };
    if !pattern.contains("{shard}") {
        if shard.count == 1 {
            return Ok(out.to_path_buf());
        }
        return Err(Error::Invalid(format!(
            "--out {} with shard {shard}: every shard needs its own file; pass a folder or a \
             name with {{shard}} in it, e.g. scores-{{shard}}-of-{{count}}.{}",
            out.display(),
            format.extension()
        )));
    }
    Ok(PathBuf::from(
        pattern
            .replace("{shard}", &format!("{:05}", shard.index))
            .replace("{count}", &format!("{:05}", shard.count)),
    ))
}

/// Where a shard's output grows until it is complete (then renamed to `out`): `<out>.partial`.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn found(shard: Option<&str>, shards: Option<&str>, vars: &[(&str, &str)]) -> (u64, u64) {
        let (s, _) = detect(shard, shards, env(vars)).unwrap().unwrap();
        (s.index, s.count)
    }

    fn refused(shard: Option<&str>, shards: Option<&str>, vars: &[(&str, &str)]) -> String {
        let m = detect(shard, shards, env(vars)).unwrap_err().to_string();
        assert!(!m.contains('\n'), "{m:?}");
        m
    }

    #[test]
    fn shard_flag() {
        assert_eq!(found(Some("3/10"), None, &[]), (3, 10));
        assert_eq!(found(Some("0/1"), Some("1"), &[]), (0, 1));
        // The flag wins over the environment.
        assert_eq!(
            found(Some("1/2"), None, &[("SLURM_ARRAY_TASK_ID", "7")]),
            (1, 2)
        );
        for (bad, says) in [
            ("3/2", "not below the count 2"),
            ("2/2", "not below"),
            ("0/0", "count 0 is not in 1..="),
            ("0/1000001", "not in 1..=1000000"),
            ("1/99999999999999999999", "too large"),
            ("1/999999999999999999999", "not a whole number"),
            ("-1/4", "not a whole number"),
            ("+1/4", "not a whole number"),
            (" 1/4", "not a whole number"),
            ("1", "expected INDEX/COUNT"),
            ("1/2/3", "not a whole number"),
            ("a\nb/2", "a\\nb"),
        ] {
            let m = refused(Some(bad), None, &[]);
            assert!(m.contains(says) && m.starts_with("--shard"), "{bad}: {m}");
        }
        assert!(refused(Some("1/4"), Some("5"), &[]).contains("disagree"));
        assert!(refused(None, Some("4"), &[]).contains("needs a shard index"));
        assert_eq!(detect(None, None, env(&[])).unwrap(), None);
    }

    #[test]
    fn slurm_arrays() {
        let id = "SLURM_ARRAY_TASK_ID";
        let (lo, hi, n) = (
            "SLURM_ARRAY_TASK_MIN",
            "SLURM_ARRAY_TASK_MAX",
            "SLURM_ARRAY_TASK_COUNT",
        );
        assert_eq!(
            found(None, None, &[(id, "3"), (lo, "0"), (hi, "9"), (n, "10")]),
            (3, 10)
        );
        // --array=1-8: indices from 0.
        assert_eq!(
            found(None, None, &[(id, "1"), (lo, "1"), (hi, "8")]),
            (0, 8)
        );
        assert_eq!(found(None, None, &[(id, "4"), (n, "5")]), (4, 5));
        assert_eq!(found(None, Some("6"), &[(id, "4")]), (4, 6));
        for (vars, says) in [
            (
                vec![(id, "x"), (n, "4")],
                "SLURM_ARRAY_TASK_ID: `x` is not a whole number",
            ),
            (vec![(id, "")], "is not a whole number"),
            (
                vec![(id, "1"), (n, "four")],
                "SLURM_ARRAY_TASK_COUNT: `four`",
            ),
            (vec![(id, "5"), (lo, "9"), (hi, "2")], "MIN=9 is above"),
            (vec![(id, "12"), (lo, "0"), (hi, "9")], "outside"),
            (vec![(id, "4"), (n, "4")], "not below the count 4"),
            (
                vec![(id, "2"), (lo, "0"), (hi, "8"), (n, "5")],
                "with a step",
            ),
            (vec![(id, "2")], "pass --shards N"),
            (vec![(id, "0"), (lo, "0"), (hi, "1999999")], "not in 1..="),
        ] {
            let m = refused(None, None, &vars);
            assert!(m.contains(says), "{vars:?}: {m}");
        }
        assert!(refused(None, Some("3"), &[(id, "1"), (n, "4")]).contains("has 4 tasks"));
    }

    #[test]
    fn kubernetes_indexed_jobs() {
        let k = "JOB_COMPLETION_INDEX";
        assert_eq!(found(None, Some("4"), &[(k, "2")]), (2, 4));
        assert_eq!(found(None, None, &[(k, "2"), (SHARDS_ENV, "3")]), (2, 3));
        // --shards wins over the variable.
        assert_eq!(
            found(None, Some("8"), &[(k, "2"), (SHARDS_ENV, "3")]),
            (2, 8)
        );
        assert!(refused(None, None, &[(k, "2")]).contains("SCISCORE_SHARDS"));
        assert!(refused(None, None, &[(k, "3"), (SHARDS_ENV, "3")]).contains("not below"));
        assert!(refused(None, None, &[(k, "1"), (SHARDS_ENV, "0x4")]).contains("SCISCORE_SHARDS"));
        assert!(refused(None, Some("-2"), &[(k, "1")]).contains("--shards: `-2`"));
    }

    #[test]
    fn out_paths() {
        let dir = tempfile::tempdir().unwrap();
        let s = Shard::new(3, 12, "t").unwrap();
        assert_eq!(
            out_path(dir.path(), s, Format::Jsonl).unwrap(),
            dir.path().join("scores-00003-of-00012.jsonl")
        );
        assert_eq!(
            out_path(Path::new("new/"), s, Format::Parquet).unwrap(),
            Path::new("new/scores-00003-of-00012.parquet")
        );
        assert_eq!(
            out_path(Path::new("o/s{shard}.jsonl"), s, Format::Jsonl).unwrap(),
            Path::new("o/s00003.jsonl")
        );
        assert!(out_path(Path::new("o.jsonl"), s, Format::Jsonl).is_err());
        let one = Shard::new(0, 1, "t").unwrap();
        assert_eq!(
            out_path(Path::new("o.jsonl"), one, Format::Jsonl).unwrap(),
            Path::new("o.jsonl")
        );
        assert_eq!(
            partial_path(Path::new("a/b.jsonl")),
            Path::new("a/b.jsonl.partial")
        );
    }
}
