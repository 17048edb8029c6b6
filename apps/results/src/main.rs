//! `livevote-results`: telemetry -> config -> adapters -> services -> HTTP,
//! until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use livevote_results::app::App;
use livevote_results::config::Config;

/// mimalloc instead of the system allocator: the vote path allocates and
/// frees many small buffers a vote (ARCHITECTURE.md, cost per vote).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(message) = config.validate() {
        eprintln!("livevote-results: {message}");
        return ExitCode::from(2);
    }
    config.logging.init();
    let app = match App::build(&config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "start-up failed");
            eprintln!("livevote-results: start-up failed: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %app.local_addr(), "livevote-results listening");
    app.run(livevote_hosting::shutdown_signal()).await;
    ExitCode::SUCCESS
}
