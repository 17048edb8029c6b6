//! Structured logs: one JSON object per line (or plain text for people),
//! filtered by `LIVEVOTE_LOG`.

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
