//! The middleware around every request: request id (taken or generated,
//! echoed as `x-request-id`, the trace id of error bodies and the
//! correlation id downstream), a tracing span, a bound on how long a
//! request may take, the latency metric, and one log line for a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use livevote_ports::{MetricEvent, Metrics};
use tracing::Instrument;

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

/// The middleware; mount with `axum::middleware::from_fn_with_state(Arc<Observer>, observe)`.
pub async fn observe(State(observer): State<Arc<Observer>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = context::request_id(request.headers());
    request.extensions_mut().insert(RequestId(id.clone()));
    let route = (observer.route_label)(
        request.method(),
        request.extensions().get::<MatchedPath>().map(MatchedPath::as_str),
    );
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route);
    let timeout = observer.request_timeout;
    let mut response = context::scope(id.clone(), async move {
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
    .instrument(span.clone())
    .await;
    let status = response.status();
    let _entered = span.enter();
    if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
        tracing::warn!(status = status.as_u16(), %cause, "request failed");
    } else if status.is_server_error() {
        tracing::error!(status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(
            status = status.as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    observer.metrics.record(MetricEvent::HttpRequest {
        route,
        status: status.as_u16(),
        latency: started.elapsed(),
    });
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
