//! The ingestion service put together once, over whatever adapters it is
//! given: [`app`](crate::app) hands it Redis, SQS, PostgreSQL and CloudWatch;
//! the embedded mode of the CLI hands it the in-memory adapters. Both get
//! the same cache, publisher, clock guard, rate limits, router and
//! background tasks from here.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use livevote_auth0::JwksVerifier;
use livevote_http::health::ReadinessCheck;
use livevote_ports::{
    Clock, ElectionCatalog, ElectionChangeFeed, HumanCheck, Metrics, ReferenceClock, VoteDedup, VoteQueue,
};
use tokio::task::JoinHandle;

use crate::cache::{CacheConfig, ElectionCache};
use crate::clockguard::ClockGuard;
use crate::http::{AppState, BoxFuture, ClockChecked, router};
use crate::publisher::{PublisherConfig, VoteBatcher};
use crate::ratelimit::{RateLimitConfig, RateLimits};
use crate::service::{CastConfig, CastVoteService};

/// What the service runs on.
pub struct Adapters<Catalog, Claims, Queue, Humans, Time, Meter, Feed, Reference> {
    /// Where elections are read (behind the in-process cache).
    pub catalog: Catalog,
    /// The one-vote claims.
    pub dedup: Claims,
    /// Where accepted votes are sent.
    pub queue: Queue,
    pub human: Humans,
    /// Stamps `acceptedAt`.
    pub clock: Time,
    pub metrics: Meter,
    /// Announces election changes, so the cache drops them at once.
    pub changes: Feed,
    /// The clock `clock` is checked against.
    pub reference: Reference,
    pub tokens: JwksVerifier,
    /// Renders `/metrics`.
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Readiness of the adapters themselves; the token keys and the clock are added here.
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
}

impl<Catalog, Claims, Queue, Humans, Time, Meter, Feed, Reference> std::fmt::Debug
    for Adapters<Catalog, Claims, Queue, Humans, Time, Meter, Feed, Reference>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters").finish_non_exhaustive()
    }
}

/// How the service behaves, whatever it runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cache: CacheConfig,
    pub publisher: PublisherConfig,
    pub cast: CastConfig,
    pub limits: RateLimitConfig,
    /// Most drift of `clock` from `reference` before votes are refused; zero: unchecked.
    pub max_clock_skew: Duration,
    pub clock_check_every: Duration,
    pub jwks_refresh: Duration,
    pub trusted_proxies: usize,
    pub request_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cache: CacheConfig::default(),
            publisher: PublisherConfig::default(),
            cast: CastConfig::default(),
            limits: RateLimitConfig::default(),
            max_clock_skew: Duration::from_secs(1),
            clock_check_every: Duration::from_secs(5),
            jwks_refresh: Duration::from_secs(600),
            trusted_proxies: 0,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The assembled service: its router and what runs beside it.
#[derive(Debug)]
pub struct Wired {
    pub router: axum::Router,
    /// Set it when shutdown begins: readiness answers 503.
    pub draining: Arc<AtomicBool>,
    /// Ends once every handle to the service is gone and the buffer is sent.
    pub publisher: JoinHandle<()>,
    /// Cache follower, clock checks, token refresh, rate-limit housekeeping: abort them at the end.
    pub background: Vec<JoinHandle<()>>,
}

/// Builds the cast-vote service over `adapters` and the router in front of it.
pub async fn wire<Catalog, Claims, Queue, Humans, Time, Meter, Feed, Reference>(
    adapters: Adapters<Catalog, Claims, Queue, Humans, Time, Meter, Feed, Reference>,
    settings: Settings,
) -> Wired
where
    Catalog: ElectionCatalog,
    Claims: VoteDedup + Clone,
    Queue: VoteQueue,
    Humans: HumanCheck,
    Time: Clock + Copy,
    Meter: Metrics + Clone,
    Feed: ElectionChangeFeed,
    Reference: ReferenceClock,
{
    let Adapters {
        catalog,
        dedup,
        queue,
        human,
        clock,
        metrics,
        changes,
        reference,
        tokens,
        render_metrics,
        mut readiness,
    } = adapters;
    let cache = Arc::new(ElectionCache::new(catalog, settings.cache));
    let (batcher, publisher) = VoteBatcher::start(queue, dedup.clone(), settings.publisher, metrics.clone());
    let clock_guard = Arc::new(ClockGuard::new(settings.max_clock_skew));
    // A host that starts with a wrong clock refuses votes from its first request.
    if let Err(e) = clock_guard.check(&reference, &clock).await {
        tracing::warn!(error = %e, "first clock check failed; retried in the background");
    }
    let cast = CastVoteService::new(
        cache.clone(),
        dedup,
        batcher,
        human,
        clock,
        metrics.clone(),
        settings.cast,
    );
    let limits = Arc::new(RateLimits::new(settings.limits));
    let background = vec![
        limits.spawn_housekeeping(Duration::from_secs(1)),
        tokens.spawn_refresh(settings.jwks_refresh),
        clock_guard.spawn(reference, clock, settings.clock_check_every),
        tokio::spawn(async move {
            livevote_redis::follow_changes(&changes, &*cache, std::future::pending()).await
        }),
    ];
    readiness.push(Arc::new(JwksReady(tokens.clone())));
    readiness.push(Arc::new(ClockReady(clock_guard.clone())));
    let draining = Arc::new(AtomicBool::new(false));
    let state = AppState {
        voting: Arc::new(ClockChecked {
            voting: cast,
            guard: clock_guard,
            metrics: Arc::new(metrics.clone()),
        }),
        tokens: Arc::new(tokens),
        limits,
        metrics: Arc::new(metrics),
        render_metrics,
        readiness: readiness.into(),
        draining: draining.clone(),
        trusted_proxies: settings.trusted_proxies,
        request_timeout: settings.request_timeout,
    };
    Wired {
        router: router(state),
        draining,
        publisher,
        background,
    }
}

struct ClockReady(Arc<ClockGuard>);
impl ReadinessCheck for ClockReady {
    fn name(&self) -> &'static str {
        "clock"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        let guard = self.0.clone();
        Box::pin(async move {
            if guard.trusted() {
                Ok(())
            } else {
                Err(format!("clock {} ms off the reference clock", guard.offset_ms()))
            }
        })
    }
}

struct JwksReady(JwksVerifier);
impl ReadinessCheck for JwksReady {
    fn name(&self) -> &'static str {
        "jwks"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if self.0.key_count() > 0 {
                return Ok(());
            }
            self.0.refresh().await.map(|_| ())
        })
    }
}
