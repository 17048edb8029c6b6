//! `POST /api/v1/votes` and `GET /api/v1/votes/status/{electionId}/me`.
//!
//! The order of checks on a vote: client-IP limit (cheapest, before any
//! crypto) -> bearer token -> per-viewer limit -> media type -> body (size,
//! JSON shape, characters) -> the cast-vote use case. Each refusal changes
//! nothing. The voter is only ever the token's `sub`.

use std::net::IpAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use livevote_domain::{CandidateId, ElectionId, IdempotencyKey, VotePolicy};
use livevote_ports::{MetricEvent, Principal, RejectReason};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::client_ip::client_ip;
use super::context::{PeerAddr, RequestId};
use super::error::{ApiError, ErrorBody};
use crate::service::CastVote;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 4096;
/// Longest accepted CAPTCHA token (Turnstile issues at most 2,048 characters).
pub const MAX_CAPTCHA_TOKEN: usize = 2048;
/// How long a client may take to send the whole (at most 4 KiB) body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A vote. The voter is the bearer token's subject; a body naming a voter is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VoteRequest {
    /// The election (UUID).
    #[schema(format = Uuid)]
    pub election_id: String,
    /// The candidate (UUID), one of the election's.
    #[schema(format = Uuid)]
    pub candidate_id: String,
    /// Required when the election asks for a CAPTCHA (Cloudflare Turnstile token, at most 2,048 characters).
    #[serde(default)]
    #[schema(max_length = 2048, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub captcha_token: Option<String>,
}

/// A vote taken: the queue has acknowledged it, it will be counted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoteAccepted {
    pub vote_id: String,
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: String,
    /// RFC 3339, UTC, microseconds; the time that decides whether the vote counts.
    pub accepted_at: String,
    /// `multi` and `changeable` elections only: which of the viewer's votes
    /// this is (`multi`: its slot, 1 to `maxVotes`; `changeable`: the change
    /// number, the highest one being the viewer's current vote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote_number: Option<u32>,
    /// `multi` elections only: how many votes a viewer has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_votes: Option<u16>,
}

/// The caller's vote in an election.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoteStatus {
    pub election_id: String,
    pub has_voted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vote_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
}

pub use livevote_http::rfc3339;

impl AppState {
    fn peer_ip(&self, peer: Option<&PeerAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        peer.map(|p| client_ip(p.0.ip(), headers, self.trusted_proxies))
    }

    fn limited(&self, reason: Result<(), std::time::Duration>) -> Result<(), ApiError> {
        reason.map_err(|retry_after| {
            self.metrics.record(MetricEvent::VoteRejected {
                reason: RejectReason::RateLimited,
            });
            ApiError::RateLimited { retry_after }
        })
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let Some(token) = livevote_http::bearer::bearer(headers) else {
            self.unauthorized();
            return Err(ApiError::InvalidToken);
        };
        self.tokens.verify(token).await.map_err(|e| {
            if !matches!(e, livevote_ports::TokenError::KeysUnavailable(_)) {
                self.unauthorized();
            }
            tracing::debug!(error = %e, "token refused");
            ApiError::from(e)
        })
    }

    fn unauthorized(&self) {
        self.metrics.record(MetricEvent::VoteRejected {
            reason: RejectReason::Unauthorized,
        });
    }

    fn bad_request(&self, e: ApiError) -> ApiError {
        self.metrics.record(MetricEvent::VoteRejected {
            reason: RejectReason::InvalidRequest,
        });
        e
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.len() > 17
                    && mime[..12].eq_ignore_ascii_case("application/")
                    && mime.to_ascii_lowercase().ends_with("+json"))
        })
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    // A client that trickles its body holds a connection and a task: it gets a
    // fixed time for the whole body, then 408.
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES));
    let Ok(read) = read.await else {
        return Err(ApiError::RequestTimeout { limit: BODY_TIMEOUT });
    };
    read.map_err(|e| {
        let length_limit =
            std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if length_limit {
            too_large
        } else {
            ApiError::invalid(format!("could not read the request body: {e}"))
        }
    })
}

fn no_control(field: &'static str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(())
}

/// Parses the body into the domain's words, or says precisely what is wrong.
/// Public for the hot-path benchmarks (`loadtests/benches/hot_paths.rs`).
pub fn parse_vote(bytes: &[u8]) -> Result<(ElectionId, CandidateId, Option<String>), ApiError> {
    let request: VoteRequest = serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        if text.contains("unknown field") && text.to_ascii_lowercase().contains("voter") {
            return ApiError::invalid(
                "the voter is the bearer token's subject; the body must not name a voter",
            );
        }
        ApiError::invalid(format!("invalid vote request: {text}"))
    })?;
    no_control("electionId", &request.election_id)?;
    no_control("candidateId", &request.candidate_id)?;
    let election = ElectionId::parse(&request.election_id)
        .map_err(|e| ApiError::invalid_field("electionId", format!("electionId: {e}")))?;
    let candidate = CandidateId::parse(&request.candidate_id)
        .map_err(|e| ApiError::invalid_field("candidateId", format!("candidateId: {e}")))?;
    if let Some(token) = &request.captcha_token {
        no_control("captchaToken", token)?;
        if token.chars().count() > MAX_CAPTCHA_TOKEN {
            return Err(ApiError::invalid_field(
                "captchaToken",
                format!("captchaToken is longer than {MAX_CAPTCHA_TOKEN} characters"),
            ));
        }
    }
    Ok((election, candidate, request.captcha_token))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| IdempotencyKey::parse(s).ok())
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "Idempotency-Key",
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                })
        })
        .transpose()
}

/// Cast a vote.
#[utoipa::path(
    post,
    path = "/api/v1/votes",
    tag = "votes",
    request_body = VoteRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "makes the request safe to retry: a retry with the same key and the same vote gets the same voteId; the same key with another candidate gets 422 IDEMPOTENCY_KEY_REUSED (1 to 255 visible ASCII characters)", min_length = 1, max_length = 255, pattern = r"^[!-~]{1,255}$"),
        ("X-Request-Id" = Option<String>, Header, description = "correlation id, echoed; generated when absent"),
    ),
    responses(
        (status = 202, description = "accepted: the queue acknowledged the vote", body = VoteAccepted),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "CAPTCHA_FAILED", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "DUPLICATE_VOTE (details: voteId, acceptedAt), VOTE_LIMIT_REACHED (a `multi` election: details used, max, scope `election` or `candidate`), ELECTION_NOT_ACTIVE, ELECTION_CLOSED", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
        (status = 408, description = "REQUEST_TIMEOUT: the body did not arrive within 5 s", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
        (status = 422, description = "CANDIDATE_NOT_FOUND, or IDEMPOTENCY_KEY_REUSED (the Idempotency-Key was first sent with a vote for another candidate in this election; nothing changed)", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED, with Retry-After", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE (queue or Redis down, overload, host clock off), or VOTE_PENDING (the queue has not yet answered for this vote: retry with the same Idempotency-Key to learn its outcome); with Retry-After", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cast_vote(
    State(app): State<AppState>,
    peer: Option<axum::Extension<PeerAddr>>,
    axum::Extension(RequestId(correlation_id)): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let remote_ip = app.peer_ip(peer.as_deref(), &headers);
    if let Some(ip) = remote_ip {
        app.limited(app.limits.check_ip(ip))?;
    }
    let principal = app.authenticate(&headers).await?;
    app.limited(app.limits.check_voter(&principal.subject))?;
    if !is_json(&headers) {
        return Err(app.bad_request(ApiError::UnsupportedMediaType));
    }
    let bytes = read_body(&headers, body).await.map_err(|e| app.bad_request(e))?;
    let (election_id, candidate_id, captcha_token) = parse_vote(&bytes).map_err(|e| app.bad_request(e))?;
    let idempotency_key = idempotency_key(&headers).map_err(|e| app.bad_request(e))?;
    let receipt = app
        .voting
        .cast(CastVote {
            voter: principal.subject,
            election_id,
            candidate_id,
            captcha_token,
            idempotency_key,
            correlation_id,
            remote_ip,
        })
        .await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(VoteAccepted {
            vote_id: receipt.vote_id.to_string(),
            status: "accepted".into(),
            accepted_at: rfc3339(&receipt.accepted_at),
            // Nothing more for `single`: its answer stays what it always was.
            vote_number: (receipt.policy != VotePolicy::Single).then_some(receipt.slot.number),
            max_votes: receipt.policy.max_votes(),
        }),
    )
        .into_response();
    if receipt.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The caller's vote in an election.
#[utoipa::path(
    get,
    path = "/api/v1/votes/status/{electionId}/me",
    tag = "votes",
    params(("electionId" = uuid::Uuid, Path, description = "the election (UUID)")),
    responses(
        (status = 200, description = "whether the caller has an accepted vote", body = VoteStatus),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn my_vote(
    State(app): State<AppState>,
    peer: Option<axum::Extension<PeerAddr>>,
    headers: HeaderMap,
    Path(election): Path<String>,
) -> Result<Json<VoteStatus>, ApiError> {
    if let Some(ip) = app.peer_ip(peer.as_deref(), &headers) {
        app.limited(app.limits.check_ip(ip))?;
    }
    let principal = app.authenticate(&headers).await?;
    let election_id = ElectionId::parse(&election)
        .map_err(|e| ApiError::invalid_field("electionId", format!("electionId: {e}")))?;
    let mine = app.voting.my_vote(election_id, principal.subject).await?;
    Ok(Json(VoteStatus {
        election_id: election_id.to_string(),
        has_voted: mine.is_some(),
        vote_id: mine.as_ref().map(|m| m.vote_id.to_string()),
        accepted_at: mine.as_ref().map(|m| rfc3339(&m.accepted_at)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.livevote+json",
        ] {
            h.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(is_json(&h), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonp",
        ] {
            h.insert(header::CONTENT_TYPE, bad.parse().unwrap());
            assert!(!is_json(&h), "{bad}");
        }
    }

    #[test]
    fn bodies_are_parsed_once_with_precise_errors() {
        let e = ElectionId::generate();
        let c = CandidateId::generate();
        let ok = format!(r#"{{"electionId":"{e}","candidateId":"{c}"}}"#);
        assert_eq!(parse_vote(ok.as_bytes()).unwrap(), (e, c, None));
        let voter = format!(r#"{{"electionId":"{e}","candidateId":"{c}","voterId":"someone"}}"#);
        let ApiError::InvalidRequest { message, .. } = parse_vote(voter.as_bytes()).unwrap_err() else {
            panic!()
        };
        assert!(message.contains("token"), "{message}");
        for bad in [
            "not json".to_string(),
            format!(r#"{{"electionId":5,"candidateId":"{c}"}}"#),
            format!(r#"{{"electionId":"{e}"}}"#),
            format!(r#"{{"electionId":"not-a-uuid","candidateId":"{c}"}}"#),
            format!(r#"{{"electionId":"{e}\u0000","candidateId":"{c}"}}"#),
            format!(
                r#"{{"electionId":"{e}","candidateId":"{c}","captchaToken":"{}"}}"#,
                "t".repeat(2049)
            ),
        ] {
            assert!(
                matches!(parse_vote(bad.as_bytes()), Err(ApiError::InvalidRequest { .. })),
                "{bad}"
            );
        }
    }
}
