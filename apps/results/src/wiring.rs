//! The results service put together once, over whatever adapters it is
//! given: [`app`](crate::app) hands it PostgreSQL, Redis, SQS and
//! CloudWatch; the embedded mode of the CLI hands it the in-memory adapters.
//! Both get the same results and admin services, shared cache and feeds,
//! stream limits, router and background tasks from here.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use livevote_auth0::JwksVerifier;
use livevote_http::health::{ReadinessCheck, check};
use livevote_ports::{
    Clock, ElectionAdmin, ElectionAnnouncer, ElectionCatalog, ElectionChangeFeed, LiveTallies, MetricEvent,
    Metrics, QueueInspector, VoteDedup, VoteStore,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::admin::AdminService;
use crate::http::{AppState, Reads, StreamConfig, router};
use crate::live::{LiveResults, Source};
use crate::service::ResultsService;

/// What the service runs on.
pub struct Adapters<Catalog, Tallies, Store, Queue, Elections, Announcer, Time, Meter, Feed> {
    /// Where results read elections (may be a cache in front of `elections`).
    pub catalog: Catalog,
    /// The live counts and the one-vote claims.
    pub tallies: Tallies,
    /// The durable votes.
    pub store: Store,
    /// The queue's backlog and dead letters, for reconciliation.
    pub queue: Queue,
    /// Where admins create and change elections.
    pub elections: Elections,
    /// Tells every instance that an election changed.
    pub announcer: Announcer,
    pub clock: Time,
    pub metrics: Meter,
    /// The change feed `announcer` writes to.
    pub changes: Feed,
    pub tokens: JwksVerifier,
    /// Renders `/metrics`.
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Readiness of the adapters themselves; the token keys are added here.
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
}

impl<Catalog, Tallies, Store, Queue, Elections, Announcer, Time, Meter, Feed> std::fmt::Debug
    for Adapters<Catalog, Tallies, Store, Queue, Elections, Announcer, Time, Meter, Feed>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters").finish_non_exhaustive()
    }
}

/// How the service behaves, whatever it runs on. The defaults suit one
/// process: no close grace, since there is no other host's clock to allow for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Oldest results served without reading the stores again.
    pub results_cache: Duration,
    /// How often a watched election's feed looks for new counts.
    pub results_poll: Duration,
    /// How long after a "close now" the election's end is set.
    pub close_grace: Duration,
    /// How often open and closed elections are reconciled for the metrics; zero: never.
    pub reconcile_every: Duration,
    pub max_streams: usize,
    pub stream: StreamConfig,
    pub jwks_refresh: Duration,
    pub request_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            results_cache: Duration::from_millis(250),
            results_poll: Duration::from_millis(250),
            close_grace: Duration::ZERO,
            reconcile_every: Duration::ZERO,
            max_streams: 1000,
            stream: StreamConfig::default(),
            jwks_refresh: Duration::from_secs(600),
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
    /// Send `true` when shutdown begins: open streams end.
    pub stop: watch::Sender<bool>,
    /// Change-feed follower, token refresh, reconciliation: abort them at the end.
    pub background: Vec<JoinHandle<()>>,
}

/// Builds the results and admin services over `adapters` and the router in front of them.
pub fn wire<Catalog, Tallies, Store, Queue, Elections, Announcer, Time, Meter, Feed>(
    adapters: Adapters<Catalog, Tallies, Store, Queue, Elections, Announcer, Time, Meter, Feed>,
    settings: Settings,
) -> Wired
where
    Catalog: ElectionCatalog,
    Tallies: LiveTallies + VoteDedup,
    Store: VoteStore,
    Queue: QueueInspector,
    Elections: ElectionAdmin,
    Announcer: ElectionAnnouncer,
    Time: Clock + Copy,
    Meter: Metrics + Clone,
    Feed: ElectionChangeFeed,
{
    let Adapters {
        catalog,
        tallies,
        store,
        queue,
        elections,
        announcer,
        clock,
        metrics,
        changes,
        tokens,
        render_metrics,
        mut readiness,
    } = adapters;
    let reads: Arc<dyn Reads> = Arc::new(ResultsService::new(catalog, tallies, store, queue, clock));
    let admin =
        Arc::new(AdminService::new(elections, announcer, clock).with_close_grace(settings.close_grace));
    let source: Source = {
        let (reads, metrics) = (reads.clone(), metrics.clone());
        Arc::new(move |id| {
            let reads = reads.clone();
            metrics.record(MetricEvent::ResultsRead { election: id });
            Box::pin(async move { reads.results(id).await })
        })
    };
    let live = Arc::new(LiveResults::new(
        source,
        settings.results_cache,
        settings.results_poll,
    ));
    let metrics: Arc<dyn Metrics> = Arc::new(metrics);
    let mut background = vec![tokens.spawn_refresh(settings.jwks_refresh), {
        let live = live.clone();
        tokio::spawn(
            async move { livevote_redis::follow_changes(&changes, &*live, std::future::pending()).await },
        )
    }];
    if !settings.reconcile_every.is_zero() {
        background.push(tokio::spawn(crate::watch::reconcile_periodically(
            reads.clone(),
            admin.clone(),
            metrics.clone(),
            settings.reconcile_every,
        )));
    }
    readiness.push({
        let tokens = tokens.clone();
        check("jwks", move || {
            let tokens = tokens.clone();
            async move {
                if tokens.key_count() > 0 {
                    Ok(())
                } else {
                    tokens.refresh().await.map(|_| ())
                }
            }
        })
    });
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState {
        reads,
        admin,
        tokens: Arc::new(tokens),
        live,
        streams: Arc::new(Semaphore::new(settings.max_streams)),
        max_streams: settings.max_streams,
        stream: settings.stream,
        metrics,
        render_metrics,
        readiness: readiness.into(),
        draining: draining.clone(),
        stop: stop_rx,
        request_timeout: settings.request_timeout,
    };
    Wired {
        router: router(state),
        draining,
        stop: stop_tx,
        background,
    }
}
