//! Writes a random model folder of a named geometry, for throughput runs of `sciscore eval` and
//! `sciscore batch` on the real CLIP-H shapes without a download:
//!
//!     cargo run --release --example random_model -- clip-h /tmp/clip-h-random
//!
//! The tokenizer and preprocessor files are copied from the tiny224 fixture (CLIP's real BPE
//! vocabulary and 224 px preprocessing).

use sciscore::random::RandomSource;
use sciscore::ModelSource;
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (preset, out) = match &args[..] {
        [_, p, o] => (p.as_str(), std::path::PathBuf::from(o)),
        _ => return Err("usage: random_model <clip-h|clip-b|tiny> <out-dir>".into()),
    };
    std::fs::create_dir_all(&out)?;
    let src = RandomSource::new(preset, None, 0x5c1)?;
    for name in ["config.json", "model.safetensors"] {
        let size = pollster::block_on(src.size(name))?.ok_or("missing file")?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(out.join(name))?);
        let mut at = 0;
        while at < size {
            let n = (size - at).min(64 << 20);
            f.write_all(&pollster::block_on(src.read(name, at, n))?)?;
            at += n;
        }
    }
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny224");
    for name in [
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
    ] {
        std::fs::copy(fixture.join(name), out.join(name))?;
    }
    println!("wrote {}", out.display());
    Ok(())
}
