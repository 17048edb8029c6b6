//! `/health/live` (the process answers) and `/health/ready` (its
//! dependencies answer: Redis, the queue, the token keys; and it is not
//! draining for shutdown).

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use livevote_http::health::{self, Health};

use super::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn live() -> Json<Health> {
    health::alive()
}

/// Readiness: every dependency answers, and the instance is not shutting down.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "ready to take votes", body = Health),
        (status = 503, description = "a dependency is down, or draining for shutdown", body = Health),
    ))]
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    health::readiness(&app.readiness, app.draining.load(Ordering::SeqCst)).await
}
