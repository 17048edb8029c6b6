//! Wiring: configuration -> adapters -> cast-vote service -> HTTP router,
//! and the orderly shutdown of all of it.
//!
//! Shutdown order (each step waits for the one before):
//! 1. readiness turns 503 (`draining`) and the listener stops accepting;
//! 2. requests in flight finish (bounded by the grace period), idle
//!    keep-alive connections close;
//! 3. with the last handle to the service gone, the publisher sends what is
//!    still buffered and answers its waiters;
//! 4. background tasks stop, CloudWatch is flushed one last time, Redis closes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use livevote_hosting::OffsetClock;
use livevote_hosting::connect::Background;
use livevote_ports::QueueInspector;
use livevote_postgres::PgElections;
use livevote_redis::{RedisElectionCache, RedisStore};
use livevote_sqs::SqsQueue;
use livevote_turnstile::{ConfiguredHumanCheck, NoHumanCheck, TurnstileConfig, TurnstileVerifier};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::cache::CacheConfig;
use crate::config::Config;
use crate::http::{BoxFuture, ReadinessCheck};
use crate::publisher::PublisherConfig;
use crate::service::CastConfig;
use crate::wiring::{Adapters, Settings, wire};
use livevote_hosting::{ServeConfig, serve};

/// A built ingestion service, listening, not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    serve: ServeConfig,
    draining: Arc<AtomicBool>,
    publisher: JoinHandle<()>,
    background: Background,
}

struct RedisReady(RedisStore);
impl ReadinessCheck for RedisReady {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.ping().await.map_err(|e| e.to_string()) })
    }
}

struct QueueReady(SqsQueue);
impl ReadinessCheck for QueueReady {
    fn name(&self) -> &'static str {
        "queue"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.stats().await.map(|_| ()).map_err(|e| e.to_string()) })
    }
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
        let tokens = config.tokens.verifier().await?;

        let human = match &config.turnstile_secret {
            Some(secret) if !secret.0.is_empty() => ConfiguredHumanCheck::Turnstile(
                TurnstileVerifier::new(TurnstileConfig {
                    siteverify_url: config.turnstile_url.clone(),
                    secret: secret.0.clone(),
                    timeout: config.turnstile_timeout,
                })
                .context("building the Turnstile client")?,
            ),
            _ => ConfiguredHumanCheck::None(NoHumanCheck),
        };

        // The host's clock; a fault build may shift it (crate::faults::clock_offset).
        let clock = OffsetClock::new(crate::faults::clock_offset());
        let wired = wire(
            Adapters {
                catalog: RedisElectionCache::new(redis.clone(), PgElections::new(pool)),
                dedup: redis.clone(),
                queue: queue.clone(),
                human,
                clock,
                metrics: telemetry,
                changes: redis.clone(),
                reference: redis.clone(),
                tokens,
                render_metrics: Arc::new(move || prometheus.render()),
                readiness: vec![
                    Arc::new(RedisReady(redis.clone())) as Arc<dyn ReadinessCheck>,
                    Arc::new(QueueReady(queue)),
                ],
            },
            Settings {
                cache: CacheConfig {
                    max_age: config.election_cache_max_age,
                    ..CacheConfig::default()
                },
                publisher: PublisherConfig {
                    buffer: config.publish_buffer,
                    max_batch: config.publish_max_batch,
                    linger: config.publish_linger,
                    max_in_flight: config.publish_in_flight,
                    ..PublisherConfig::default()
                },
                cast: CastConfig {
                    // Answered before the request timeout cuts the reply off.
                    answer_within: config.http.request_timeout.mul_f64(0.8),
                    ..CastConfig::default()
                },
                limits: config.rate_limits(),
                max_clock_skew: config.max_clock_skew,
                clock_check_every: Duration::from_secs(5),
                jwks_refresh: config.tokens.jwks_refresh,
                trusted_proxies: config.trusted_proxies,
                request_timeout: config.http.request_timeout,
            },
        )
        .await;
        let mut background = wired.background;
        background.push(telemetry_upkeep);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (LIVEVOTE_INGESTION_LISTEN)", config.listen))?;
        Ok(Self {
            listener,
            router: wired.router,
            serve: config.http.serve_config(),
            draining: wired.draining,
            publisher: wired.publisher,
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
        let signal = async move {
            shutdown.await;
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!("shutting down: no new connections, finishing requests in flight");
        };
        serve(self.listener, self.router, self.serve, signal).await;
        match tokio::time::timeout(self.serve.shutdown_grace, self.publisher).await {
            Ok(_) => tracing::info!("publish buffer drained"),
            Err(_) => tracing::error!("publish buffer not drained within the grace period"),
        }
        self.background.end().await;
    }
}
