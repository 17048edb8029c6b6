//! The middleware around every request: request id (taken or generated,
//! echoed as `x-request-id`, the trace id of error bodies and the
//! correlation id downstream) and a tracing span with one log line per
//! response, both from tower-http; then a bound on how long a request may
//! take and the latency metric.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use livevote_domain::CorrelationId;
use livevote_ports::{MetricEvent, Metrics};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::MakeRequestId;
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use crate::context::{self, REQUEST_ID, RequestId};
use crate::error::{ErrorCause, ErrorReply};

/// Maps a request to one of a fixed set of route labels (bounded metric labels).
pub type RouteLabel = fn(&Method, Option<&str>) -> &'static str;

/// What the middleware needs.
#[derive(Clone)]
pub struct Observer {
    pub metrics: Arc<dyn Metrics>,
    /// Longest a handler may take to produce its response head before the
    /// request is answered 503. A streamed body (Server-Sent Events) runs on
    /// after the head and is not bounded by it.
    pub request_timeout: Duration,
    pub route_label: RouteLabel,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Drops an unusable incoming `x-request-id` (see
/// [`CorrelationId::parse`]), so that tower-http's `SetRequestIdLayer`
/// replaces it with a fresh one from [`CorrelationIds`].
pub fn drop_unusable_request_id<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let usable = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| CorrelationId::parse(s).is_ok());
    if !usable {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// Makes a fresh [`CorrelationId`] for a request that came without a usable one.
#[derive(Debug, Clone, Copy)]
pub struct CorrelationIds;

impl MakeRequestId for CorrelationIds {
    fn make_request_id<B>(
        &mut self,
        _request: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        HeaderValue::from_str(CorrelationId::generate().as_str())
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// The request id given by the request-id layers (a fresh one if they are not mounted).
fn given_request_id<B>(request: &axum::http::Request<B>) -> CorrelationId {
    request
        .extensions()
        .get::<tower_http::request_id::RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .and_then(|s| CorrelationId::parse(s).ok())
        .unwrap_or_else(CorrelationId::generate)
}

/// tower-http's trace layer as the services use it: one `request` span
/// per request ([`RequestSpan`]) and one log line per response ([`LogResponse`]).
pub type RequestTrace =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), LogResponse, (), (), ()>;

/// The trace layer, its spans labelled by `route_label`.
pub fn trace_layer(route_label: RouteLabel) -> RequestTrace {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan(route_label))
        .on_request(())
        .on_response(LogResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Makes the `request` span: request id, method, route label.
#[derive(Clone, Copy)]
pub struct RequestSpan(pub RouteLabel);

impl std::fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSpan").finish_non_exhaustive()
    }
}

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let route = (self.0)(
            request.method(),
            request.extensions().get::<MatchedPath>().map(MatchedPath::as_str),
        );
        tracing::info_span!(
            "request",
            request_id = %given_request_id(request),
            method = %request.method(),
            route
        )
    }
}

/// One log line per response: a warning with its cause for a failure the
/// handler explained ([`ErrorCause`]), an error for any other 5xx, debug otherwise.
#[derive(Debug, Clone, Copy)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &axum::http::Response<B>, latency: Duration, _span: &Span) {
        let status = response.status().as_u16();
        if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
            tracing::warn!(status, %cause, "request failed");
        } else if response.status().is_server_error() {
            tracing::error!(status, "request failed");
        } else {
            tracing::debug!(status, latency_us = latency.as_micros() as u64, "request");
        }
    }
}

/// The middleware inside the request-id and trace layers: the request id
/// as handlers and error bodies see it, the bound on how long a handler may
/// take (answered with the 503 envelope; tower-http's timeout answers with
/// an empty body), and the latency metric. Mount with
/// `axum::middleware::from_fn_with_state(Arc<Observer>, observe)`.
pub async fn observe(State(observer): State<Arc<Observer>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = given_request_id(&request);
    request.extensions_mut().insert(RequestId(id.clone()));
    let route = (observer.route_label)(
        request.method(),
        request.extensions().get::<MatchedPath>().map(MatchedPath::as_str),
    );
    let timeout = observer.request_timeout;
    let response = context::scope(id, async move {
        match tokio::time::timeout(timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ErrorReply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the request took too long; retry shortly",
            )
            .retry_after(Duration::from_secs(1))
            .cause(format!("request timed out after {} ms", timeout.as_millis()))
            .into_response(),
        }
    })
    .await;
    observer.metrics.record(MetricEvent::HttpRequest {
        route,
        status: response.status().as_u16(),
        latency: started.elapsed(),
    });
    response
}
