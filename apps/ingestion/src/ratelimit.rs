//! Rate limits per viewer and per client IP (GCRA, governor), with bounded
//! memory.
//!
//! A keyed GCRA limiter keeps one small state per key. A key whose state is
//! indistinguishable from a fresh one (its burst fully replenished) carries
//! no information, so a housekeeping tick drops those every second; the
//! number of keys held is then bounded by the distinct keys seen within one
//! replenish period. As a hard bound under a flood of distinct keys (spoofed
//! addresses, many tokens), a limiter holding more than `max_keys` after
//! housekeeping is replaced by a fresh one: limits briefly reset, memory never
//! grows past the bound. The dedup claim, not the rate limit, is what keeps
//! one vote per viewer.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use livevote_domain::VoterId;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// One limit: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: u32,
}

impl Limit {
    fn quota(self) -> Option<Quota> {
        if self.per_second.is_nan() || self.per_second <= 0.0 || self.per_second.is_infinite() {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Quota::with_period(period).map(|q| q.allow_burst(burst))
    }
}

/// Rate limit settings; a limit of `None` (or a rate of 0) is off.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    pub per_voter: Option<Limit>,
    pub per_ip: Option<Limit>,
    /// Most keys one limiter holds.
    pub max_keys: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            // A viewer votes once per election; a few retries and a few
            // elections per show are plenty.
            per_voter: Some(Limit {
                per_second: 1.0,
                burst: 10,
            }),
            // Households and mobile carriers put many viewers behind one address.
            per_ip: Some(Limit {
                per_second: 200.0,
                burst: 400,
            }),
            max_keys: 1_000_000,
        }
    }
}

struct Bounded<K: Hash + Eq + Clone> {
    quota: Quota,
    limiter: RwLock<Arc<Keyed<K>>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> Bounded<K> {
    fn new(quota: Quota, max_keys: usize) -> Self {
        Self {
            quota,
            limiter: RwLock::new(Arc::new(RateLimiter::keyed(quota))),
            max_keys,
        }
    }

    fn current(&self) -> Arc<Keyed<K>> {
        self.limiter.read().expect("limiter lock").clone()
    }

    /// `Err(wait)` when the key is over its limit.
    fn check(&self, key: &K) -> Result<(), Duration> {
        let limiter = self.current();
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn housekeep(&self) -> usize {
        let limiter = self.current();
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let held = limiter.len();
        if held > self.max_keys {
            tracing::warn!(
                held,
                max = self.max_keys,
                "rate limiter over its key bound; starting afresh"
            );
            *self.limiter.write().expect("limiter lock") = Arc::new(RateLimiter::keyed(self.quota));
            return 0;
        }
        held
    }

    fn len(&self) -> usize {
        self.current().len()
    }
}

/// The limits of one ingestion instance. Cheap to share behind an `Arc`.
pub struct RateLimits {
    voter: Option<Bounded<VoterId>>,
    ip: Option<Bounded<IpAddr>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("voter_keys", &self.voter.as_ref().map(Bounded::len))
            .field("ip_keys", &self.ip.as_ref().map(Bounded::len))
            .finish()
    }
}

impl RateLimits {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            voter: config
                .per_voter
                .and_then(Limit::quota)
                .map(|q| Bounded::new(q, config.max_keys)),
            ip: config
                .per_ip
                .and_then(Limit::quota)
                .map(|q| Bounded::new(q, config.max_keys)),
        }
    }

    /// # Errors
    /// How long to wait, when the viewer is over the limit.
    pub fn check_voter(&self, voter: &VoterId) -> Result<(), Duration> {
        self.voter.as_ref().map_or(Ok(()), |l| l.check(voter))
    }

    /// # Errors
    /// How long to wait, when the address is over the limit.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.ip.as_ref().map_or(Ok(()), |l| l.check(&ip))
    }

    /// Drops keys that carry no information and enforces the key bound;
    /// returns the keys held (voters, addresses).
    pub fn housekeep(&self) -> (usize, usize) {
        (
            self.voter.as_ref().map_or(0, Bounded::housekeep),
            self.ip.as_ref().map_or(0, Bounded::housekeep),
        )
    }

    /// Keys held (voters, addresses).
    pub fn keys_held(&self) -> (usize, usize) {
        (
            self.voter.as_ref().map_or(0, Bounded::len),
            self.ip.as_ref().map_or(0, Bounded::len),
        )
    }

    /// Runs [`RateLimits::housekeep`] every `every` until the task is aborted.
    pub fn spawn_housekeeping(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let limits = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(limits) = limits.upgrade() else { return };
                limits.housekeep();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(s: &str) -> VoterId {
        VoterId::parse(s).unwrap()
    }

    #[test]
    fn a_voter_gets_the_burst_then_waits() {
        let limits = RateLimits::new(RateLimitConfig {
            per_voter: Some(Limit {
                per_second: 1.0,
                burst: 3,
            }),
            per_ip: None,
            max_keys: 100,
        });
        let v = voter("auth0|a");
        for _ in 0..3 {
            assert!(limits.check_voter(&v).is_ok());
        }
        let wait = limits.check_voter(&v).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another voter is not affected; addresses are unlimited here.
        assert!(limits.check_voter(&voter("auth0|b")).is_ok());
        for _ in 0..1000 {
            assert!(limits.check_ip("203.0.113.1".parse().unwrap()).is_ok());
        }
    }

    #[test]
    fn memory_stays_bounded_under_many_distinct_keys() {
        let limits = RateLimits::new(RateLimitConfig {
            per_voter: None,
            per_ip: Some(Limit {
                per_second: 10.0,
                burst: 5,
            }),
            max_keys: 1000,
        });
        for i in 0..5000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            limits.check_ip(ip).unwrap();
            if i % 500 == 499 {
                limits.housekeep();
                assert!(limits.keys_held().1 <= 1000, "{:?}", limits.keys_held());
            }
        }
        assert!(limits.keys_held().1 <= 1000);
    }

    #[test]
    fn a_zero_rate_switches_a_limit_off() {
        let limits = RateLimits::new(RateLimitConfig {
            per_voter: Some(Limit {
                per_second: 0.0,
                burst: 1,
            }),
            per_ip: None,
            max_keys: 10,
        });
        for _ in 0..100 {
            assert!(limits.check_voter(&voter("auth0|x")).is_ok());
        }
    }
}
