//! `livevote-hostile`: see `livevote_loadtests::hostile`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = livevote_loadtests::hostile::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("livevote-hostile: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(livevote_loadtests::hostile::main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("livevote-hostile: {e:#}");
            ExitCode::from(2)
        }
    }
}
