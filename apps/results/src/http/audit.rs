//! Auditors (`audit:read`): reconciliation per election and for all of
//! them, the admin audit log; and a voter's own receipt.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use livevote_domain::{ElectionId, Verdict, VoteId};
use livevote_http::error::ErrorBody;
use livevote_http::rfc3339;
use livevote_ports::Permission;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin::page_request;
use super::error::ApiError;
use super::{ApiQuery, AppState, election_id, path_id};
use crate::service::{Reconciliation, Standing};

/// Accepted vs persisted for one candidate.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateReconciliation {
    pub candidate_id: String,
    pub name: String,
    /// Live accepted tally (Redis).
    pub accepted: u64,
    /// Persisted tally (PostgreSQL).
    pub persisted: u64,
    /// `accepted - persisted`: votes on their way (or missing, once drained).
    pub difference: i64,
}

/// The reconciliation of one election (ARCHITECTURE.md, invariant 3).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationDoc {
    pub election_id: String,
    pub election_title: String,
    /// Effective status.
    pub status: &'static str,
    /// `A`: votes answered 202.
    pub accepted: u64,
    /// `P`: votes stored.
    pub persisted: u64,
    /// `D`: a voter's second vote dropped by the one-vote-per-voter constraint (recorded as a conflict).
    pub conflicts: u64,
    /// Redelivered copies of already stored votes the store ignored (informational, not in the verdict).
    pub duplicates_dropped: u64,
    /// `L`: votes of this election held in the dead-letter queue.
    pub dead_lettered: u64,
    /// `Q`: messages still in the vote queue (the whole queue: SQS cannot count per election).
    pub in_flight: u64,
    /// Age of the oldest queued message, seconds.
    pub oldest_queued_age_seconds: Option<f64>,
    /// Messages in the dead-letter queue (all elections).
    pub dead_letter_messages: u64,
    /// Dead-lettered messages that name no election (they do not decode): any of them may hold
    /// this election's votes, so while there are any no election is final.
    pub unattributed_dead_letters: u64,
    /// `balanced`, `pending`, `lost` or `surplus`.
    pub verdict: &'static str,
    /// The n of `lost n` / `surplus n`, the messages in flight of `pending`, 0 when balanced.
    pub verdict_count: u64,
    /// e.g. "lost 3": for people.
    pub verdict_text: String,
    /// True when accepted votes are missing: page someone.
    pub alarm: bool,
    /// Persisted counts may be published as final now: closed, drained, nothing lost, and no dead
    /// letter of this election's nor an unattributed one.
    pub allows_final: bool,
    /// Live accepted total minus persisted total.
    pub live_vs_persisted_difference: i64,
    pub per_candidate: Vec<CandidateReconciliation>,
    pub generated_at: String,
}

fn signed(a: u64, b: u64) -> i64 {
    i64::try_from(a).unwrap_or(i64::MAX) - i64::try_from(b).unwrap_or(i64::MAX)
}

fn reconciliation_doc(
    r: &Reconciliation,
    title: &str,
    status: &'static str,
    names: &[(String, String)],
) -> ReconciliationDoc {
    let verdict_count = match r.verdict {
        Verdict::Draining { in_flight } => in_flight,
        Verdict::Balanced => 0,
        Verdict::Lost(n) | Verdict::Surplus(n) => n,
    };
    ReconciliationDoc {
        election_id: r.election_id.to_string(),
        election_title: title.to_owned(),
        status,
        accepted: r.counts.accepted,
        persisted: r.counts.persisted,
        conflicts: r.counts.duplicates,
        duplicates_dropped: r.redeliveries,
        dead_lettered: r.counts.dead_lettered,
        in_flight: r.counts.in_flight,
        oldest_queued_age_seconds: r.oldest_queued_age.map(|d| d.as_secs_f64()),
        dead_letter_messages: r.dead_letter_messages,
        unattributed_dead_letters: r.counts.unattributed_dead_letters,
        verdict: r.verdict.as_str(),
        verdict_count,
        verdict_text: r.verdict.to_string(),
        alarm: r.verdict.is_loss(),
        allows_final: r.allows_final(),
        live_vs_persisted_difference: signed(r.counts.accepted, r.counts.persisted),
        per_candidate: r
            .per_candidate
            .iter()
            .map(|c| CandidateReconciliation {
                candidate_id: c.candidate_id.to_string(),
                name: names
                    .iter()
                    .find(|(id, _)| *id == c.candidate_id.to_string())
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default(),
                accepted: c.accepted,
                persisted: c.persisted,
                difference: signed(c.accepted, c.persisted),
            })
            .collect(),
        generated_at: rfc3339(&r.generated_at),
    }
}

async fn reconcile_one(app: &AppState, id: ElectionId) -> Result<ReconciliationDoc, ApiError> {
    let r = app.reads.reconcile(id).await?;
    let results = app.live.get(id).await?;
    let e = &results.election;
    let names: Vec<(String, String)> = e
        .candidates()
        .iter()
        .map(|c| (c.id().to_string(), c.name().as_str().to_owned()))
        .collect();
    Ok(reconciliation_doc(
        &r,
        e.title().as_str(),
        results.status.as_str(),
        &names,
    ))
}

/// Accepted vs persisted vs dropped vs dead-lettered vs in flight, with the verdict.
#[utoipa::path(get, path = "/api/v1/audit/elections/{electionId}/reconciliation", tag = "audit",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the reconciliation", body = ReconciliationDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs audit:read)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn reconciliation(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ReconciliationDoc>, ApiError> {
    app.require(&headers, Permission::AuditRead).await?;
    let id = election_id(&raw)?;
    Ok(Json(reconcile_one(&app, id).await?))
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 0-based page number (at most 1,000,000).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 1000000)]
    pub page: Option<String>,
    /// Items per page, 1..=100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub size: Option<String>,
}

/// A page of reconciliations.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationPage {
    pub content: Vec<ReconciliationDoc>,
    pub page: u32,
    pub size: u32,
    pub total_elements: u64,
    pub total_pages: u64,
    /// True when any election of this page has lost votes.
    pub alarm: bool,
    /// Messages in the dead-letter queue, whatever election they belong to.
    pub dead_letter_messages: u64,
    /// Of those, the messages that name no election (they do not decode).
    pub unattributed_dead_letters: u64,
    /// Dead-lettered votes of elections that are not on this page (or do not exist).
    pub dead_lettered_elsewhere: u64,
}

/// The reconciliation of every election, newest first (the auditors' dashboard).
#[utoipa::path(get, path = "/api/v1/audit/reconciliation", tag = "audit",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of reconciliations", body = ReconciliationPage),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs audit:read)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn reconciliation_all(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ReconciliationPage>, ApiError> {
    app.require(&headers, Permission::AuditRead).await?;
    let page = page_request(q.page.as_deref(), q.size.as_deref())?;
    let elections = app.admin.list(None, page).await?;
    let mut content = Vec::with_capacity(elections.content.len());
    for e in &elections.content {
        content.push(reconcile_one(&app, e.id()).await?);
    }
    let dead = app.reads.dead_letters().await?;
    let listed: u64 = elections.content.iter().map(|e| dead.votes_of(e.id())).sum();
    let all_votes: u64 = dead.votes_per_election.iter().map(|(_, n)| n).sum();
    Ok(Json(ReconciliationPage {
        alarm: content.iter().any(|r| r.alarm),
        dead_letter_messages: dead.messages,
        unattributed_dead_letters: dead.unattributed_messages,
        dead_lettered_elsewhere: all_votes.saturating_sub(listed),
        total_pages: elections.total_pages(),
        content,
        page: elections.page,
        size: elections.size,
        total_elements: elections.total_elements,
    }))
}

/// One admin change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryDoc {
    pub seq: u64,
    pub election_id: String,
    /// The admin's token `sub`.
    pub actor: String,
    /// e.g. ELECTION_CREATED, ELECTION_OPENED, CANDIDATE_ADDED, RESULTS_REVEALED.
    pub action: &'static str,
    pub at: String,
    /// The election's version after the change.
    pub version: u64,
    pub details: String,
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditLogPage {
    pub content: Vec<AuditEntryDoc>,
    pub page: u32,
    pub size: u32,
    pub total_elements: u64,
    pub total_pages: u64,
}

/// The admin audit log of one election, oldest first.
#[utoipa::path(get, path = "/api/v1/audit/elections/{electionId}/log", tag = "audit",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of the log", body = AuditLogPage),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs audit:read)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn log(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<AuditLogPage>, ApiError> {
    app.require(&headers, Permission::AuditRead).await?;
    let id = election_id(&raw)?;
    let page = page_request(q.page.as_deref(), q.size.as_deref())?;
    let log = app.admin.audit_log(id, page).await?;
    Ok(Json(AuditLogPage {
        total_pages: log.total_pages(),
        content: log
            .content
            .iter()
            .map(|a| AuditEntryDoc {
                seq: a.seq,
                election_id: a.election_id.to_string(),
                actor: a.actor.as_str().to_owned(),
                action: a.action.as_str(),
                at: rfc3339(&a.at),
                version: a.version,
                details: a.details.clone(),
            })
            .collect(),
        page: log.page,
        size: log.size,
        total_elements: log.total_elements,
    }))
}

/// Where to look for a vote still on its way.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceiptQuery {
    /// The election voted in: lets a vote accepted but not yet stored be found.
    #[serde(rename = "electionId")]
    #[param(value_type = Option<uuid::Uuid>)]
    pub election_id: Option<String>,
}

/// A voter's receipt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptDoc {
    pub vote_id: String,
    pub election_id: String,
    /// Known once stored.
    pub candidate_id: Option<String>,
    /// `accepted` (answered 202, on its way to the vote store) or `persisted`.
    pub state: &'static str,
    pub accepted_at: String,
    pub persisted_at: Option<String>,
    /// `multi` and `changeable` elections, once stored: which of the
    /// viewer's votes this is (the slot, or the change number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vote_number: Option<u32>,
    /// `multi`: how many of their votes the viewer has stored so far ("3 of 10 used").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub votes_used: Option<u32>,
    /// `multi`: votes per viewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_votes: Option<u16>,
    /// `changeable`: whether this is the viewer's current vote (the one that counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<bool>,
    /// `changeable`, when not current: when the vote that replaced it was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_at: Option<String>,
}

/// The receipt of one of the caller's own votes: accepted or persisted, and when.
#[utoipa::path(get, path = "/api/v1/votes/{voteId}/receipt", tag = "votes",
    params(("voteId" = uuid::Uuid, Path, description = "vote id (a version 7 UUID) from the 202 answer", pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"), ReceiptQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the receipt", body = ReceiptDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 404, description = "VOTE_NOT_FOUND (unknown, another viewer's, or on its way without electionId)", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn receipt(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReceiptQuery>,
) -> Result<Json<ReceiptDoc>, ApiError> {
    let voter = app.principal(&headers).await?.subject;
    let vote = path_id("voteId", &raw, VoteId::parse)?;
    let election = q.election_id.as_deref().map(election_id).transpose()?;
    let r = app
        .reads
        .receipt(vote, voter, election)
        .await?
        .ok_or(ApiError::VoteNotFound)?;
    Ok(Json(ReceiptDoc {
        vote_id: r.vote_id.to_string(),
        election_id: r.election_id.to_string(),
        candidate_id: r.candidate_id.map(|c| c.to_string()),
        state: if r.persisted_at.is_some() {
            "persisted"
        } else {
            "accepted"
        },
        accepted_at: rfc3339(&r.accepted_at),
        persisted_at: r.persisted_at.as_ref().map(rfc3339),
        vote_number: match &r.standing {
            Some(Standing::Multi { number, .. } | Standing::Changeable { number, .. }) => Some(*number),
            None => None,
        },
        votes_used: match &r.standing {
            Some(Standing::Multi { used, .. }) => Some(*used),
            _ => None,
        },
        max_votes: match &r.standing {
            Some(Standing::Multi { max, .. }) => Some(*max),
            _ => None,
        },
        current: match &r.standing {
            Some(Standing::Changeable { current, .. }) => Some(*current),
            _ => None,
        },
        replaced_at: match &r.standing {
            Some(Standing::Changeable {
                replaced_at: Some(at),
                ..
            }) => Some(rfc3339(at)),
            _ => None,
        },
    }))
}
