//! Health probes: liveness (the process answers) and readiness (every
//! dependency answers within a bound, and the instance is not draining).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::BoxFuture;

/// Longest one readiness check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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

struct FnCheck<F> {
    name: &'static str,
    f: F,
}

impl<F, Fut> ReadinessCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin((self.f)())
    }
}

/// A readiness check from a closure that probes one dependency.
pub fn check<F, Fut>(name: &'static str, f: F) -> Arc<dyn ReadinessCheck>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(FnCheck { name, f })
}

/// The probe answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<&'static str, Check>,
}

/// The liveness answer.
pub fn alive() -> Json<Health> {
    Json(Health {
        status: "ok",
        checks: BTreeMap::new(),
    })
}

/// Runs every check at once, each bounded by [`CHECK_TIMEOUT`]: 200 when all
/// are up and the instance is not `draining`, 503 otherwise.
pub async fn readiness(checks: &[Arc<dyn ReadinessCheck>], draining: bool) -> (StatusCode, Json<Health>) {
    let mut set = tokio::task::JoinSet::new();
    for c in checks {
        let c = Arc::clone(c);
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Result<(), String>);

    impl ReadinessCheck for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            let r = self.1.clone();
            Box::pin(async move { r })
        }
    }

    #[tokio::test]
    async fn ready_only_when_every_check_is_up_and_not_draining() {
        let up: Arc<dyn ReadinessCheck> = Arc::new(Fixed("redis", Ok(())));
        let down: Arc<dyn ReadinessCheck> = Arc::new(Fixed("postgres", Err("refused".into())));
        let (code, Json(h)) = readiness(std::slice::from_ref(&up), false).await;
        assert_eq!((code, h.status), (StatusCode::OK, "ready"));
        let (code, Json(h)) = readiness(&[up.clone(), down], false).await;
        assert_eq!((code, h.status), (StatusCode::SERVICE_UNAVAILABLE, "not_ready"));
        assert_eq!(h.checks["postgres"].error.as_deref(), Some("refused"));
        let (code, Json(h)) = readiness(&[up], true).await;
        assert_eq!((code, h.status), (StatusCode::SERVICE_UNAVAILABLE, "draining"));
    }
}
