//! The `sciscore` binary's subcommands, one file each: its flags (a clap `Args` struct) and its
//! `run`, on top of the library's `Model` and jobs. `common.rs` holds what several share,
//! `server.rs` the HTTP server behind `serve`, `interrupt.rs` the signal handling of `batch`.
//! Only the binary compiles these (`mod cli` in main.rs); the library knows nothing of them.

pub mod batch;
pub mod bench;
pub mod convert;
pub mod embed;
pub mod eval;
pub mod explain;
pub mod merge;
pub mod score;
pub mod serve;

mod common;
mod interrupt;
mod server;
