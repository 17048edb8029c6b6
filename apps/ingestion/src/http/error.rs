//! The one error type of the ingestion API: every refusal becomes
//! `{"code","message","traceId"}` (plus `details` where useful), with the
//! status code decided in one place and a stable machine-readable `code`.
//! Nothing internal reaches a client: the cause of a 5xx travels to the
//! logging middleware in a response extension and is logged there, once.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use livevote_domain::{Rejection, Timestamp, VoteId, VoteLimitReached};
use livevote_http::error::ErrorReply;
use livevote_ports::TokenError;

use crate::service::CastVoteError;

pub use livevote_http::error::{ErrorBody, ErrorCause, retry_seconds};

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
    /// The Idempotency-Key was first sent with another vote (another candidate).
    IdempotencyKeyReused,
    /// `multi`: every vote the election gives (or every vote for the candidate) is used.
    VoteLimitReached(VoteLimitReached),
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType,
    /// The body did not arrive within the body timeout (slow client).
    RequestTimeout {
        limit: Duration,
    },
    RateLimited {
        retry_after: Duration,
    },
    /// A dependency is down or the service sheds load; the client retries later.
    Unavailable {
        message: &'static str,
        retry_after: Duration,
        cause: String,
    },
    /// The queue has not answered for a vote it may still take: neither
    /// accepted nor refused yet. A retry with the same Idempotency-Key, or
    /// GET /api/v1/elections/{id}/my-vote, tells the outcome.
    VotePending {
        vote_id: VoteId,
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
            ApiError::CandidateNotFound | ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ElectionNotActive(_)
            | ApiError::ElectionClosed
            | ApiError::DuplicateVote { .. }
            | ApiError::VoteLimitReached(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } | ApiError::VotePending { .. } => StatusCode::SERVICE_UNAVAILABLE,
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
            ApiError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ApiError::VoteLimitReached(_) => "VOTE_LIMIT_REACHED",
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::RequestTimeout { .. } => "REQUEST_TIMEOUT",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Unavailable { .. } => "UNAVAILABLE",
            ApiError::VotePending { .. } => "VOTE_PENDING",
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
            ApiError::IdempotencyKeyReused => {
                "this Idempotency-Key was already used for another vote in this \
                                               election; send a new key with each new vote"
                    .into()
            }
            ApiError::VoteLimitReached(l) if l.per_candidate => format!(
                "you have used all {} of your votes for this candidate; you may still vote for others",
                l.max
            ),
            ApiError::VoteLimitReached(l) => {
                format!("you have used all {} of your votes in this election", l.max)
            }
            ApiError::PayloadTooLarge { limit } => format!("the request body is larger than {limit} bytes"),
            ApiError::UnsupportedMediaType => "the request body must be application/json".into(),
            ApiError::RequestTimeout { limit } => {
                format!("the request body did not arrive within {} ms", limit.as_millis())
            }
            ApiError::RateLimited { .. } => "too many requests; retry later".into(),
            ApiError::Unavailable { message, .. } => (*message).into(),
            ApiError::VotePending { .. } => "the queue has not yet confirmed this vote; retry with the same \
                                            Idempotency-Key (or check your vote) to learn whether it counts"
                .into(),
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "method not allowed on this resource".into(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::InvalidRequest { field: Some(f), .. } => Some(serde_json::json!({ "field": f })),
            ApiError::DuplicateVote { vote_id, accepted_at } => Some(serde_json::json!({
                "voteId": vote_id.to_string(),
                "acceptedAt": livevote_http::rfc3339(accepted_at),
            })),
            ApiError::VoteLimitReached(l) => Some(serde_json::json!({
                "used": l.used,
                "max": l.max,
                "scope": if l.per_candidate { "candidate" } else { "election" },
            })),
            ApiError::PayloadTooLarge { limit } => Some(serde_json::json!({ "limitBytes": limit })),
            ApiError::VotePending { vote_id } => Some(serde_json::json!({ "voteId": vote_id.to_string() })),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            ApiError::VotePending { .. } => Some(Duration::from_secs(2)),
            _ => None,
        }
    }
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
            CastVoteError::QueueUnanswered { vote_id } => ApiError::VotePending { vote_id },
            CastVoteError::IdempotencyKeyReused { .. } => ApiError::IdempotencyKeyReused,
            CastVoteError::VoteLimitReached(l) => ApiError::VoteLimitReached(l),
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
        let mut reply = ErrorReply::new(self.status(), self.code(), self.message());
        if let Some(details) = self.details() {
            reply = reply.details(details);
        }
        if let Some(after) = self.retry_after() {
            reply = reply.retry_after(after);
        }
        if let ApiError::Unavailable { cause, .. } = self {
            reply = reply.cause(cause);
        }
        reply.into_response()
    }
}
