//! Process set-up the services share: structured logs (one JSON object per
//! line, or plain text for people, filtered by `LIVEVOTE_LOG`) and the stop
//! signal. Telemetry lives here so no `common` crate is needed.

use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// The log settings every service takes (flattened into its clap config).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `livevote_ingestion=debug,info`.
    #[arg(long, env = "LIVEVOTE_LOG", default_value = "info", value_parser = log_filter)]
    pub log: String,
    /// Log format: `json` (one object per line) or `text`.
    #[arg(long, env = "LIVEVOTE_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,
}

fn log_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("LIVEVOTE_LOG is not a log filter: {e}"))
}

impl LogArgs {
    /// Installs the global subscriber. Only the first call in a process
    /// installs one; a later call says so on stderr and changes nothing.
    pub fn init(&self) {
        // The filter was checked when the configuration was parsed.
        let filter = EnvFilter::new(&self.log);
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stdout);
        let installed = if self.log_format == "text" {
            builder.try_init()
        } else {
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .try_init()
        };
        if let Err(error) = installed {
            eprintln!("logging already set up in this process; keeping it ({error})");
        }
    }
}

/// A clap value parser: a whole number of milliseconds.
///
/// # Errors
/// When `s` is not one.
pub fn millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("{s:?} is not a number of milliseconds: {e}"))
}

/// A clap value parser: a whole number of seconds.
///
/// # Errors
/// When `s` is not one.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
