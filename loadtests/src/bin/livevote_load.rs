//! `livevote-load`: see `livevote_loadtests::load`.

use std::process::ExitCode;

use clap::Parser;

/// The generator shares the machine with the system it measures; with the
/// system allocator, malloc was a sixth of its CPU at 3,000 votes/s (`perf`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = livevote_loadtests::load::Cli::parse();
    livevote_loadtests::run_tool("livevote-load", livevote_loadtests::load::main(cli))
}
