//! The production adapters, connected from the shared configuration groups
//! of [`crate::config`]. Every service connects through these, so a
//! dependency is set up one way everywhere and a failure names the variable
//! to fix.

use anyhow::Context;
use livevote_auth0::{JwksConfig, JwksVerifier};
use livevote_metrics::{FlushTask, Telemetry};
use livevote_postgres::PgPool;
use livevote_redis::{RedisConfig, RedisStore};
use livevote_sqs::SqsQueue;

use crate::config::{CloudWatchArgs, DatabaseArgs, QueueArgs, RedisArgs, TokenArgs};

impl DatabaseArgs {
    /// A pool that connects on first use (the service starts while PostgreSQL is still coming up).
    ///
    /// # Errors
    /// When `LIVEVOTE_DATABASE_URL` is not a PostgreSQL URL.
    pub fn connect_lazy(&self) -> anyhow::Result<PgPool> {
        livevote_postgres::connect_lazy(&self.url, self.pool).context("LIVEVOTE_DATABASE_URL")
    }
}

impl RedisArgs {
    /// # Errors
    /// When Redis cannot be reached or the URL is invalid.
    pub async fn connect(&self) -> anyhow::Result<RedisStore> {
        RedisStore::connect(RedisConfig {
            url: self.url.clone(),
            pool_size: self.pool,
            key_prefix: self.prefix.clone(),
            ..RedisConfig::default()
        })
        .await
        .with_context(|| format!("Redis at {} (LIVEVOTE_REDIS_URL)", self.url))
    }
}

impl QueueArgs {
    /// # Errors
    /// When the queue or its dead-letter queue does not exist or cannot be reached.
    pub async fn open(&self) -> anyhow::Result<SqsQueue> {
        livevote_sqs::open_queue(self.sqs_endpoint.as_deref(), &self.name)
            .await
            .context("LIVEVOTE_QUEUE_NAME / LIVEVOTE_SQS_ENDPOINT")
    }
}

impl CloudWatchArgs {
    /// Prometheus, plus CloudWatch when a namespace is configured (with its
    /// flusher; shut it down last). The Prometheus upkeep runs from here on.
    pub async fn telemetry(&self) -> (Telemetry, Option<FlushTask>, tokio::task::JoinHandle<()>) {
        let (telemetry, flusher) =
            Telemetry::build(self.namespace.as_deref(), self.endpoint.as_deref()).await;
        // Histogram samples pile up until folded; scrapes may be rare or absent.
        let upkeep = telemetry.prometheus.spawn_upkeep();
        (telemetry, flusher, upkeep)
    }
}

impl TokenArgs {
    /// The token verifier, its keys fetched once. A failed first fetch is
    /// not fatal: readiness reports it and the first token retries.
    ///
    /// # Errors
    /// When the JWKS URL is invalid.
    pub async fn verifier(&self) -> anyhow::Result<JwksVerifier> {
        let tokens = JwksVerifier::new(JwksConfig {
            leeway: self.leeway,
            max_lifetime: (!self.max_lifetime.is_zero()).then_some(self.max_lifetime),
            ..JwksConfig::new(&self.jwks_url, &self.issuer, &self.audience)
        })
        .context("building the JWKS client")?;
        if let Err(error) = tokens.refresh().await {
            tracing::warn!(%error, "JWKS not loaded yet (LIVEVOTE_JWKS_URL)");
        }
        Ok(tokens)
    }
}

/// What runs beside a service's server, ended in order once the server has
/// stopped: background tasks aborted, the last CloudWatch sums sent, Redis
/// closed.
#[derive(Debug, Default)]
pub struct Background {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub cloudwatch: Option<FlushTask>,
    pub redis: Option<RedisStore>,
}

impl Background {
    pub async fn end(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(flusher) = self.cloudwatch {
            flusher.shutdown().await;
        }
        if let Some(redis) = self.redis {
            redis.close().await;
        }
        tracing::info!("stopped");
    }
}
