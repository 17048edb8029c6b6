//! The routes and middleware every service mounts around its own API: the
//! Prometheus text at `/metrics`, its OpenAPI document at
//! `/api-docs/openapi.json`, the error envelope for unknown paths and
//! methods, and the [`observe`](crate::observe::observe) middleware.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use livevote_ports::Metrics;

use crate::observe::{Observer, RouteLabel, observe};

/// What the shared routes and the middleware need from a service.
#[derive(Clone)]
pub struct Plumbing {
    pub metrics: Arc<dyn Metrics>,
    /// Renders the Prometheus exposition text.
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub request_timeout: Duration,
    pub route_label: RouteLabel,
}

impl std::fmt::Debug for Plumbing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plumbing")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// `api` with `/metrics` and `/api-docs/openapi.json` (serving `doc`), the
/// answers `not_found()` for an unknown path and `method_not_allowed()` for
/// a method a path does not take, and
/// every request observed.
pub fn finish<E>(
    api: Router,
    doc: utoipa::openapi::OpenApi,
    plumbing: Plumbing,
    not_found: fn() -> E,
    method_not_allowed: fn() -> E,
) -> Router
where
    E: IntoResponse + Send + 'static,
{
    let doc = Arc::new(doc);
    let render = plumbing.render_metrics.clone();
    api.route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], render()) }
        }),
    )
    .route(
        "/api-docs/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .fallback(move || async move { not_found() })
    .method_not_allowed_fallback(move || async move { method_not_allowed() })
    .layer(axum::middleware::from_fn_with_state(
        Arc::new(Observer {
            metrics: plumbing.metrics,
            request_timeout: plumbing.request_timeout,
            route_label: plumbing.route_label,
        }),
        observe,
    ))
}
