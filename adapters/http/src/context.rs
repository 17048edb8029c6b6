//! Per-request context: the request id (our correlation id), the peer's
//! address, and the trace id that error bodies carry.

use std::net::SocketAddr;

use axum::http::HeaderMap;
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

/// The incoming request id if it is a usable correlation id (visible ASCII,
/// at most 128 bytes), else a fresh one.
pub fn request_id(headers: &HeaderMap) -> CorrelationId {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| CorrelationId::parse(s).ok())
        .unwrap_or_else(CorrelationId::generate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_request_ids_are_kept_and_others_replaced() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(request_id(&h).as_str(), "abc-123");
        h.insert(REQUEST_ID, "x".repeat(129).parse().unwrap());
        let fresh = request_id(&h);
        assert_ne!(fresh.as_str(), "x".repeat(129));
        assert!(CorrelationId::parse(fresh.as_str()).is_ok());
        h.insert(REQUEST_ID, "has space".parse().unwrap());
        assert_ne!(request_id(&h).as_str(), "has space");
    }
}
