//! Wiring: configuration -> adapters -> persist service -> runner, plus the
//! health and metrics endpoints, and the orderly stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use livevote_hosting::SystemClock;
use livevote_hosting::connect::Background;
use livevote_metrics::{PrometheusMetrics, Telemetry};
use livevote_ports::QueueInspector;
use livevote_postgres::{PgElections, PgVoteStore, StoreConfig};
use livevote_sqs::SqsQueue;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::runner::{RunReport, RunnerConfig, run};
use crate::service::{PersistConfig, PersistService};

type Service = PersistService<SqsQueue, PgVoteStore, PgElections, SystemClock, Telemetry>;

/// What the readiness probe asks.
#[derive(Clone)]
struct Probe {
    pool: sqlx::PgPool,
    queue: SqsQueue,
    prometheus: PrometheusMetrics,
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

/// A built processor: connected, listening for probes, not yet consuming.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    service: Service,
    runner: RunnerConfig,
    probe: Probe,
    /// The Prometheus upkeep and the CloudWatch flusher, ended last.
    background: Background,
}

impl App {
    /// # Errors
    /// When the queue is unknown, the address taken, or a URL invalid; the
    /// message names the variable.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let pool = config.database.connect_lazy()?;
        let queue = config.queue.open().await?;
        let (telemetry, flusher, upkeep) = config.cloudwatch.telemetry().await;
        let prometheus = telemetry.prometheus.clone();
        let service = PersistService::new(
            queue.clone(),
            crate::faults::store(PgVoteStore::new(pool.clone(), StoreConfig::default())),
            PgElections::new(pool.clone()),
            SystemClock,
            telemetry,
            PersistConfig::default(),
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (LIVEVOTE_PROCESSOR_LISTEN)", config.listen))?;
        Ok(Self {
            listener,
            service,
            runner: config.runner(),
            probe: Probe {
                pool,
                queue,
                prometheus,
                stopping: Arc::new(AtomicBool::new(false)),
            },
            background: Background {
                tasks: vec![upkeep],
                cloudwatch: flusher,
                redis: None,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Consumes until `shutdown` resolves, then finishes the batch in hand.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> RunReport {
        let probe = self.probe.clone();
        let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let routes = axum::Router::new()
            .route("/health/live", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/health/ready", get(ready))
            .route(
                "/metrics",
                get(|State(p): State<Probe>| async move { p.prometheus.render() }),
            )
            .with_state(probe.clone());
        let http = tokio::spawn(livevote_hosting::serve(
            self.listener,
            routes,
            livevote_hosting::ServeConfig {
                shutdown_grace: Duration::from_secs(2),
                ..livevote_hosting::ServeConfig::default()
            },
            async move {
                if http_stopped.await.is_err() {
                    tracing::debug!("health server: stop sender dropped; stopping");
                }
            },
        ));
        let stopping = probe.stopping.clone();
        let report = run(self.service, self.runner, async move {
            shutdown.await;
            stopping.store(true, Ordering::SeqCst);
        })
        .await;
        tracing::info!(
            batches = report.batches,
            votes = report.votes,
            inserted = report.inserted,
            failed_attempts = report.failed_attempts,
            "processor stopped: the batch in hand was committed and acknowledged"
        );
        // The server may have ended on its own (it logs why below); then there is no one to tell.
        if http_stop.send(()).is_err() {
            tracing::debug!("health server already stopped");
        }
        if let Err(error) = http.await {
            tracing::error!(%error, "health and metrics server task failed");
        }
        self.background.end().await;
        report
    }
}

async fn ready(State(p): State<Probe>) -> (StatusCode, Json<serde_json::Value>) {
    let (db, queue) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(2), livevote_postgres::ping(&p.pool)),
        tokio::time::timeout(Duration::from_secs(2), p.queue.stats()),
    );
    let db = db.unwrap_or_else(|_| Err("no answer within 2 s".into()));
    let queue = queue
        .map_err(|_| "no answer within 2 s".to_string())
        .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()));
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!({"status": "up"}),
        Err(e) => json!({"status": "down", "error": e}),
    };
    let stopping = p.stopping.load(Ordering::SeqCst);
    let up = db.is_ok() && queue.is_ok() && !stopping;
    let status = if stopping {
        "draining"
    } else if up {
        "ready"
    } else {
        "not_ready"
    };
    (
        if up {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({"status": status, "checks": {"postgres": check(&db), "queue": check(&queue)}})),
    )
}
