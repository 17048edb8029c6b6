//! `livevote-ingestion`: telemetry -> config -> adapters -> service -> HTTP,
//! until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use livevote_ingestion::app::App;
use livevote_ingestion::config::Config;

/// mimalloc instead of the system allocator: the vote path allocates and
/// frees many small buffers a vote (ARCHITECTURE.md, cost per vote).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(message) = config.validate() {
        eprintln!("livevote-ingestion: {message}");
        return ExitCode::from(2);
    }
    config.logging.init();
    #[cfg(feature = "failpoints")]
    let _failpoints = livevote_hosting::faults::arm_from_env();
    let app = match App::build(&config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "start-up failed");
            eprintln!("livevote-ingestion: start-up failed: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %app.local_addr(), "livevote-ingestion listening");
    app.run(livevote_hosting::shutdown_signal()).await;
    ExitCode::SUCCESS
}
