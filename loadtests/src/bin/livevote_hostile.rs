//! `livevote-hostile`: see `livevote_loadtests::hostile`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = livevote_loadtests::hostile::Cli::parse();
    livevote_loadtests::run_tool("livevote-hostile", livevote_loadtests::hostile::main(cli))
}
