//! Per-request context: the request id (our correlation id), the peer's
//! address, and the trace id that error bodies carry.

use std::net::SocketAddr;

use livevote_domain::CorrelationId;

/// The request id header, taken from the client (or a proxy) when usable,
/// generated otherwise, and echoed on the response.
pub const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    static TRACE_ID: CorrelationId;
}

/// The TCP peer of the connection, set by the server for every request.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The request id as the handlers see it.
#[derive(Debug, Clone)]
pub struct RequestId(pub CorrelationId);

/// The request id of the request being handled (empty outside one).
pub fn trace_id() -> String {
    TRACE_ID.try_with(|id| id.as_str().to_owned()).unwrap_or_default()
}

/// Runs `f` with `id` as the current trace id.
pub async fn scope<F: std::future::Future>(id: CorrelationId, f: F) -> F::Output {
    TRACE_ID.scope(id, f).await
}
