//! Redis adapter (fred): the fast path of "one vote per viewer", the live
//! accepted tallies, a shared election cache and the election change feed.
//!
//! # Key layout
//!
//! Every key starts with a configurable prefix `P` (default `lv`; no braces,
//! so the hash tag below is always the first `{...}` of the key). `E` is an
//! election id, `S` a shard number `TallyShard::of(voter) mod N` (N = 64 by
//! default, see [`RedisConfig::shards`]).
//!
//! | key | type | TTL | what |
//! |---|---|---|---|
//! | `P:{e:E:S}:v:<voter>` | string | 30 s pending, 48 h accepted | the voter's claim |
//! | `P:{e:E:S}:tally` | hash `candidate -> count` | none | live accepted votes confirmed in slot `{e:E:S}` (the sum over S is the election's tally) |
//! | `P:election:E` | hash | [`RedisConfig::election_cache_ttl`] | cached election (see [`RedisElectionCache`]) |
//! | `P:elections:changes` | pub/sub channel | - | `<kind> <election id>` per change |
//!
//! `{e:E:S}` is a Redis Cluster hash tag: one hot election spreads over N
//! slots, and a voter's claim and the tally shard its confirm bumps live in
//! the same slot, so each script below touches exactly one slot. (On a single
//! server, a confirm call's counts all go to the shard of its first claim.)
//!
//! A claim's value is `<state>:<vote id>:<accepted at>:<candidate id>:<idempotency key>`,
//! with state `P` (pending) or `A` (accepted); the vote id is the 36-character
//! hyphenated UUID, so the scripts find it at bytes 3..=38. The candidate
//! lets a retry with the same idempotency key be checked against the vote
//! it retries. The idempotency key (visible ASCII) comes last and may be
//! empty. A value of the earlier format, without the candidate, still reads
//! (its candidate unknown). Timestamps, here and in
//! the election cache, are `<seconds>.<nanoseconds>` since the epoch.
//!
//! # Commands and scripts
//!
//! - **claim** (key: the claim): `SET claim <P:...> NX PX <pending ttl> GET`,
//!   one native command per claim, which either creates the pending claim or
//!   returns the existing one untouched. `NX` together with `GET` needs
//!   Redis >= 7.0; [`RedisStore::connect`] checks this at start-up. A claim
//!   retried after a lost reply finds its own vote id and counts as claimed.
//! - **confirm** ([`CONFIRM_MANY_LUA`], keys: the claims of one slot and one
//!   tally shard): per claim, if it still carries this vote id and is
//!   pending, rewrite it as accepted with the long TTL and count the vote;
//!   when already accepted, change nothing. The votes counted are then added
//!   to the tally shard with one `HINCRBY` per candidate. A script runs as a
//!   whole, so each claim's change and its count are one atomic step for
//!   every other client. Answers 2 (confirmed now), 1 (was already
//!   confirmed) or 0 (not ours: expired or taken over).
//! - **release** ([`RELEASE_LUA`], key: claim): delete the claim only if it is
//!   still pending and carries this vote id.
//! - **live tallies**: `HGETALL` of the N tally shards in one pipeline, summed.
//! - **replace tallies** ([`REPLACE_LUA`], one call per shard): the rebuilt
//!   counts go to shard 0 first (delete + `HSET` in one script), then shards
//!   1..N are deleted. Each shard is replaced atomically; a reader during the
//!   rebuild can see the new shard 0 next to old shards that are not yet
//!   deleted (an over-count for the time of N-1 round trips), never a shard
//!   half written. Rebuild after Redis lost its data, with the queue drained.
//!
//! # Batching
//!
//! Claims and confirms come in batches from their caller: ingestion claims,
//! publishes and confirms the votes of one batch together (`claim_many`,
//! `confirm_many`). The claims of a batch go out together as native
//! commands; its confirms as one script call on a single server, one per
//! hash tag (`{e:E:S}`, one slot) under Redis Cluster. A failed call fails
//! the votes of its call only, and each caller gets the same error it would
//! have got from its own command.
//!
//! Measured with `ingest-bench` (README, issue 20): plain commands in a
//! pipeline cost Redis far less than the same commands inside a script, and
//! each round trip costs Redis more than a command does, so a script is used
//! only where a vote's step needs a condition (confirm, release), there it
//! runs one command per vote plus one per candidate, and every round trip
//! carries a whole batch.
//!
//! # Production settings
//!
//! `maxmemory-policy noeviction`: an evicted accepted claim would let a second
//! vote through to PostgreSQL's unique constraint (counted as a conflict, not
//! twice, but the viewer would see 202 instead of 409). Losing Redis loses no
//! vote: PostgreSQL holds every persisted vote and the live tallies can be
//! rebuilt from it.

mod dedup;
mod elections;
mod keys;

use std::num::NonZeroU16;
use std::time::Duration;

use fred::prelude::{
    Builder, ClientLike, Config, Error as FredError, ErrorKind, KeysInterface, Pool, ReconnectPolicy,
};
use livevote_domain::TallyShard;
use livevote_ports::DedupError;

pub use dedup::{CONFIRM_MANY_LUA, RELEASE_LUA, REPLACE_LUA, decode_claim, encode_claim};
pub use elections::{CACHE_LUA, RedisChanges, RedisElectionCache, follow_changes};

/// How to reach Redis and how to lay out keys.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `redis-cluster://...`).
    pub url: String,
    /// Connections in the pool. Commands are pipelined on each connection.
    pub pool_size: usize,
    /// Prefix of every key and channel; tests use one per test.
    pub key_prefix: String,
    /// Tally shards per election (N of the `{e:E:S}` hash tags).
    pub shards: NonZeroU16,
    /// How long a pending claim lives if nobody confirms or releases it.
    pub pending_ttl: Duration,
    /// How long an accepted claim answers "already voted".
    pub accepted_ttl: Duration,
    /// How long an election stays in the shared cache.
    pub election_cache_ttl: Duration,
    /// A command that gets no answer within this time fails as unavailable.
    pub command_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            pool_size: 4,
            key_prefix: "lv".to_owned(),
            shards: TallyShard::DEFAULT_COUNT,
            pending_ttl: Duration::from_secs(30),
            accepted_ttl: Duration::from_secs(48 * 3600),
            election_cache_ttl: Duration::from_secs(60),
            command_timeout: Duration::from_secs(1),
        }
    }
}

/// Redis errors that can arise while connecting.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    #[error("cannot reach Redis: {0}")]
    Unreachable(#[source] FredError),
    #[error("Redis at {url} does not support SET NX GET (needs Redis >= 7.0): {source}")]
    TooOld {
        url: String,
        #[source]
        source: FredError,
    },
}

/// A connection pool plus the key layout. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    config: RedisConfig,
    fred_config: Config,
    keys: keys::Keys,
    scripts: dedup::Scripts,
    /// Whether the server is a Redis Cluster: confirms then go out one script call per slot.
    clustered: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.config.url)
            .field("key_prefix", &self.config.key_prefix)
            .field("shards", &self.config.shards)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects the pool, then checks that the server supports the commands
    /// the adapter relies on.
    ///
    /// # Errors
    /// [`ConnectError`] when the configuration is invalid, the server cannot
    /// be reached or is older than 7.0.
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        if config.key_prefix.is_empty() || config.key_prefix.contains(['{', '}']) {
            return Err(ConnectError::Config(format!(
                "key prefix {:?} must be non-empty and contain no braces",
                config.key_prefix
            )));
        }
        if config.pool_size == 0 {
            return Err(ConnectError::Config("pool size must be at least 1".into()));
        }
        let mut fred_config = Config::from_url(&config.url)
            .map_err(|e| ConnectError::Config(format!("Redis URL {:?}: {e}", config.url)))?;
        // A command sent while the connection is down fails at once instead
        // of waiting for a reconnect: the vote path answers 503 quickly.
        fred_config.fail_fast = true;
        let pool = builder(&fred_config, &config)
            .build_pool(config.pool_size)
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        pool.init().await.map_err(ConnectError::Unreachable)?;
        let store = Self {
            clustered: fred_config.server.is_clustered(),
            pool,
            keys: keys::Keys::new(&config.key_prefix, config.shards),
            scripts: dedup::Scripts::default(),
            config,
            fred_config,
        };
        store.check_server().await?;
        Ok(store)
    }

    /// The configuration this store was connected with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Whether Redis answers a `PING`, for health endpoints.
    ///
    /// # Errors
    /// [`DedupError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), DedupError> {
        self.pool.ping::<()>(None).await.map_err(to_dedup_error)
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        if let Err(e) = self.pool.quit().await {
            tracing::warn!(error = %e, "closing the Redis pool");
        }
    }

    async fn check_server(&self) -> Result<(), ConnectError> {
        let probe = format!("{}:probe:set-nx-get", self.config.key_prefix);
        let result: Result<Option<String>, FredError> = self
            .pool
            .set(
                probe.as_str(),
                "1",
                Some(fred::types::Expiration::PX(1000)),
                Some(fred::types::SetOptions::NX),
                true,
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled) => {
                Err(ConnectError::Unreachable(e))
            }
            Err(e) => Err(ConnectError::TooOld {
                url: self.config.url.clone(),
                source: e,
            }),
        }
    }
}

fn builder(fred_config: &Config, config: &RedisConfig) -> Builder {
    let mut builder = Builder::from_config(fred_config.clone());
    let timeout = config.command_timeout;
    builder
        .with_connection_config(|c| {
            c.connection_timeout = timeout.max(Duration::from_secs(1));
            c.tcp.nodelay = Some(true);
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
        })
        // Reconnect for ever, 100 ms .. 2 s apart: Redis coming back must
        // need no restart of ours.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    builder
}

/// A timestamp as `<seconds>.<nanoseconds, 9 digits>` since the epoch:
/// exact, so a value read back equals the value written.
pub(crate) fn format_time(t: livevote_domain::Timestamp) -> String {
    format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
}

pub(crate) fn parse_time(s: &str) -> anyhow::Result<livevote_domain::Timestamp> {
    use anyhow::Context;
    let (secs, nanos) = s.split_once('.').with_context(|| format!("timestamp {s:?}"))?;
    let secs: i64 = secs.parse().with_context(|| format!("timestamp {s:?}"))?;
    let nanos: u32 = nanos.parse().with_context(|| format!("timestamp {s:?}"))?;
    if nanos >= 1_000_000_000 {
        anyhow::bail!("timestamp {s:?}: nanoseconds out of range");
    }
    chrono::DateTime::from_timestamp(secs, nanos).with_context(|| format!("timestamp {s:?} out of range"))
}

/// Maps a fred error to the port's error: connection trouble and a server
/// that refuses writes for now (out of memory, loading, failover) are
/// "unavailable"; anything else is a bug or a surprise.
pub(crate) fn to_dedup_error(e: FredError) -> DedupError {
    if is_unavailable(&e) {
        DedupError::Unavailable(e.into())
    } else {
        DedupError::Unknown(e.into())
    }
}

pub(crate) fn is_unavailable(e: &FredError) -> bool {
    const TRANSIENT: [&str; 7] = [
        "OOM",
        "LOADING",
        "BUSY",
        "MASTERDOWN",
        "READONLY",
        "CLUSTERDOWN",
        "TRYAGAIN",
    ];
    matches!(
        e.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Backpressure
            | ErrorKind::Cluster
    ) || TRANSIENT.iter().any(|p| e.details().starts_with(p))
}

/// The Redis server's clock (`TIME`): the reference ingestion hosts check
/// their own clocks against.
impl livevote_ports::ReferenceClock for RedisStore {
    async fn reference_now(&self) -> Result<livevote_domain::Timestamp, livevote_ports::ReferenceClockError> {
        use livevote_ports::ReferenceClockError;
        let parts: Vec<String> = self
            .pool
            .next()
            .custom(fred::cmd!("TIME"), Vec::<String>::new())
            .await
            .map_err(|e| ReferenceClockError(e.to_string()))?;
        let [secs, micros] = parts.as_slice() else {
            return Err(ReferenceClockError(format!("TIME answered {parts:?}")));
        };
        let (Ok(secs), Ok(micros)) = (secs.parse::<i64>(), micros.parse::<u32>()) else {
            return Err(ReferenceClockError(format!("TIME answered {parts:?}")));
        };
        chrono::DateTime::from_timestamp(secs, micros.saturating_mul(1000))
            .ok_or_else(|| ReferenceClockError(format!("TIME answered {parts:?}")))
    }
}
