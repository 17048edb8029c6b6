//! The one error type of the ingestion API: every refusal becomes
//! `{"code","message","traceId"}` (plus `details` where useful), with the
//! status code decided in one place and a stable machine-readable `code`.
//! Nothing internal reaches a client: the cause of a 5xx travels to the
//! logging middleware in a response extension and is logged there, once.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use livevote_domain::{Rejection, Timestamp, VoteId};
use livevote_ports::TokenError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::CastVoteError;

use super::context;

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Stable, machine-readable: `INVALID_REQUEST`, `INVALID_TOKEN`, `TOKEN_EXPIRED`, `CAPTCHA_FAILED`,
    /// `ELECTION_NOT_FOUND`, `CANDIDATE_NOT_FOUND`, `ELECTION_NOT_ACTIVE`, `ELECTION_CLOSED`,
    /// `DUPLICATE_VOTE`, `PAYLOAD_TOO_LARGE`, `UNSUPPORTED_MEDIA_TYPE`, `RATE_LIMITED`, `UNAVAILABLE`,
    /// `NOT_FOUND`, `METHOD_NOT_ALLOWED`, `INTERNAL`.
    #[schema(example = "DUPLICATE_VOTE")]
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

/// An API refusal.
#[derive(Debug)]
pub enum ApiError {
    InvalidRequest {
        message: String,
        field: Option<&'static str>,
    },
    InvalidToken,
    TokenExpired,
    CaptchaFailed(&'static str),
    ElectionNotFound,
    CandidateNotFound,
    ElectionNotActive(String),
    ElectionClosed,
    DuplicateVote {
        vote_id: VoteId,
        accepted_at: Timestamp,
    },
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType,
    RateLimited {
        retry_after: Duration,
    },
    /// A dependency is down or the service sheds load; the client retries later.
    Unavailable {
        message: &'static str,
        retry_after: Duration,
        cause: String,
    },
    NotFound,
    MethodNotAllowed,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            field: Some(field),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::InvalidToken | ApiError::TokenExpired => StatusCode::UNAUTHORIZED,
            ApiError::CaptchaFailed(_) => StatusCode::FORBIDDEN,
            ApiError::ElectionNotFound | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::CandidateNotFound => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ElectionNotActive(_) | ApiError::ElectionClosed | ApiError::DuplicateVote { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "INVALID_REQUEST",
            ApiError::InvalidToken => "INVALID_TOKEN",
            ApiError::TokenExpired => "TOKEN_EXPIRED",
            ApiError::CaptchaFailed(_) => "CAPTCHA_FAILED",
            ApiError::ElectionNotFound => "ELECTION_NOT_FOUND",
            ApiError::CandidateNotFound => "CANDIDATE_NOT_FOUND",
            ApiError::ElectionNotActive(_) => "ELECTION_NOT_ACTIVE",
            ApiError::ElectionClosed => "ELECTION_CLOSED",
            ApiError::DuplicateVote { .. } => "DUPLICATE_VOTE",
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Unavailable { .. } => "UNAVAILABLE",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::InvalidRequest { message, .. } => message.clone(),
            ApiError::InvalidToken => "the bearer token is missing or not valid".into(),
            ApiError::TokenExpired => "the bearer token has expired; sign in again".into(),
            ApiError::CaptchaFailed(why) => (*why).into(),
            ApiError::ElectionNotFound => "no such election".into(),
            ApiError::CandidateNotFound => "no such candidate in this election".into(),
            ApiError::ElectionNotActive(why) => why.clone(),
            ApiError::ElectionClosed => "voting in this election has closed".into(),
            ApiError::DuplicateVote { .. } => "you have already voted in this election".into(),
            ApiError::PayloadTooLarge { limit } => format!("the request body is larger than {limit} bytes"),
            ApiError::UnsupportedMediaType => "the request body must be application/json".into(),
            ApiError::RateLimited { .. } => "too many requests; retry later".into(),
            ApiError::Unavailable { message, .. } => (*message).into(),
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "method not allowed on this resource".into(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::InvalidRequest { field: Some(f), .. } => Some(serde_json::json!({ "field": f })),
            ApiError::DuplicateVote { vote_id, accepted_at } => Some(serde_json::json!({
                "voteId": vote_id.to_string(),
                "acceptedAt": super::votes::rfc3339(accepted_at),
            })),
            ApiError::PayloadTooLarge { limit } => Some(serde_json::json!({ "limitBytes": limit })),
            ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after, .. } => {
                Some(serde_json::json!({ "retryAfterSeconds": retry_seconds(*retry_after) }))
            }
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(_) => ApiError::InvalidToken,
            TokenError::Expired => ApiError::TokenExpired,
            TokenError::KeysUnavailable(cause) => ApiError::Unavailable {
                message: "token verification is unavailable; retry shortly",
                retry_after: Duration::from_secs(2),
                cause,
            },
        }
    }
}

impl From<CastVoteError> for ApiError {
    fn from(e: CastVoteError) -> Self {
        match e {
            CastVoteError::ElectionNotFound(_) => ApiError::ElectionNotFound,
            CastVoteError::Rejected(Rejection::UnknownCandidate { .. }) => ApiError::CandidateNotFound,
            CastVoteError::Rejected(Rejection::Ended { .. }) => ApiError::ElectionClosed,
            CastVoteError::Rejected(r @ (Rejection::NotActive { .. } | Rejection::NotStarted { .. })) => {
                ApiError::ElectionNotActive(r.to_string())
            }
            CastVoteError::CaptchaRequired => {
                ApiError::CaptchaFailed("this election requires a captcha token")
            }
            CastVoteError::CaptchaFailed => ApiError::CaptchaFailed("captcha verification failed"),
            CastVoteError::AlreadyVoted { vote_id, accepted_at } => {
                ApiError::DuplicateVote { vote_id, accepted_at }
            }
            CastVoteError::Overloaded => ApiError::Unavailable {
                message: "too many votes in flight; retry shortly",
                retry_after: Duration::from_secs(1),
                cause: "vote buffer full (load shedding)".into(),
            },
            CastVoteError::Unavailable { what, source } => ApiError::Unavailable {
                message: "the vote could not be taken right now; retry shortly",
                retry_after: Duration::from_secs(2),
                cause: format!("{what}: {source:#}"),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            code: self.code(),
            message: self.message(),
            trace_id: context::trace_id(),
            details: self.details(),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(after) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_seconds(after)));
        }
        if let ApiError::Unavailable { cause, .. } = self {
            response.extensions_mut().insert(ErrorCause(cause));
        }
        response
    }
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
}
