//! `livevote-load`: see `livevote_loadtests::load`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = livevote_loadtests::load::Cli::parse();
    livevote_loadtests::run_tool("livevote-load", livevote_loadtests::load::main(cli))
}
