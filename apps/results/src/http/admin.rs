//! Election administration (`elections:admin`). Every change is audited
//! with the caller's `sub` and announced to every instance.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use livevote_domain::{
    ActorId, CancelReason, CandidateDraft, CandidateId, CandidateName, Description, Election, ElectionEdit,
    ElectionStatus, NewElection, Party, PolicyError, ResultsVisibility, Timestamp, Title, VotePolicy,
    VotingWindow,
};
use livevote_http::error::ErrorBody;
use livevote_http::rfc3339;
use livevote_ports::{PageRequest, Permission, Principal};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::{ApiQuery, AppState, election_id, json_body, path_id};

/// A candidate.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateDoc {
    pub candidate_id: String,
    pub name: String,
    pub party: Option<String>,
}

/// An election as admins see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElectionDoc {
    pub election_id: String,
    pub title: String,
    pub description: String,
    pub starts_at: String,
    pub ends_at: String,
    /// The status as stored.
    pub status: &'static str,
    /// The status now, with the voting window applied (a SCHEDULED election is ACTIVE from its start).
    pub effective_status: &'static str,
    /// `LIVE` or `HIDDEN` (embargoed).
    pub results_visibility: &'static str,
    pub captcha_required: bool,
    /// Grows with every change.
    pub version: u64,
    pub created_at: String,
    pub candidates: Vec<CandidateDoc>,
    /// The vote policy: `multi` or `changeable`; absent for `single` (one
    /// vote per viewer, the default), so those documents read as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(multi|changeable)$")]
    pub policy: Option<&'static str>,
    /// `multi`: votes per viewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_votes: Option<u16>,
    /// `multi`: at most this many of a viewer's votes for one candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_candidate: Option<u16>,
}

pub fn election_doc(e: &Election) -> ElectionDoc {
    ElectionDoc {
        election_id: e.id().to_string(),
        title: e.title().as_str().to_owned(),
        description: e.description().as_str().to_owned(),
        starts_at: rfc3339(&e.window().start()),
        ends_at: rfc3339(&e.window().end()),
        status: e.stored_status().as_str(),
        effective_status: e.effective_status(chrono::Utc::now()).as_str(),
        results_visibility: e.visibility().as_str(),
        captcha_required: e.captcha_required(),
        version: e.version(),
        created_at: rfc3339(&e.created_at()),
        candidates: e
            .candidates()
            .iter()
            .map(|c| CandidateDoc {
                candidate_id: c.id().to_string(),
                name: c.name().as_str().to_owned(),
                party: c.party().map(|p| p.as_str().to_owned()),
            })
            .collect(),
        policy: (e.policy() != VotePolicy::Single).then(|| e.policy().as_str()),
        max_votes: e.policy().max_votes(),
        max_per_candidate: e.policy().max_per_candidate(),
    }
}

/// A limit as a whole number: JSON Schema's `integer` also admits `5.0`.
fn whole(field: &str, n: Option<&serde_json::Number>) -> Result<Option<i64>, ApiError> {
    let Some(n) = n else { return Ok(None) };
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= 1e9)
                .map(|f| f as i64)
        })
        .map(Some)
        .ok_or_else(|| {
            ApiError::ValidationFailed(format!("{field} must be a whole number from 1 to 100; got {n}"))
        })
}

/// The policy of a create or update request: `policy` with its limits.
fn policy(
    name: Option<&str>,
    max_votes: Option<&serde_json::Number>,
    max_per_candidate: Option<&serde_json::Number>,
) -> Result<Option<VotePolicy>, ApiError> {
    let max_votes = whole("maxVotes", max_votes)?;
    let max_per_candidate = whole("maxPerCandidate", max_per_candidate)?;
    let Some(name) = name else {
        if max_votes.is_some() || max_per_candidate.is_some() {
            return Err(ApiError::ValidationFailed(
                "maxVotes and maxPerCandidate need \"policy\": \"multi\"".into(),
            ));
        }
        return Ok(None);
    };
    VotePolicy::from_parts(name, max_votes, max_per_candidate)
        .map(Some)
        .map_err(|e| match e {
            PolicyError::Unknown => ApiError::invalid_field("policy", format!("policy: {e}; got {name:?}")),
            other => ApiError::ValidationFailed(other.to_string()),
        })
}

/// A page of elections.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElectionPage {
    pub content: Vec<ElectionDoc>,
    pub page: u32,
    pub size: u32,
    pub total_elements: u64,
    pub total_pages: u64,
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 0-based page number (at most 1,000,000).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 1000000)]
    pub page: Option<String>,
    /// Items per page, 1..=100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub size: Option<String>,
    /// Only elections whose effective status is this one.
    #[param(pattern = r"^(DRAFT|SCHEDULED|ACTIVE|CLOSED|CANCELLED)$")]
    pub status: Option<String>,
}

/// Reads `page` and `size` (0-based page, 1..=100 items).
pub fn page_request(page: Option<&str>, size: Option<&str>) -> Result<PageRequest, ApiError> {
    let page = match page {
        None => 0,
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|p| *p <= 1_000_000)
            .ok_or_else(|| ApiError::invalid_field("page", "page must be an integer from 0"))?,
    };
    let size = match size {
        None => 20,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|s| (1..=100).contains(s))
            .ok_or_else(|| ApiError::invalid_field("size", "size must be an integer from 1 to 100"))?,
    };
    Ok(PageRequest { page, size })
}

fn status_param(field: &'static str, s: &str) -> Result<ElectionStatus, ApiError> {
    ElectionStatus::parse(s).ok_or_else(|| {
        ApiError::invalid_field(
            field,
            format!("{field} must be one of DRAFT, SCHEDULED, ACTIVE, CLOSED, CANCELLED; got {s:?}"),
        )
    })
}

async fn admin(app: &AppState, headers: &HeaderMap) -> Result<ActorId, ApiError> {
    let p: Principal = app.require(headers, Permission::ElectionsAdmin).await?;
    ActorId::parse(p.subject.as_str()).map_err(|_| ApiError::InvalidToken)
}

/// Elections, newest first.
#[utoipa::path(get, path = "/api/v1/admin/elections", tag = "admin",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of elections", body = ElectionPage),
        (status = 400, description = "INVALID_REQUEST (page, size, status)", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ElectionPage>, ApiError> {
    admin(&app, &headers).await?;
    let page = page_request(q.page.as_deref(), q.size.as_deref())?;
    let status = q
        .status
        .as_deref()
        .map(|s| status_param("status", s))
        .transpose()?;
    let found = app.admin.list(status, page).await?;
    Ok(Json(ElectionPage {
        total_pages: found.total_pages(),
        content: found.content.iter().map(election_doc).collect(),
        page: found.page,
        size: found.size,
        total_elements: found.total_elements,
    }))
}

/// A candidate to add or change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CandidateInput {
    /// 1..=200 characters once surrounding whitespace is trimmed, no control characters; unique
    /// in the election (case-insensitive).
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub name: String,
    /// 1..=100 characters once trimmed, no control characters.
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,98}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f])?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub party: Option<String>,
}

fn candidate_draft(c: &CandidateInput) -> Result<CandidateDraft, ApiError> {
    Ok(CandidateDraft {
        name: CandidateName::parse(&c.name)
            .map_err(|e| ApiError::invalid_field("name", format!("name: {e}")))?,
        party: c
            .party
            .as_deref()
            .map(Party::parse)
            .transpose()
            .map_err(|e| ApiError::invalid_field("party", format!("party: {e}")))?,
    })
}

fn time(field: &'static str, s: &str) -> Result<Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| ApiError::invalid_field(field, format!("{field} must be an RFC 3339 time: {e}")))
}

/// A window the schema cannot rule out (an end before the start) is a 422, like the other
/// rules that need more than one field.
fn window(start: Timestamp, end: Timestamp) -> Result<VotingWindow, ApiError> {
    VotingWindow::new(start, end).map_err(|e| ApiError::ValidationFailed(format!("endsAt: {e}")))
}

fn visibility(field: &'static str, s: &str) -> Result<ResultsVisibility, ApiError> {
    ResultsVisibility::parse(s)
        .ok_or_else(|| ApiError::invalid_field(field, format!("{field} must be LIVE or HIDDEN; got {s:?}")))
}

/// A new election.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateElection {
    /// 3..=200 characters once surrounding whitespace is trimmed, no control characters.
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]{1,198}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub title: String,
    /// Up to 2000 characters once trimmed; line breaks and tabs allowed, no other control characters.
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f](?:[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]{0,1998}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f])?)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub description: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// RFC 3339, after `startsAt` (422 otherwise).
    #[schema(format = DateTime)]
    pub ends_at: String,
    /// 2..=100 candidates, names unique ignoring case (422 otherwise).
    #[schema(min_items = 2, max_items = 100)]
    pub candidates: Vec<CandidateInput>,
    /// `LIVE` (default) or `HIDDEN` (embargoed until revealed).
    #[schema(pattern = r"^(LIVE|HIDDEN)$")]
    pub results_visibility: Option<String>,
    #[serde(default)]
    pub captcha_required: bool,
    /// `single` (default: one vote per viewer), `multi` (up to `maxVotes`
    /// votes per viewer) or `changeable` (one current vote, replaced by each
    /// new one until the lines close). Locked once voting starts.
    #[schema(pattern = r"^(single|multi|changeable)$")]
    pub policy: Option<String>,
    /// `multi` only: 1..=100 votes per viewer (422 otherwise).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub max_votes: Option<serde_json::Number>,
    /// `multi` only: at most this many for one candidate, 1..=maxVotes (422 otherwise).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub max_per_candidate: Option<serde_json::Number>,
}

/// Creates an election in DRAFT, with its candidates.
#[utoipa::path(post, path = "/api/v1/admin/elections", tag = "admin",
    request_body = CreateElection,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created; Location names it", body = ElectionDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
        (status = 422, description = "VALIDATION_FAILED (candidates, window, policy limits)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = admin(&app, &headers).await?;
    let input: CreateElection = json_body(&headers, &body)?;
    let new = NewElection {
        title: Title::parse(&input.title)
            .map_err(|e| ApiError::invalid_field("title", format!("title: {e}")))?,
        description: Description::parse(input.description.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::invalid_field("description", format!("description: {e}")))?,
        window: window(
            time("startsAt", &input.starts_at)?,
            time("endsAt", &input.ends_at)?,
        )?,
        candidates: input
            .candidates
            .iter()
            .map(candidate_draft)
            .collect::<Result<_, _>>()?,
        visibility: input
            .results_visibility
            .as_deref()
            .map(|v| visibility("resultsVisibility", v))
            .transpose()?
            .unwrap_or(ResultsVisibility::Live),
        captcha_required: input.captcha_required,
        policy: policy(
            input.policy.as_deref(),
            input.max_votes.as_ref(),
            input.max_per_candidate.as_ref(),
        )?
        .unwrap_or_default(),
    };
    let election = app.admin.create(actor, new).await?;
    let mut response = (StatusCode::CREATED, Json(election_doc(&election))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/admin/elections/{}", election.id())) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// One election.
#[utoipa::path(get, path = "/api/v1/admin/elections/{electionId}", tag = "admin",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the election", body = ElectionDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn get_one(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ElectionDoc>, ApiError> {
    admin(&app, &headers).await?;
    let e = app.admin.get(election_id(&raw)?).await?;
    Ok(Json(election_doc(&e)))
}

/// Settings to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateElection {
    /// As in the creation.
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]{1,198}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub title: Option<String>,
    /// As in the creation.
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f](?:[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]{0,1998}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f])?)?[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub description: Option<String>,
    /// RFC 3339; with `endsAt`, or alone against the stored end.
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    /// RFC 3339, after the start (422 otherwise).
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    pub captcha_required: Option<bool>,
    /// As in the creation; with its limits, replaces the policy.
    #[schema(pattern = r"^(single|multi|changeable)$")]
    pub policy: Option<String>,
    /// As in the creation; needs `policy`.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub max_votes: Option<serde_json::Number>,
    /// As in the creation; needs `policy`.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub max_per_candidate: Option<serde_json::Number>,
}

/// Changes an election's settings (only before voting starts).
#[utoipa::path(put, path = "/api/v1/admin/elections/{electionId}", tag = "admin",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    request_body = UpdateElection,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the election as saved", body = ElectionDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "ELECTION_LOCKED (voting started), CONCURRENT_UPDATE", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
        (status = 422, description = "VALIDATION_FAILED", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn update(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ElectionDoc>, ApiError> {
    let actor = admin(&app, &headers).await?;
    let id = election_id(&raw)?;
    let input: UpdateElection = json_body(&headers, &body)?;
    let window = match (&input.starts_at, &input.ends_at) {
        (None, None) => None,
        (start, end) => {
            let current = app.admin.get(id).await?.window();
            let start = start.as_deref().map(|s| time("startsAt", s)).transpose()?;
            let end = end.as_deref().map(|s| time("endsAt", s)).transpose()?;
            Some(window(
                start.unwrap_or(current.start()),
                end.unwrap_or(current.end()),
            )?)
        }
    };
    let edit = ElectionEdit {
        title: input
            .title
            .as_deref()
            .map(Title::parse)
            .transpose()
            .map_err(|e| ApiError::invalid_field("title", format!("title: {e}")))?,
        description: input
            .description
            .as_deref()
            .map(Description::parse)
            .transpose()
            .map_err(|e| ApiError::invalid_field("description", format!("description: {e}")))?,
        window,
        captcha_required: input.captcha_required,
        policy: policy(
            input.policy.as_deref(),
            input.max_votes.as_ref(),
            input.max_per_candidate.as_ref(),
        )?,
    };
    let e = app.admin.edit(actor, id, edit).await?;
    Ok(Json(election_doc(&e)))
}

/// Cancels an election that holds no votes (DRAFT, SCHEDULED or ACTIVE -> CANCELLED). One
/// holding votes is cancelled only by a status change to CANCELLED with a reason.
#[utoipa::path(delete, path = "/api/v1/admin/elections/{electionId}", tag = "admin",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "cancelled"),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "ELECTION_HAS_VOTES (PATCH the status to CANCELLED with a reason), INVALID_TRANSITION (closed or already cancelled), CONCURRENT_UPDATE", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn cancel(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let actor = admin(&app, &headers).await?;
    let id = election_id(&raw)?;
    let held = app.reads.votes_held(id).await?;
    app.admin.cancel(actor, id, held, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A lifecycle move, as the handler reads it (see [`StatusChangeBody`] for the contract).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusChange {
    pub status: String,
    pub reason: Option<String>,
}

/// A lifecycle move: SCHEDULED, ACTIVE (open now) or CLOSED (close now) without a reason, or
/// CANCELLED with one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StatusChangeBody {
    Move(StatusMove),
    Cancel(StatusCancel),
}

/// Schedules, opens or closes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusMove {
    /// `SCHEDULED`, `ACTIVE` (open now) or `CLOSED` (close now).
    #[schema(pattern = r"^(SCHEDULED|ACTIVE|CLOSED)$")]
    pub status: String,
}

/// Cancels, with the reason the audit log keeps.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusCancel {
    #[schema(pattern = r"^CANCELLED$")]
    pub status: String,
    /// Why the election is cancelled: 3..=500 characters once trimmed, no control characters.
    #[schema(
        pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]{1,498}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x00-\x1f\x7f-\x9f][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub reason: String,
}

/// Schedules, opens, closes or cancels an election.
#[utoipa::path(patch, path = "/api/v1/admin/elections/{electionId}/status", tag = "admin",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    request_body = StatusChangeBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the election as saved", body = ElectionDoc),
        (status = 400, description = "INVALID_REQUEST (status not SCHEDULED, ACTIVE, CLOSED or CANCELLED; a reason missing for CANCELLED or given for another status)", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "INVALID_TRANSITION, CONCURRENT_UPDATE", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
        (status = 422, description = "VALIDATION_FAILED (e.g. scheduling a window that has ended)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn set_status(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ElectionDoc>, ApiError> {
    let actor = admin(&app, &headers).await?;
    let id = election_id(&raw)?;
    let input: StatusChange = json_body(&headers, &body)?;
    let to = status_param("status", &input.status)?;
    let e = match (to, input.reason.as_deref()) {
        (ElectionStatus::Cancelled, Some(reason)) => {
            let reason = CancelReason::parse(reason)
                .map_err(|e| ApiError::invalid_field("reason", format!("reason: {e}")))?;
            let held = app.reads.votes_held(id).await?;
            app.admin.cancel(actor, id, held, Some(reason)).await?
        }
        (ElectionStatus::Cancelled, None) => {
            return Err(ApiError::invalid_field(
                "reason",
                "reason is required to cancel (3..=500 characters, kept in the audit log)",
            ));
        }
        (ElectionStatus::Scheduled | ElectionStatus::Active | ElectionStatus::Closed, None) => {
            app.admin.transition(actor, id, to).await?
        }
        (ElectionStatus::Scheduled | ElectionStatus::Active | ElectionStatus::Closed, Some(_)) => {
            return Err(ApiError::invalid_field(
                "reason",
                "reason is only taken with status CANCELLED",
            ));
        }
        (ElectionStatus::Draft, _) => {
            return Err(ApiError::invalid_field(
                "status",
                "status must be SCHEDULED, ACTIVE, CLOSED or CANCELLED",
            ));
        }
    };
    Ok(Json(election_doc(&e)))
}

/// Adds a candidate (only before voting starts).
#[utoipa::path(post, path = "/api/v1/admin/elections/{electionId}/candidates", tag = "admin",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    request_body = CandidateInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "added; Location names the candidate", body = ElectionDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "ELECTION_LOCKED, CONCURRENT_UPDATE", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
        (status = 422, description = "VALIDATION_FAILED (duplicate name, too many)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn add_candidate(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = admin(&app, &headers).await?;
    let id = election_id(&raw)?;
    let input: CandidateInput = json_body(&headers, &body)?;
    let (e, candidate) = app
        .admin
        .add_candidate(actor, id, candidate_draft(&input)?)
        .await?;
    let mut response = (StatusCode::CREATED, Json(election_doc(&e))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/admin/elections/{id}/candidates/{candidate}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

fn candidate_id(raw: &str) -> Result<CandidateId, ApiError> {
    path_id("candidateId", raw, CandidateId::parse)
}

/// Renames a candidate or changes its party (only before voting starts).
#[utoipa::path(put, path = "/api/v1/admin/elections/{electionId}/candidates/{candidateId}", tag = "admin",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)"),
           ("candidateId" = uuid::Uuid, Path, description = "candidate id (UUID)")),
    request_body = CandidateInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the election as saved", body = ElectionDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND, CANDIDATE_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "ELECTION_LOCKED, CONCURRENT_UPDATE", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
        (status = 422, description = "VALIDATION_FAILED (duplicate name)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn update_candidate(
    State(app): State<AppState>,
    Path((raw, raw_candidate)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ElectionDoc>, ApiError> {
    let actor = admin(&app, &headers).await?;
    let id = election_id(&raw)?;
    let candidate = candidate_id(&raw_candidate)?;
    let input: CandidateInput = json_body(&headers, &body)?;
    let e = app
        .admin
        .update_candidate(actor, id, candidate, candidate_draft(&input)?)
        .await?;
    Ok(Json(election_doc(&e)))
}

/// Removes a candidate (only before voting starts).
#[utoipa::path(delete, path = "/api/v1/admin/elections/{electionId}/candidates/{candidateId}", tag = "admin",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)"),
           ("candidateId" = uuid::Uuid, Path, description = "candidate id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND, CANDIDATE_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "ELECTION_LOCKED, CONCURRENT_UPDATE", body = ErrorBody),
        (status = 422, description = "VALIDATION_FAILED (too few candidates left)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn remove_candidate(
    State(app): State<AppState>,
    Path((raw, raw_candidate)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let actor = admin(&app, &headers).await?;
    let id = election_id(&raw)?;
    let candidate = candidate_id(&raw_candidate)?;
    app.admin.remove_candidate(actor, id, candidate).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Results visibility.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VisibilityChange {
    /// `HIDDEN` (embargo: public answers carry no counts) or `LIVE` (reveal).
    #[schema(pattern = r"^(LIVE|HIDDEN)$")]
    pub results_visibility: String,
}

/// Hides or reveals results, at any point of the lifecycle.
#[utoipa::path(put, path = "/api/v1/admin/elections/{electionId}/visibility", tag = "admin",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    request_body = VisibilityChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the election as saved (unchanged, and not audited, when already so)", body = ElectionDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs elections:admin)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "CONCURRENT_UPDATE", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn set_visibility(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ElectionDoc>, ApiError> {
    let actor = admin(&app, &headers).await?;
    let id = election_id(&raw)?;
    let input: VisibilityChange = json_body(&headers, &body)?;
    let to = visibility("resultsVisibility", &input.results_visibility)?;
    let e = app.admin.set_visibility(actor, id, to).await?;
    Ok(Json(election_doc(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_is_checked() {
        assert_eq!(
            page_request(None, None).unwrap(),
            PageRequest { page: 0, size: 20 }
        );
        assert_eq!(
            page_request(Some("3"), Some("100")).unwrap(),
            PageRequest { page: 3, size: 100 }
        );
        for (p, s) in [
            (Some("-1"), None),
            (None, Some("0")),
            (None, Some("101")),
            (Some("x"), None),
        ] {
            assert_eq!(page_request(p, s).unwrap_err().code(), "INVALID_REQUEST");
        }
    }

    #[test]
    fn a_limit_sent_as_a_whole_float_is_that_number_and_a_fraction_is_refused() {
        let n = |v: serde_json::Value| match v {
            serde_json::Value::Number(n) => n,
            other => panic!("{other}"),
        };
        let multi = policy(
            Some("multi"),
            Some(&n(serde_json::json!(5.0))),
            Some(&n(serde_json::json!(2))),
        )
        .unwrap()
        .unwrap();
        assert_eq!((multi.max_votes(), multi.max_per_candidate()), (Some(5), Some(2)));
        for bad in [serde_json::json!(2.5), serde_json::json!(1e300)] {
            let e = policy(Some("multi"), Some(&n(bad)), None).unwrap_err();
            assert_eq!(e.code(), "VALIDATION_FAILED");
        }
    }
}
