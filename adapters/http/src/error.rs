//! The error envelope every livevote API answers with:
//! `{"code","message","traceId"}` plus `details` where useful. Each service
//! has its own error enum with its own stable codes and turns it into a
//! response through [`ErrorReply`]. Nothing internal reaches a client: the
//! cause of a failure travels to the [`crate::observe`] middleware in a
//! response extension ([`ErrorCause`]) and is logged there, once.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::context;

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Stable and machine-readable; each operation of the contract lists the codes it answers.
    #[schema(example = "ELECTION_NOT_FOUND")]
    pub code: &'static str,
    /// For people; wording may change.
    pub message: String,
    /// The request id (`x-request-id`), also in every log line of the request.
    pub trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// Why an unexpected failure happened, for the log line of the middleware.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

/// One refusal, ready to become a response.
#[derive(Debug)]
pub struct ErrorReply {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<Duration>,
    /// Logged by the middleware, never sent.
    pub cause: Option<String>,
}

impl ErrorReply {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            cause: None,
        }
    }

    #[must_use]
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds `Retry-After` and `details.retryAfterSeconds`.
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        let seconds = retry_seconds(after);
        let mut details = self.details.take().unwrap_or_else(|| serde_json::json!({}));
        if let Some(map) = details.as_object_mut() {
            map.insert("retryAfterSeconds".into(), seconds.into());
        }
        self.details = Some(details);
        self.retry_after = Some(after);
        self
    }

    #[must_use]
    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }
}

impl IntoResponse for ErrorReply {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: self.message,
            trace_id: context::trace_id(),
            details: self.details,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_seconds(after)));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(ErrorCause(cause));
        }
        response
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_seconds(Duration::ZERO), 1);
        assert_eq!(retry_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_seconds(Duration::from_secs(30)), 30);
    }

    #[test]
    fn replies_carry_retry_after_and_keep_the_cause_out_of_the_body() {
        let response = ErrorReply::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "later")
            .details(serde_json::json!({"what": "redis"}))
            .retry_after(Duration::from_millis(1500))
            .cause("redis: connection refused")
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let cause = response.extensions().get::<ErrorCause>().map(|c| c.0.clone());
        assert_eq!(cause.as_deref(), Some("redis: connection refused"));
    }
}
