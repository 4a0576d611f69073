//! `sciscore score`: images against one prompt (probabilities over the images), or against
//! several (a prompts x images matrix).

use super::common::{file_pixels, load, BackendArg};
use anyhow::Result;
use sciscore::ScoreMatrix;
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face CLIPModel folder, or a repo id found in the local Hugging Face cache.
    #[arg(long)]
    model: String,
    /// Repeat for several prompts: the JSON adds "prompts" and "matrix" (rows prompts,
    /// columns images); "prompt" and "results" stay the first prompt's.
    #[arg(long, required = true)]
    prompt: Vec<String>,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendArg,
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let Args {
        model,
        prompt: prompts,
        images,
        backend,
        json,
    } = a;
    let m = load(&model, backend)?;
    // The first image that cannot be read ends the command before any model pass.
    let pixels: Vec<Vec<f32>> = images
        .iter()
        .map(|p| file_pixels(&m, p))
        .collect::<sciscore::Result<_>>()?;
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    // The library's one scoring path (Model::score_each_pixels), as the page's.
    let pixels = pixels.into_iter().map(Ok).collect();
    let matrix = pollster::block_on(m.score_each_pixels(&texts, pixels))?.into_matrix()?;
    let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    if json {
        println!("{}", score_json(&prompts, &names, &matrix));
    } else if prompts.len() == 1 {
        print_ranking(&prompts[0], &names, &matrix);
    } else {
        print_matrix(&prompts, &names, &matrix);
    }
    Ok(())
}

/// `score --json`: the first prompt's `{"prompt", "results"}`, plus `"prompts"` and
/// `"matrix"` when there are several.
fn score_json(prompts: &[String], names: &[String], m: &ScoreMatrix) -> serde_json::Value {
    let results: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({"image": name, "score": m.scores[0][i], "prob": m.probs_over_images[0][i]})
        })
        .collect();
    let mut out = json!({"prompt": prompts[0], "results": results});
    if prompts.len() > 1 {
        out["prompts"] = json!(prompts);
        out["matrix"] = json!(m);
    }
    out
}

/// One prompt: its images from most to least probable.
fn print_ranking(prompt: &str, names: &[String], m: &ScoreMatrix) {
    println!("prompt: {prompt}");
    let (scores, probs) = (&m.scores[0], &m.probs_over_images[0]);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    for i in order {
        println!(
            "{:>7.2}%  score {:>8.4}  {}",
            probs[i] * 100.0,
            scores[i],
            names[i]
        );
    }
}

/// Several prompts: a table of prompts (rows) by images (columns), each cell
/// `score  p(image | prompt)  p(prompt | image)`, with the best of each row and column marked.
fn print_matrix(prompts: &[String], names: &[String], m: &ScoreMatrix) {
    let argmax = |xs: &mut dyn Iterator<Item = f32>| {
        xs.enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, x)| if x > b.1 { (i, x) } else { b },
            )
            .0
    };
    let best_image: Vec<usize> = m
        .scores
        .iter()
        .map(|row| argmax(&mut row.iter().copied()))
        .collect();
    let best_prompt: Vec<usize> = (0..names.len())
        .map(|i| argmax(&mut m.scores.iter().map(|row| row[i])))
        .collect();
    for (p, text) in prompts.iter().enumerate() {
        println!("P{}  {text}", p + 1);
    }
    for (i, name) in names.iter().enumerate() {
        println!("I{}  {name}", i + 1);
    }
    println!(
        "cells: score, probability over the images (per prompt) / over the prompts (per image); \
         * best image of the prompt, + best prompt of the image"
    );
    // Each cell: `{:>8.4} {:>6.2}% / {:>6.2}% ` and two marks.
    const CELL: usize = 29;
    let mut head = format!("{:<4}", "");
    for i in 0..names.len() {
        head += &format!(" | {:<CELL$}", format!("I{}", i + 1));
    }
    println!("{head}");
    println!("{}", "-".repeat(head.len()));
    for (p, &best_i) in best_image.iter().enumerate() {
        let mut line = format!("{:<4}", format!("P{}", p + 1));
        for (i, &best_p) in best_prompt.iter().enumerate() {
            let marks = format!(
                "{}{}",
                if best_i == i { "*" } else { "" },
                if best_p == p { "+" } else { "" }
            );
            line += &format!(
                " | {:>8.4} {:>6.2}% / {:>6.2}% {marks:<2}",
                m.scores[p][i],
                m.probs_over_images[p][i] * 100.0,
                m.probs_over_prompts[p][i] * 100.0
            );
        }
        println!("{}", line.trim_end());
    }
}
