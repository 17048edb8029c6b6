//! Configuration, parsed once at start-up from flags or environment
//! variables (every flag has one); defaults work against the local stack.
//! A bad value stops the service with a message naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use livevote_hosting::LogArgs;
use livevote_hosting::config::{
    CloudWatchArgs, DatabaseArgs, HttpArgs, QueueArgs, RedisArgs, TokenArgs, millis, seconds,
};

/// Serves results, election admin, reconciliation and the on-air and audit pages (livevote results).
#[derive(Debug, Clone, Parser)]
#[command(name = "livevote-results", version, about, long_about = None)]
#[command(mut_arg("database_pool", |a| a.default_value("8")))]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LIVEVOTE_RESULTS_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// PostgreSQL: elections, the audit log, persisted votes and tallies.
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The vote queue (its depth and dead-letter queue enter reconciliation).
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,

    /// Oldest results served without reading the stores again, ms (1..=1000; results must be fresh within 1 s).
    #[arg(long, env = "LIVEVOTE_RESULTS_CACHE_MS", default_value = "100", value_parser = millis)]
    pub results_cache: Duration,
    /// How often a watched election's stream reads new counts, ms (1..=1000).
    #[arg(long, env = "LIVEVOTE_RESULTS_POLL_MS", default_value = "100", value_parser = millis)]
    pub results_poll: Duration,
    /// Least time between two `VOTE_UPDATE` events of one stream, ms (1..=1000).
    #[arg(long, env = "LIVEVOTE_RESULTS_STREAM_UPDATE_MS", default_value = "200", value_parser = millis)]
    pub stream_update: Duration,
    /// How often the open and closed elections are reconciled for the metrics
    /// (`livevote_reconciliation_*`, queue age, dead letters), seconds; 0: never.
    #[arg(long, env = "LIVEVOTE_RESULTS_RECONCILE_SECS", default_value = "15", value_parser = seconds)]
    pub reconcile_every: Duration,
    /// How long after a "close now" the election's end is set, ms: the longest an
    /// ingestion host may go on accepting before it hears of the close (its election
    /// cache age, at most 1 s, plus the clock skew it tolerates, 1 s). Votes accepted
    /// in that time are stamped before the end and count; none is stamped after it.
    #[arg(long, env = "LIVEVOTE_CLOSE_GRACE_MS", default_value = "2000", value_parser = millis)]
    pub close_grace: Duration,
    /// Most open result streams (Server-Sent Events) per instance; beyond: 503.
    #[arg(long, env = "LIVEVOTE_RESULTS_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Seconds between two HEARTBEAT events of a stream.
    #[arg(long, env = "LIVEVOTE_RESULTS_HEARTBEAT_SECS", default_value = "15", value_parser = seconds)]
    pub heartbeat: Duration,

    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub cloudwatch: CloudWatchArgs,

    #[command(flatten)]
    pub logging: LogArgs,
}

impl Config {
    /// Checks what clap cannot.
    ///
    /// # Errors
    /// A message naming the variable at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.tokens.validate()?;
        self.redis.validate()?;
        for (name, d) in [
            ("LIVEVOTE_RESULTS_CACHE_MS", self.results_cache),
            ("LIVEVOTE_RESULTS_POLL_MS", self.results_poll),
            ("LIVEVOTE_RESULTS_STREAM_UPDATE_MS", self.stream_update),
        ] {
            if d.is_zero() || d > Duration::from_secs(1) {
                return Err(format!(
                    "{name} must be between 1 and 1000 (results on air must be fresh within 1 s)"
                ));
            }
        }
        if self.max_streams == 0 {
            return Err("LIVEVOTE_RESULTS_MAX_STREAMS must be > 0".into());
        }
        if self.heartbeat.is_zero() {
            return Err("LIVEVOTE_RESULTS_HEARTBEAT_SECS must be > 0".into());
        }
        Ok(())
    }
}

livevote_hosting::readme_documents_every_variable!(Config);
