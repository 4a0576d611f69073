//! `sciscore serve`: the page in `www/` on 127.0.0.1 (the server itself is `server.rs`).

use super::server;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The folder to serve.
    #[arg(long, default_value = "www")]
    root: PathBuf,
    /// The demo model folder served under /models/demo/ [default:
    /// tests/fixtures/models/tiny224 when it exists].
    #[arg(long)]
    demo: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let Args { port, root, demo } = a;
    if !root.join("index.html").is_file() {
        bail!(
            "{} has no index.html: run from the repository root or pass --root DIR",
            root.display()
        );
    }
    if !root.join("pkg/sciscore_bg.wasm").is_file() {
        eprintln!(
            "warning: {}/pkg/ has no wasm build yet; scripts/serve builds it",
            root.display()
        );
    }
    let demo = demo.or_else(|| {
        let d = PathBuf::from("tests/fixtures/models/tiny224");
        d.join("config.json").is_file().then_some(d)
    });
    let site = server::Site::new(&root, demo.as_deref())?;
    let (listener, addr) = server::bind(port).with_context(|| {
        format!("cannot listen on 127.0.0.1:{port} (in use? pass another --port, or 0)")
    })?;
    println!("serving {} on http://{addr}/", root.display());
    if demo.is_some() {
        println!("with the demo model: http://{addr}/?model=models/demo/");
    }
    std::io::Write::flush(&mut std::io::stdout())?;
    server::run(listener, site)?;
    Ok(())
}
