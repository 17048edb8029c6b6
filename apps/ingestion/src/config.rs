//! Configuration, parsed once at start-up from flags or environment
//! variables (every flag has one); defaults work against the local stack.
//! A bad value stops the service with a message naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use livevote_hosting::LogArgs;
use livevote_hosting::config::{Secret, millis, seconds};

use crate::ratelimit::{Limit, RateLimitConfig};

/// Takes votes over HTTP and hands them to the queue (livevote ingestion).
#[derive(Debug, Clone, Parser)]
#[command(name = "livevote-ingestion", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LIVEVOTE_INGESTION_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL holding the election catalog (read on cache misses).
    #[arg(
        long,
        env = "LIVEVOTE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/livevote"
    )]
    pub database_url: String,
    /// Connections to PostgreSQL.
    #[arg(long, env = "LIVEVOTE_DATABASE_POOL", default_value_t = 4)]
    pub database_pool: u32,

    /// Redis (>= 7.0) for dedup claims, live tallies, the election cache and its change feed.
    #[arg(long, env = "LIVEVOTE_REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,
    /// Prefix of every Redis key (no braces).
    #[arg(long, env = "LIVEVOTE_REDIS_PREFIX", default_value = "lv")]
    pub redis_prefix: String,
    /// Connections to Redis.
    #[arg(long, env = "LIVEVOTE_REDIS_POOL", default_value_t = 4)]
    pub redis_pool: usize,

    /// SQS endpoint override (a local SQS-compatible server); unset: AWS, from the standard AWS variables.
    #[arg(long, env = "LIVEVOTE_SQS_ENDPOINT")]
    pub sqs_endpoint: Option<String>,
    /// The vote queue's name; its dead-letter queue is `<name>-dlq`.
    #[arg(long, env = "LIVEVOTE_QUEUE_NAME", default_value = "livevote-votes")]
    pub queue_name: String,

    /// JWKS of the token issuer (Auth0: https://<tenant>/.well-known/jwks.json).
    #[arg(
        long,
        env = "LIVEVOTE_JWKS_URL",
        default_value = "http://127.0.0.1:8089/.well-known/jwks.json"
    )]
    pub jwks_url: String,
    /// Expected token issuer (`iss`), e.g. https://<tenant>/ for Auth0.
    #[arg(long, env = "LIVEVOTE_JWT_ISSUER", default_value = "http://127.0.0.1:8089/")]
    pub jwt_issuer: String,
    /// Expected token audience (`aud`): the API identifier.
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

    /// Votes buffered for the queue before requests are shed with 503.
    #[arg(long, env = "LIVEVOTE_PUBLISH_BUFFER", default_value_t = 20_000)]
    pub publish_buffer: usize,
    /// Most votes per publish call (packed into SQS messages, up to 10 per SendMessageBatch).
    #[arg(long, env = "LIVEVOTE_PUBLISH_MAX_BATCH", default_value_t = 500)]
    pub publish_max_batch: usize,
    /// Longest a vote waits for its batch to fill, ms.
    #[arg(long, env = "LIVEVOTE_PUBLISH_LINGER_MS", default_value = "2", value_parser = millis)]
    pub publish_linger: Duration,
    /// Publish calls in flight at once.
    #[arg(long, env = "LIVEVOTE_PUBLISH_IN_FLIGHT", default_value_t = 32)]
    pub publish_in_flight: usize,

    /// Oldest election copy served without asking Redis/PostgreSQL again, ms (at most 1000).
    #[arg(long, env = "LIVEVOTE_ELECTION_CACHE_MS", default_value = "500", value_parser = millis)]
    pub election_cache_max_age: Duration,

    /// Most this host's clock may be off the Redis server's before it refuses votes
    /// (503) and reports not ready, ms; 0 turns the check off.
    #[arg(long, env = "LIVEVOTE_MAX_CLOCK_SKEW_MS", default_value = "1000", value_parser = millis)]
    pub max_clock_skew: Duration,

    /// Longest a request may take before it is answered 503, ms.
    #[arg(long, env = "LIVEVOTE_REQUEST_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub request_timeout: Duration,
    /// A client must send its request head within this time, ms (slowloris).
    #[arg(long, env = "LIVEVOTE_HEADER_TIMEOUT_MS", default_value = "5000", value_parser = millis)]
    pub header_timeout: Duration,
    /// How long shutdown waits for requests in flight and the publish buffer, seconds.
    #[arg(long, env = "LIVEVOTE_SHUTDOWN_GRACE_SECS", default_value = "20", value_parser = seconds)]
    pub shutdown_grace: Duration,

    /// CloudWatch namespace for votes.accepted; unset: CloudWatch publishing off.
    #[arg(long, env = "LIVEVOTE_CLOUDWATCH_NAMESPACE")]
    pub cloudwatch_namespace: Option<String>,
    /// CloudWatch endpoint override (a local endpoint).
    #[arg(long, env = "LIVEVOTE_CLOUDWATCH_ENDPOINT")]
    pub cloudwatch_endpoint: Option<String>,

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
        if self.jwt_leeway > Duration::from_secs(30) {
            return Err("LIVEVOTE_JWT_LEEWAY_SECS must be at most 30".into());
        }
        if self.election_cache_max_age > Duration::from_secs(1) || self.election_cache_max_age.is_zero() {
            return Err(
                "LIVEVOTE_ELECTION_CACHE_MS must be between 1 and 1000 (a close must be seen within 1 s)"
                    .into(),
            );
        }
        if self.publish_buffer == 0 || self.publish_max_batch == 0 || self.publish_in_flight == 0 {
            return Err("LIVEVOTE_PUBLISH_BUFFER, LIVEVOTE_PUBLISH_MAX_BATCH and LIVEVOTE_PUBLISH_IN_FLIGHT must be > 0".into());
        }
        if self.redis_prefix.contains(['{', '}']) || self.redis_prefix.is_empty() {
            return Err("LIVEVOTE_REDIS_PREFIX must be non-empty and contain no braces".into());
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
