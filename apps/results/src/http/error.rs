//! The results service's refusals and their stable codes. Every one becomes
//! `{code, message, traceId}` through the shared envelope.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use livevote_domain::ElectionError;
use livevote_http::error::ErrorReply;
use livevote_ports::{Permission, TokenError};

use crate::admin::AdminServiceError;
use crate::service::ResultsError;

/// An API refusal.
#[derive(Debug)]
pub enum ApiError {
    InvalidRequest {
        message: String,
        field: Option<&'static str>,
    },
    InvalidToken,
    TokenExpired,
    Forbidden(Permission),
    ResultsEmbargoed,
    ElectionNotFound,
    CandidateNotFound,
    VoteNotFound,
    NotFound,
    MethodNotAllowed,
    ElectionLocked(String),
    InvalidTransition(String),
    /// A DELETE of an election that holds votes: cancelling it takes a reason.
    ElectionHasVotes(String),
    ConcurrentUpdate,
    ResultsNotFinal,
    /// The domain refused the content of a change (candidates, window...).
    ValidationFailed(String),
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType,
    /// A dependency is down or a limit is reached; the client retries later.
    Unavailable(Box<Outage>),
}

/// What an `UNAVAILABLE` answer says (boxed: errors stay small on the happy path).
#[derive(Debug)]
pub struct Outage {
    pub message: &'static str,
    pub retry_after: Duration,
    /// Logged, never sent.
    pub cause: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn unavailable(
        message: &'static str,
        retry_after: Duration,
        cause: impl Into<String>,
        details: Option<serde_json::Value>,
    ) -> Self {
        ApiError::Unavailable(Box::new(Outage {
            message,
            retry_after,
            cause: cause.into(),
            details,
        }))
    }

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
            ApiError::Forbidden(_) | ApiError::ResultsEmbargoed => StatusCode::FORBIDDEN,
            ApiError::ElectionNotFound
            | ApiError::CandidateNotFound
            | ApiError::VoteNotFound
            | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ElectionLocked(_)
            | ApiError::InvalidTransition(_)
            | ApiError::ElectionHasVotes(_)
            | ApiError::ConcurrentUpdate
            | ApiError::ResultsNotFinal => StatusCode::CONFLICT,
            ApiError::ValidationFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "INVALID_REQUEST",
            ApiError::InvalidToken => "INVALID_TOKEN",
            ApiError::TokenExpired => "TOKEN_EXPIRED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::ResultsEmbargoed => "RESULTS_EMBARGOED",
            ApiError::ElectionNotFound => "ELECTION_NOT_FOUND",
            ApiError::CandidateNotFound => "CANDIDATE_NOT_FOUND",
            ApiError::VoteNotFound => "VOTE_NOT_FOUND",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::ElectionLocked(_) => "ELECTION_LOCKED",
            ApiError::InvalidTransition(_) => "INVALID_TRANSITION",
            ApiError::ElectionHasVotes(_) => "ELECTION_HAS_VOTES",
            ApiError::ConcurrentUpdate => "CONCURRENT_UPDATE",
            ApiError::ResultsNotFinal => "RESULTS_NOT_FINAL",
            ApiError::ValidationFailed(_) => "VALIDATION_FAILED",
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::Unavailable(_) => "UNAVAILABLE",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::InvalidRequest { message, .. } => message.clone(),
            ApiError::InvalidToken => "the bearer token is missing or not valid".into(),
            ApiError::TokenExpired => "the bearer token has expired; sign in again".into(),
            ApiError::Forbidden(p) => format!("this needs the {} permission", p.as_str()),
            ApiError::ResultsEmbargoed => "results of this election are embargoed".into(),
            ApiError::ElectionNotFound => "no such election".into(),
            ApiError::CandidateNotFound => "no such candidate in this election".into(),
            ApiError::VoteNotFound => "no such vote of yours (a vote still on its way is found when \
                                       electionId is given)"
                .into(),
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "method not allowed on this resource".into(),
            ApiError::ElectionLocked(why)
            | ApiError::InvalidTransition(why)
            | ApiError::ElectionHasVotes(why)
            | ApiError::ValidationFailed(why) => why.clone(),
            ApiError::ConcurrentUpdate => {
                "the election was changed by someone else at the same time; reload and retry".into()
            }
            ApiError::ResultsNotFinal => {
                "results are not final yet (the election must be closed and reconciled)".into()
            }
            ApiError::PayloadTooLarge { limit } => format!("the request body is larger than {limit} bytes"),
            ApiError::UnsupportedMediaType => "the request body must be application/json".into(),
            ApiError::Unavailable(o) => o.message.into(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::InvalidRequest { field: Some(f), .. } => Some(serde_json::json!({ "field": f })),
            ApiError::Forbidden(p) => Some(serde_json::json!({ "required": p.as_str() })),
            ApiError::PayloadTooLarge { limit } => Some(serde_json::json!({ "limitBytes": limit })),
            ApiError::Unavailable(o) => o.details.clone(),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut reply = ErrorReply::new(self.status(), self.code(), self.message());
        if let Some(details) = self.details() {
            reply = reply.details(details);
        }
        if let ApiError::Unavailable(o) = self {
            reply = reply.retry_after(o.retry_after).cause(o.cause);
        }
        reply.into_response()
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(_) => ApiError::InvalidToken,
            TokenError::Expired => ApiError::TokenExpired,
            TokenError::KeysUnavailable(cause) => ApiError::unavailable(
                "token verification is unavailable; retry shortly",
                Duration::from_secs(2),
                cause,
                None,
            ),
        }
    }
}

impl From<ResultsError> for ApiError {
    fn from(e: ResultsError) -> Self {
        match e {
            ResultsError::NotFound(_) => ApiError::ElectionNotFound,
            ResultsError::Unavailable { what, source } => ApiError::unavailable(
                "results cannot be read right now; retry shortly",
                Duration::from_secs(1),
                format!("{what}: {source:#}"),
                Some(serde_json::json!({ "dependency": what })),
            ),
        }
    }
}

impl From<AdminServiceError> for ApiError {
    fn from(e: AdminServiceError) -> Self {
        match e {
            AdminServiceError::NotFound(_) => ApiError::ElectionNotFound,
            AdminServiceError::Concurrent(_) => ApiError::ConcurrentUpdate,
            AdminServiceError::Rejected(rejected) => {
                let message = rejected.to_string();
                match rejected {
                    ElectionError::Locked { .. } => ApiError::ElectionLocked(message),
                    ElectionError::InvalidTransition { .. } => ApiError::InvalidTransition(message),
                    ElectionError::CancelNeedsReason { .. } => ApiError::ElectionHasVotes(format!(
                        "{message}: PATCH /api/v1/admin/elections/{{electionId}}/status with \
                         {{\"status\":\"CANCELLED\",\"reason\":\"...\"}}"
                    )),
                    ElectionError::UnknownCandidate(_) => ApiError::CandidateNotFound,
                    _ => ApiError::ValidationFailed(message),
                }
            }
            AdminServiceError::Unavailable(source) => ApiError::unavailable(
                "the election store is unavailable; nothing was changed, retry shortly",
                Duration::from_secs(2),
                format!("{source:#}"),
                None,
            ),
            AdminServiceError::NotAnnounced { version, source } => ApiError::unavailable(
                "the change is saved but could not be announced to the other instances; \
                 they pick it up when their cached copy expires",
                Duration::from_secs(2),
                format!("{source:#}"),
                Some(serde_json::json!({ "saved": true, "version": version })),
            ),
        }
    }
}
