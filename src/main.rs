//! `sciscore`: the command-line tool (contracts: docs/contracts.md). JSON on stdout with `--json`, a
//! one-line error on stderr and a non-zero exit on failure: 75 where a retry may succeed, 1
//! where it cannot (see [`exit_code`]).
//!
//! This file is the command table: it parses the command line, hands each subcommand to its file
//! in `cli/` (flags and work), and turns an error into one line and an exit status. The binary is
//! native only; for wasm32 (where cargo builds it beside the library's tests) `main` is empty.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = run() {
        // Context added here quotes paths and flags the user gave: escaped like the library's.
        eprintln!("error: {}", sciscore::shown(&format!("{e:#}")));
        std::process::exit(exit_code(&e));
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(clap::Parser)]
#[command(
    name = "sciscore",
    version,
    about = "Scientific-accuracy scores for images with SciScore and other CLIP reward models",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Each subcommand's flags and work are in cli/<name>.rs; its one-line help is here.
#[cfg(not(target_arch = "wasm32"))]
#[derive(clap::Subcommand)]
enum Cmd {
    /// Score images against one prompt (probabilities: softmax over these images), or
    /// against several (a prompts x images matrix).
    Score(cli::score::Args),
    /// Projected text and image features (before L2 normalization) and the raw logit_scale.
    Embed(cli::embed::Args),
    /// Evaluate the Science-T2I-S/-C benchmark (parquet file or folder of shards).
    Eval(cli::eval::Args),
    /// Score a JSONL manifest of {"prompt", "image", "group"?, "role"?} lines; resumable
    /// with --out; one shard of the lines with --shard or a Slurm / Kubernetes array index.
    #[command(after_help = EXIT_CODES)]
    Batch(cli::batch::Args),
    /// Write a copy of a model folder with f16 weights (half the download; loads in
    /// sciscore and in `transformers`).
    Convert(cli::convert::Args),
    /// Join the outputs of a sharded batch into one, in manifest order, checking that every
    /// manifest line is there exactly once; prints the summary batch prints.
    #[command(after_help = EXIT_CODES)]
    Merge(cli::merge::Args),
    /// Serve the web page (`www/`) on 127.0.0.1, with the demo model under /models/demo/.
    Serve(cli::serve::Args),
    /// Time the forward pass on a random model of a named geometry (no download).
    Bench(cli::bench::Args),
    /// Region maps: which parts of each image its score for a prompt comes from.
    Explain(cli::explain::Args),
}

#[cfg(not(target_arch = "wasm32"))]
fn run() -> anyhow::Result<()> {
    match parse_args().cmd {
        Cmd::Score(a) => cli::score::run(a),
        Cmd::Embed(a) => cli::embed::run(a),
        Cmd::Eval(a) => cli::eval::run(a),
        Cmd::Batch(a) => cli::batch::run(a),
        Cmd::Convert(a) => cli::convert::run(a),
        Cmd::Merge(a) => cli::merge::run(a),
        Cmd::Serve(a) => cli::serve::run(a),
        Cmd::Bench(a) => cli::bench::run(a),
        Cmd::Explain(a) => cli::explain::run(a),
    }
}

/// The command line, or exit: a usage error is one line on stderr (clap's own adds the usage
/// and a tip over several), naming the flag or value, with status 2 as clap uses.
#[cfg(not(target_arch = "wasm32"))]
fn parse_args() -> Cli {
    use clap::Parser;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            let text = e.render().to_string();
            // The message runs to the first blank line (a list of missing arguments spans
            // several); usage and tips follow it.
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!(
                "error: {} (see `sciscore --help`)",
                sciscore::shown(message)
            );
            std::process::exit(2);
        }
    }
}

/// Exit status for "run me again": the GPU device was lost or is missing here, an output
/// could not be written, or a signal stopped the run (EX_TEMPFAIL of sysexits.h).
#[cfg(not(target_arch = "wasm32"))]
const EXIT_RETRY: i32 = 75;
/// Exit status for "do not retry": a bad model folder, manifest or argument (as before
/// there were retry codes, every error exited 1).
#[cfg(not(target_arch = "wasm32"))]
const EXIT_FAIL: i32 = 1;

/// The exit status of a failed command, from the library's [`sciscore::Error`] in its chain
/// (see `Error::retryable`); errors of the CLI itself are not retryable.
#[cfg(not(target_arch = "wasm32"))]
fn exit_code(e: &anyhow::Error) -> i32 {
    let lib = e.chain().find_map(|c| c.downcast_ref::<sciscore::Error>());
    if lib.is_some_and(sciscore::Error::retryable) {
        EXIT_RETRY
    } else {
        EXIT_FAIL
    }
}

#[cfg(not(target_arch = "wasm32"))]
const EXIT_CODES: &str = "Exit status: 0 done; 75 retry (the GPU device was lost or is \
    missing on this machine, an output could not be written, or SIGTERM/SIGINT stopped the \
    run after the pass in flight; a rerun resumes); 1 do not retry (bad model folder, \
    manifest or arguments; the message says which); 2 bad command line.";
