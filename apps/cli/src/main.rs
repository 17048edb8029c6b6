//! `livevote`: parses the command line and runs it (see the library).

use std::process::ExitCode;

use clap::Parser;
use livevote_cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    run(Cli::parse()).await
}
