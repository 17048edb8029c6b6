//! Configuration, parsed once at start-up from flags or environment
//! variables (every flag has one); defaults work against the local stack.
//! A bad value stops the service with a message naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use livevote_hosting::LogArgs;
use livevote_hosting::config::{millis, seconds};

/// Serves results, election admin, reconciliation and the on-air and audit pages (livevote results).
#[derive(Debug, Clone, Parser)]
#[command(name = "livevote-results", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LIVEVOTE_RESULTS_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// PostgreSQL: elections, the audit log, persisted votes and tallies.
    #[arg(
        long,
        env = "LIVEVOTE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/livevote"
    )]
    pub database_url: String,
    /// Connections to PostgreSQL.
    #[arg(long, env = "LIVEVOTE_DATABASE_POOL", default_value_t = 8)]
    pub database_pool: u32,

    /// Redis (>= 7.0): live accepted tallies, vote claims, the election cache and its change feed.
    #[arg(long, env = "LIVEVOTE_REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,
    /// Prefix of every Redis key (no braces); the same as ingestion's.
    #[arg(long, env = "LIVEVOTE_REDIS_PREFIX", default_value = "lv")]
    pub redis_prefix: String,
    /// Connections to Redis.
    #[arg(long, env = "LIVEVOTE_REDIS_POOL", default_value_t = 4)]
    pub redis_pool: usize,

    /// SQS endpoint override (a local SQS-compatible server); unset: AWS, from the standard AWS variables.
    #[arg(long, env = "LIVEVOTE_SQS_ENDPOINT")]
    pub sqs_endpoint: Option<String>,
    /// The vote queue's name (its depth and dead-letter queue `<name>-dlq` enter reconciliation).
    #[arg(long, env = "LIVEVOTE_QUEUE_NAME", default_value = "livevote-votes")]
    pub queue_name: String,

    /// JWKS of the token issuer (Auth0: https://<tenant>/.well-known/jwks.json).
    #[arg(
        long,
        env = "LIVEVOTE_JWKS_URL",
        default_value = "http://127.0.0.1:8089/.well-known/jwks.json"
    )]
    pub jwks_url: String,
    /// Expected token issuer (`iss`).
    #[arg(long, env = "LIVEVOTE_JWT_ISSUER", default_value = "http://127.0.0.1:8089/")]
    pub jwt_issuer: String,
    /// Expected token audience (`aud`).
    #[arg(
        long,
        env = "LIVEVOTE_JWT_AUDIENCE",
        default_value = "https://api.livevote.local"
    )]
    pub jwt_audience: String,
    /// Clock skew tolerated on `exp`/`nbf`, seconds (at most 30).
    #[arg(long, env = "LIVEVOTE_JWT_LEEWAY_SECS", default_value = "10", value_parser = seconds)]
    pub jwt_leeway: Duration,
    /// Longest token lifetime accepted (`exp - iat`), seconds; tokens must then carry `iat`.
    /// `0`: no cap (and no `iat` needed).
    #[arg(long, env = "LIVEVOTE_JWT_MAX_LIFETIME_SECS", default_value = "86400", value_parser = seconds)]
    pub jwt_max_lifetime: Duration,
    /// How often the JWKS is refetched in the background, seconds.
    #[arg(long, env = "LIVEVOTE_JWKS_REFRESH_SECS", default_value = "600", value_parser = seconds)]
    pub jwks_refresh: Duration,

    /// Oldest results served without reading the stores again, ms (1..=1000; results must be fresh within 1 s).
    #[arg(long, env = "LIVEVOTE_RESULTS_CACHE_MS", default_value = "250", value_parser = millis)]
    pub results_cache: Duration,
    /// How often a watched election's stream looks for new counts, ms (1..=1000).
    #[arg(long, env = "LIVEVOTE_RESULTS_POLL_MS", default_value = "250", value_parser = millis)]
    pub results_poll: Duration,
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

    /// Longest a request may take before it is answered 503, ms.
    #[arg(long, env = "LIVEVOTE_REQUEST_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub request_timeout: Duration,
    /// A client must send its request head within this time, ms (slowloris).
    #[arg(long, env = "LIVEVOTE_HEADER_TIMEOUT_MS", default_value = "5000", value_parser = millis)]
    pub header_timeout: Duration,
    /// How long shutdown waits for requests in flight, seconds.
    #[arg(long, env = "LIVEVOTE_SHUTDOWN_GRACE_SECS", default_value = "20", value_parser = seconds)]
    pub shutdown_grace: Duration,

    /// CloudWatch namespace; unset: CloudWatch publishing off.
    #[arg(long, env = "LIVEVOTE_CLOUDWATCH_NAMESPACE")]
    pub cloudwatch_namespace: Option<String>,
    /// CloudWatch endpoint override (a local endpoint).
    #[arg(long, env = "LIVEVOTE_CLOUDWATCH_ENDPOINT")]
    pub cloudwatch_endpoint: Option<String>,

    #[command(flatten)]
    pub logging: LogArgs,
}

impl Config {
    /// Checks what clap cannot.
    ///
    /// # Errors
    /// A message naming the variable at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.jwt_leeway > Duration::from_secs(30) {
            return Err("LIVEVOTE_JWT_LEEWAY_SECS must be at most 30".into());
        }
        for (name, d) in [
            ("LIVEVOTE_RESULTS_CACHE_MS", self.results_cache),
            ("LIVEVOTE_RESULTS_POLL_MS", self.results_poll),
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
        if self.redis_prefix.contains(['{', '}']) || self.redis_prefix.is_empty() {
            return Err("LIVEVOTE_REDIS_PREFIX must be non-empty and contain no braces".into());
        }
        Ok(())
    }
}
