//! Wiring: configuration -> adapters -> results and admin services -> the
//! shared results cache and feeds -> HTTP router, and the orderly shutdown.
//!
//! Shutdown order: readiness turns 503 (`draining`), open streams end, the
//! listener stops accepting and requests in flight finish (bounded by the
//! grace period); then background tasks stop, CloudWatch is flushed, Redis
//! closes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use livevote_hosting::SystemClock;
use livevote_hosting::connect::Background;
use livevote_hosting::{ServeConfig, serve};
use livevote_http::health::{ReadinessCheck, check};
use livevote_ports::QueueInspector;
use livevote_postgres::{PgElections, PgVoteStore, StoreConfig};
use livevote_redis::RedisElectionCache;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::http::StreamConfig;
use crate::wiring::{Adapters, Settings, wire};

/// A built results service, listening, not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    serve: ServeConfig,
    draining: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    background: Background,
}

impl App {
    /// Connects the adapters and binds the listener.
    ///
    /// # Errors
    /// When a dependency cannot be set up (Redis unreachable, the queue
    /// unknown, the address taken); the message names what to fix.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let pool = config.database.connect_lazy()?;
        let redis = config.redis.connect().await?;
        let queue = config.queue.open().await?;
        let (telemetry, flusher, telemetry_upkeep) = config.cloudwatch.telemetry().await;
        let prometheus = telemetry.prometheus.clone();
        // Public results need no token; readiness reports keys that did not load.
        let tokens = config.tokens.verifier().await?;

        let elections = PgElections::new(pool.clone());
        let catalog = RedisElectionCache::new(redis.clone(), elections.clone());
        let readiness: Vec<Arc<dyn ReadinessCheck>> = vec![
            {
                let pool = pool.clone();
                check("postgres", move || {
                    let pool = pool.clone();
                    async move { livevote_postgres::ping(&pool).await }
                })
            },
            {
                let redis = redis.clone();
                check("redis", move || {
                    let redis = redis.clone();
                    async move { redis.ping().await.map_err(|e| e.to_string()) }
                })
            },
            {
                let queue = queue.clone();
                check("queue", move || {
                    let queue = queue.clone();
                    async move { queue.stats().await.map(|_| ()).map_err(|e| e.to_string()) }
                })
            },
        ];
        let wired = wire(
            Adapters {
                catalog: catalog.clone(),
                tallies: redis.clone(),
                store: PgVoteStore::new(pool.clone(), StoreConfig::default()),
                queue,
                elections,
                announcer: catalog,
                clock: SystemClock,
                metrics: telemetry,
                changes: redis.clone(),
                tokens,
                render_metrics: Arc::new(move || prometheus.render()),
                readiness,
            },
            Settings {
                results_cache: config.results_cache,
                results_poll: config.results_poll,
                close_grace: config.close_grace,
                reconcile_every: config.reconcile_every,
                max_streams: config.max_streams,
                stream: StreamConfig {
                    heartbeat: config.heartbeat,
                    update_interval: config.stream_update,
                },
                jwks_refresh: config.tokens.jwks_refresh,
                request_timeout: config.http.request_timeout,
            },
        );
        let mut background = wired.background;
        background.push(telemetry_upkeep);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (LIVEVOTE_RESULTS_LISTEN)", config.listen))?;
        Ok(Self {
            listener,
            router: wired.router,
            serve: config.http.serve_config(),
            draining: wired.draining,
            stop: wired.stop,
            background: Background {
                tasks: background,
                cloudwatch: flusher,
                redis: Some(redis),
            },
        })
    }

    /// The address the service listens on (the port, when configured as 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then shuts down in order (see the module docs).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let draining = self.draining.clone();
        let stop = self.stop;
        let signal = async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
            stop.send_replace(true);
            tracing::info!("shutting down: streams closed, finishing requests in flight");
        };
        serve(self.listener, self.router, self.serve, signal).await;
        self.background.end().await;
    }
}
