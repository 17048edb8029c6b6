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

use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::observe::{CorrelationIds, Observer, RouteLabel, drop_unusable_request_id, observe, trace_layer};

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
    .layer(
        tower::ServiceBuilder::new()
            // The request id: a usable incoming one kept, else a fresh one; echoed on the response.
            .map_request(drop_unusable_request_id::<axum::body::Body>)
            .layer(SetRequestIdLayer::x_request_id(CorrelationIds))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(trace_layer(plumbing.route_label))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(Observer {
                    metrics: plumbing.metrics,
                    request_timeout: plumbing.request_timeout,
                    route_label: plumbing.route_label,
                }),
                observe,
            )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use livevote_domain::CorrelationId;
    use livevote_ports::MetricEvent;
    use tower::ServiceExt;

    use crate::error::ErrorReply;

    struct Quiet;
    impl Metrics for Quiet {
        fn record(&self, _event: MetricEvent) {}
    }

    fn app() -> Router {
        let api = Router::new().route(
            "/slow",
            get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }),
        );
        finish(
            api,
            utoipa::openapi::OpenApi::default(),
            Plumbing {
                metrics: Arc::new(Quiet),
                render_metrics: Arc::new(String::new),
                request_timeout: Duration::from_millis(50),
                route_label: |_, _| "any",
            },
            || ErrorReply::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path"),
            || ErrorReply::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "not here"),
        )
    }

    /// The status, the echoed request id and the body's traceId of one request.
    async fn ask(path: &str, request_id: Option<&str>) -> (StatusCode, String, serde_json::Value) {
        let mut request = Request::get(path);
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let response = app().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let echoed = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, echoed, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_usable_request_id_is_kept_echoed_and_is_the_trace_id() {
        let (status, echoed, body) = ask("/nowhere", Some("abc-123")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(echoed, "abc-123");
        assert_eq!(body["traceId"], "abc-123");
        assert_eq!(body["code"], "NOT_FOUND");
    }

    #[tokio::test]
    async fn an_unusable_or_missing_request_id_is_replaced_by_a_fresh_one() {
        for given in [Some("has space"), Some(&*"x".repeat(129)), None] {
            let (_, echoed, body) = ask("/nowhere", given).await;
            assert_ne!(Some(echoed.as_str()), given);
            assert!(CorrelationId::parse(&echoed).is_ok(), "{echoed:?}");
            assert_eq!(body["traceId"], echoed.as_str(), "the body and the header agree");
        }
    }

    #[tokio::test]
    async fn a_request_over_its_time_is_answered_503_with_the_envelope() {
        let (status, echoed, body) = ask("/slow", Some("slow-1")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(echoed, "slow-1");
        assert_eq!(body["code"], "UNAVAILABLE");
        assert_eq!(body["traceId"], "slow-1");
    }
}
