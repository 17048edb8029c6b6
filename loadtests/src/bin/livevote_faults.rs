//! `livevote-faults`: see `livevote_loadtests::faults`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = livevote_loadtests::faults::Cli::parse();
    livevote_loadtests::run_tool("livevote-faults", livevote_loadtests::faults::main(cli))
}
