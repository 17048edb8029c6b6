//! Configuration, parsed once at start-up from flags or environment
//! variables (every flag has one); defaults work against the local stack.
//! A bad value stops the service with a message naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use livevote_hosting::LogArgs;
use livevote_hosting::config::{
    CloudWatchArgs, DatabaseArgs, HttpArgs, QueueArgs, RedisArgs, Secret, TokenArgs, millis,
};

use crate::ratelimit::{Limit, RateLimitConfig};

/// Takes votes over HTTP and hands them to the queue (livevote ingestion).
#[derive(Debug, Clone, Parser)]
#[command(name = "livevote-ingestion", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LIVEVOTE_INGESTION_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL holding the election catalog (read on cache misses).
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub tokens: TokenArgs,

    /// Cloudflare Turnstile secret; unset: elections requiring a CAPTCHA refuse votes with 503.
    #[arg(long, env = "LIVEVOTE_TURNSTILE_SECRET", hide_env_values = true)]
    pub turnstile_secret: Option<Secret>,
    /// Turnstile siteverify URL.
    #[arg(long, env = "LIVEVOTE_TURNSTILE_URL", default_value = livevote_turnstile::SITEVERIFY_URL)]
    pub turnstile_url: String,
    /// Timeout of one siteverify call, ms.
    #[arg(long, env = "LIVEVOTE_TURNSTILE_TIMEOUT_MS", default_value = "2000", value_parser = millis)]
    pub turnstile_timeout: Duration,

    /// Votes per second per viewer (sustained); 0 switches the limit off.
    #[arg(long, env = "LIVEVOTE_RATE_VOTER_PER_SEC", default_value_t = 1.0)]
    pub rate_voter_per_sec: f64,
    /// Requests a viewer may send at once.
    #[arg(long, env = "LIVEVOTE_RATE_VOTER_BURST", default_value_t = 10)]
    pub rate_voter_burst: u32,
    /// Requests per second per client IP (sustained); 0 switches the limit off.
    #[arg(long, env = "LIVEVOTE_RATE_IP_PER_SEC", default_value_t = 200.0)]
    pub rate_ip_per_sec: f64,
    /// Requests a client IP may send at once.
    #[arg(long, env = "LIVEVOTE_RATE_IP_BURST", default_value_t = 400)]
    pub rate_ip_burst: u32,
    /// Most keys each rate limiter holds (bounds its memory).
    #[arg(long, env = "LIVEVOTE_RATE_MAX_KEYS", default_value_t = 1_000_000)]
    pub rate_max_keys: usize,
    /// Proxies in front of the service whose X-Forwarded-For entries are believed (0: use the TCP peer).
    #[arg(long, env = "LIVEVOTE_TRUSTED_PROXIES", default_value_t = 0)]
    pub trusted_proxies: usize,

    /// Votes waiting for the vote pipeline before requests are shed with 503 (nothing claimed).
    #[arg(long, env = "LIVEVOTE_PUBLISH_BUFFER", default_value_t = 20_000)]
    pub publish_buffer: usize,
    /// Most votes per batch of the pipeline: one claim round trip, one publish call (packed into
    /// SQS messages, up to 10 per SendMessageBatch), one confirm call.
    #[arg(long, env = "LIVEVOTE_PUBLISH_MAX_BATCH", default_value_t = 500)]
    pub publish_max_batch: usize,
    /// Longest a vote waits for its batch to fill, ms.
    #[arg(long, env = "LIVEVOTE_PUBLISH_LINGER_MS", default_value = "2", value_parser = millis)]
    pub publish_linger: Duration,
    /// Batches of the pipeline running at once.
    #[arg(long, env = "LIVEVOTE_PUBLISH_IN_FLIGHT", default_value_t = 32)]
    pub publish_in_flight: usize,

    /// Oldest election copy served without asking Redis/PostgreSQL again, ms (at most 1000).
    #[arg(long, env = "LIVEVOTE_ELECTION_CACHE_MS", default_value = "500", value_parser = millis)]
    pub election_cache_max_age: Duration,

    /// Most this host's clock may be off the Redis server's before it refuses votes
    /// (503) and reports not ready, ms; 0 turns the check off.
    #[arg(long, env = "LIVEVOTE_MAX_CLOCK_SKEW_MS", default_value = "1000", value_parser = millis)]
    pub max_clock_skew: Duration,

    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub cloudwatch: CloudWatchArgs,

    #[command(flatten)]
    pub logging: LogArgs,
}

impl Config {
    /// The rate limits this configuration asks for.
    pub fn rate_limits(&self) -> RateLimitConfig {
        RateLimitConfig {
            per_voter: Some(Limit {
                per_second: self.rate_voter_per_sec,
                burst: self.rate_voter_burst,
            }),
            per_ip: Some(Limit {
                per_second: self.rate_ip_per_sec,
                burst: self.rate_ip_burst,
            }),
            max_keys: self.rate_max_keys,
        }
    }

    /// Checks what clap cannot.
    ///
    /// # Errors
    /// A message naming the variable at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.tokens.validate()?;
        self.redis.validate()?;
        if self.election_cache_max_age > Duration::from_secs(1) || self.election_cache_max_age.is_zero() {
            return Err(
                "LIVEVOTE_ELECTION_CACHE_MS must be between 1 and 1000 (a close must be seen within 1 s)"
                    .into(),
            );
        }
        if self.publish_buffer == 0 || self.publish_max_batch == 0 || self.publish_in_flight == 0 {
            return Err("LIVEVOTE_PUBLISH_BUFFER, LIVEVOTE_PUBLISH_MAX_BATCH and LIVEVOTE_PUBLISH_IN_FLIGHT must be > 0".into());
        }
        for (name, rate) in [
            ("LIVEVOTE_RATE_VOTER_PER_SEC", self.rate_voter_per_sec),
            ("LIVEVOTE_RATE_IP_PER_SEC", self.rate_ip_per_sec),
        ] {
            if rate.is_nan() || rate < 0.0 || rate.is_infinite() {
                return Err(format!("{name} must be a number >= 0"));
            }
        }
        Ok(())
    }
}

livevote_hosting::readme_documents_every_variable!(Config);
