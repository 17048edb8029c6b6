//! `/health/live` (the process answers) and `/health/ready` (its
//! dependencies answer: Redis, the queue, the token keys; and it is not
//! draining for shutdown).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, BoxFuture};

/// Longest one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A dependency readiness looks at.
pub trait ReadinessCheck: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The probe answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<&'static str, Check>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "ok",
        checks: BTreeMap::new(),
    })
}

/// Readiness: every dependency answers, and the instance is not shutting down.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "ready to take votes", body = Health),
        (status = 503, description = "a dependency is down, or draining for shutdown", body = Health),
    ))]
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    // All checks at once, each bounded by CHECK_TIMEOUT.
    let mut set = tokio::task::JoinSet::new();
    for c in app.readiness.iter() {
        let c = std::sync::Arc::clone(c);
        set.spawn(async move {
            let result = match tokio::time::timeout(CHECK_TIMEOUT, c.check()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
            };
            (c.name(), result)
        });
    }
    let mut all_up = true;
    let mut answers = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        let (name, result) = joined.unwrap_or(("readiness", Err("check panicked".into())));
        all_up &= result.is_ok();
        answers.insert(
            name,
            Check {
                status: if result.is_ok() { "up" } else { "down" },
                error: result.err(),
            },
        );
    }
    let draining = app.draining.load(Ordering::SeqCst);
    let (code, status) = match (draining, all_up) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        (false, true) => (StatusCode::OK, "ready"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    (
        code,
        Json(Health {
            status,
            checks: answers,
        }),
    )
}
