//! `sciscore embed`: projected text and image features (before L2 normalization) and the raw
//! `logit_scale`.

use super::common::{image_pixels, load, BackendArg};
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: String,
    #[arg(long)]
    text: Vec<String>,
    #[arg(long)]
    image: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendArg,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        model,
        text,
        image,
        backend,
        json,
    } = a;
    let m = load(&model, backend)?;
    let prompts: Vec<&str> = text.iter().map(String::as_str).collect();
    let t = pollster::block_on(m.text_embeds(&prompts))?;
    let v = if image.is_empty() {
        Vec::new()
    } else {
        let pixels = image_pixels(&m, &image)?;
        pollster::block_on(m.embed_pixels(&pixels, image.len()))?
    };
    let out = json!({"text_embeds": t, "image_embeds": v, "logit_scale": m.logit_scale()});
    if json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
