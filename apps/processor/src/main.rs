//! `livevote-processor`: telemetry -> config -> adapters -> runner, until
//! SIGTERM or Ctrl-C; the batch in hand is committed before exit.

use std::process::ExitCode;

use clap::Parser;
use livevote_processor::app::App;
use livevote_processor::config::Config;

/// mimalloc instead of the system allocator: the vote path allocates and
/// frees many small buffers a vote (ARCHITECTURE.md, cost per vote).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(message) = config.validate() {
        eprintln!("livevote-processor: {message}");
        return ExitCode::from(2);
    }
    config.logging.init();
    #[cfg(feature = "failpoints")]
    let _failpoints = livevote_hosting::faults::arm_from_env();
    if config.migrate {
        return migrate(&config).await;
    }
    let app = match App::build(&config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "start-up failed");
            eprintln!("livevote-processor: start-up failed: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %app.local_addr(), "livevote-processor listening");
    app.run(livevote_hosting::shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// `--migrate`: the explicit migration step, never run by a consuming replica.
async fn migrate(config: &Config) -> ExitCode {
    let result = async {
        let pool = livevote_postgres::connect_lazy(&config.database.url, 1)?;
        livevote_postgres::migrate(&pool).await
    }
    .await;
    match result {
        Ok(applied) => {
            tracing::info!(?applied, "migrations applied");
            println!("migrations applied: {applied:?}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("livevote-processor: migration failed (LIVEVOTE_DATABASE_URL): {error:#}");
            ExitCode::FAILURE
        }
    }
}
