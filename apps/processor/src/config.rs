//! Configuration, parsed once at start-up from flags or environment
//! variables; defaults work against the local stack.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use livevote_hosting::LogArgs;
use livevote_hosting::config::{CloudWatchArgs, DatabaseArgs, QueueArgs, millis, seconds};

use crate::runner::RunnerConfig;

/// Drains the vote queue into PostgreSQL (livevote processor).
#[derive(Debug, Clone, Parser)]
#[command(name = "livevote-processor", version, about, long_about = None)]
pub struct Config {
    /// Apply the database migrations (under an advisory lock, idempotent) and exit, instead of consuming.
    #[arg(long)]
    pub migrate: bool,
    /// Address of the health and metrics endpoints.
    #[arg(long, env = "LIVEVOTE_PROCESSOR_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// PostgreSQL holding the votes (migrated beforehand).
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Concurrent long-polling receivers.
    #[arg(long, env = "LIVEVOTE_PROCESSOR_RECEIVERS", default_value_t = 4)]
    pub receivers: usize,
    /// Long-poll wait per receive, seconds (at most 20).
    #[arg(long, env = "LIVEVOTE_PROCESSOR_RECEIVE_WAIT_SECS", default_value = "20", value_parser = seconds)]
    pub receive_wait: Duration,
    /// Most votes persisted in one transaction.
    #[arg(long, env = "LIVEVOTE_PROCESSOR_BATCH_VOTES", default_value_t = 2000)]
    pub batch_votes: usize,
    /// Batches persisted at once (keep at most LIVEVOTE_DATABASE_POOL).
    #[arg(long, env = "LIVEVOTE_PROCESSOR_IN_FLIGHT", default_value_t = 4)]
    pub in_flight: usize,
    /// Longest a batch waits to fill after its first message, ms.
    #[arg(long, env = "LIVEVOTE_PROCESSOR_LINGER_MS", default_value = "50", value_parser = millis)]
    pub linger: Duration,
    /// How often the visibility of the batch in hand is extended, seconds.
    #[arg(long, env = "LIVEVOTE_PROCESSOR_EXTEND_EVERY_SECS", default_value = "10", value_parser = seconds)]
    pub extend_every: Duration,
    /// By how much each extension hides the batch's messages, seconds.
    #[arg(long, env = "LIVEVOTE_PROCESSOR_EXTENSION_SECS", default_value = "30", value_parser = seconds)]
    pub extension: Duration,
    /// At shutdown, how long a failing final batch is retried, seconds.
    #[arg(long, env = "LIVEVOTE_SHUTDOWN_GRACE_SECS", default_value = "20", value_parser = seconds)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub cloudwatch: CloudWatchArgs,
    #[command(flatten)]
    pub logging: LogArgs,
}

impl Config {
    /// # Errors
    /// A message naming the variable at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.receive_wait > Duration::from_secs(20) {
            return Err("LIVEVOTE_PROCESSOR_RECEIVE_WAIT_SECS must be at most 20 (the SQS limit)".into());
        }
        if self.receivers == 0 || self.batch_votes == 0 || self.in_flight == 0 {
            return Err(
                "LIVEVOTE_PROCESSOR_RECEIVERS, LIVEVOTE_PROCESSOR_BATCH_VOTES and LIVEVOTE_PROCESSOR_IN_FLIGHT must be > 0"
                    .into(),
            );
        }
        if self.extend_every.is_zero() || self.extension <= self.extend_every {
            return Err(
                "LIVEVOTE_PROCESSOR_EXTENSION_SECS must be longer than LIVEVOTE_PROCESSOR_EXTEND_EVERY_SECS (> 0)".into(),
            );
        }
        Ok(())
    }

    pub fn runner(&self) -> RunnerConfig {
        RunnerConfig {
            receivers: self.receivers,
            receive_wait: self.receive_wait,
            max_batch_votes: self.batch_votes,
            max_in_flight: self.in_flight,
            linger: self.linger,
            extend_every: self.extend_every,
            extension: self.extension,
            stop_grace: self.shutdown_grace,
            ..RunnerConfig::default()
        }
    }
}

livevote_hosting::readme_documents_every_variable!(Config);
