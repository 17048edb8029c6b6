//! `livevote-load`: see `livevote_loadtests::load`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = livevote_loadtests::load::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("livevote-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(livevote_loadtests::load::main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("livevote-load: {e:#}");
            ExitCode::from(2)
        }
    }
}
