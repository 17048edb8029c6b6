//! Public results: the full document, the compact one for high-frequency
//! polling, the Server-Sent Events stream, the CSV export, and the
//! auditors' statistics.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use livevote_domain::{Election, Percentage, Tally, VotePolicy};
use livevote_http::error::ErrorBody;
use livevote_http::rfc3339;
use livevote_ports::{MetricEvent, Permission};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use utoipa::ToSchema;

use super::error::ApiError;
use super::{AppState, election_id};
use crate::live::{ChangeType, Published};
use crate::service::{ElectionResults, PERCENT_DECIMALS, TallySource};

/// One candidate's count.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateTotal {
    pub candidate_id: String,
    pub name: String,
    pub party: Option<String>,
    pub votes: u64,
    /// One decimal; the percentages of an election sum to exactly 100 (0 before the first vote).
    pub percentage: f64,
}

/// The results of one election.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultsDoc {
    pub election_id: String,
    pub election_title: String,
    /// Effective status: DRAFT, SCHEDULED, ACTIVE, CLOSED or CANCELLED.
    pub status: &'static str,
    /// In the election's candidate order; empty while embargoed.
    pub totals: Vec<CandidateTotal>,
    /// `null` while embargoed.
    pub total_votes: Option<u64>,
    /// When this response was made.
    pub generated_at: String,
    /// The election's version (grows with every admin change).
    pub version: u64,
    /// When the counts were read from the stores (at most a second before `generatedAt`).
    pub as_of: String,
    /// Closed and reconciled: counts come from PostgreSQL and will not change.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Results hidden by an admin: no counts are published.
    pub embargoed: bool,
    /// `live` (accepted votes, Redis) or `persisted` (PostgreSQL).
    pub source: &'static str,
    /// Stream events only: the event's sequence number (also its SSE id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Stream events only: the `Last-Event-ID` a reconnecting client sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
    /// `multi` or `changeable`; absent for `single`. Under `multi` the
    /// totals count votes (a viewer may cast up to `maxVotes`); under
    /// `changeable` they count each viewer's current vote.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(multi|changeable)$")]
    pub policy: Option<&'static str>,
    /// `multi`: votes per viewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_votes: Option<u16>,
}

/// One Server-Sent Event of the results stream: the `event:`, `id:` and
/// `data:` lines of a frame. Documentation of the wire format only: the
/// stream writes its frames itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    /// `SNAPSHOT` (first, and first again after a reconnect with `Last-Event-ID`),
    /// `VOTE_UPDATE` (counts changed, at most once per `LIVEVOTE_RESULTS_STREAM_UPDATE_MS`, 200 ms by default), `STATUS_CHANGE` (status,
    /// `final` or embargo changed, at once) or `HEARTBEAT` (every 15 s by default).
    #[schema(pattern = r"^(SNAPSHOT|VOTE_UPDATE|STATUS_CHANGE|HEARTBEAT)$")]
    pub event: String,
    /// The results document's `seq`, for `Last-Event-ID` on reconnect (heartbeats carry none).
    #[schema(pattern = r"^[0-9]+$")]
    pub id: Option<String>,
    /// One line of JSON: a `ResultsDoc` (with `seq`) for `SNAPSHOT`, `VOTE_UPDATE` and
    /// `STATUS_CHANGE`; `{"seq": <the last results event's seq>, "at": "<RFC 3339>"}` for `HEARTBEAT`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

fn percentage(p: Option<&Percentage>) -> f64 {
    p.map_or(0.0, Percentage::as_f64)
}

fn source_name(s: TallySource) -> &'static str {
    match s {
        TallySource::Live => "live",
        TallySource::Persisted => "persisted",
    }
}

fn totals(election: &Election, tally: &Tally, percentages: &[Percentage]) -> Vec<CandidateTotal> {
    election
        .candidates()
        .iter()
        .enumerate()
        .map(|(i, c)| CandidateTotal {
            candidate_id: c.id().to_string(),
            name: c.name().as_str().to_owned(),
            party: c.party().map(|p| p.as_str().to_owned()),
            votes: tally.votes_for(c.id()),
            percentage: percentage(percentages.get(i)),
        })
        .collect()
}

/// The JSON document of `r`.
pub fn document(r: &ElectionResults) -> ResultsDoc {
    let (totals, total_votes) = match &r.tally {
        Some(tally) if !r.embargoed => (totals(&r.election, tally, &r.percentages), Some(tally.total())),
        _ => (Vec::new(), None),
    };
    ResultsDoc {
        election_id: r.election.id().to_string(),
        election_title: r.election.title().as_str().to_owned(),
        status: r.status.as_str(),
        totals,
        total_votes,
        generated_at: rfc3339(&chrono::Utc::now()),
        version: r.election.version(),
        as_of: rfc3339(&r.generated_at),
        is_final: r.is_final,
        embargoed: r.embargoed,
        source: source_name(r.source),
        seq: None,
        resumed_from: None,
        policy: policy_name(r.election.policy()),
        max_votes: r.election.policy().max_votes(),
    }
}

/// The policy's name for documents that leave out `single`.
pub fn policy_name(p: VotePolicy) -> Option<&'static str> {
    (p != VotePolicy::Single).then(|| p.as_str())
}

/// A weak validator over everything a client sees change (not the timestamps).
fn etag(r: &ElectionResults) -> String {
    let mut h = DefaultHasher::new();
    r.election.id().to_string().hash(&mut h);
    r.election.version().hash(&mut h);
    r.status.as_str().hash(&mut h);
    (r.is_final, r.embargoed, source_name(r.source)).hash(&mut h);
    if let Some(t) = &r.tally {
        for c in r.election.candidates() {
            t.votes_for(c.id()).hash(&mut h);
        }
    }
    format!("W/\"{:016x}\"", h.finish())
}

fn cache_control(r: &ElectionResults) -> &'static str {
    if r.is_final {
        "public, max-age=5"
    } else {
        "public, max-age=1, stale-while-revalidate=1"
    }
}

/// 304 when the client's validator matches, else `body` with validators.
fn conditional(headers: &HeaderMap, r: &ElectionResults, body: impl IntoResponse) -> Response {
    let tag = etag(r);
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag.trim_start_matches("W/"));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control(r)));
    response
}

/// Results of one election.
///
/// Live counts (accepted votes, fresh within a second) while voting runs;
/// persisted counts once the election is closed and reconciled (`final`);
/// no counts while embargoed.
#[utoipa::path(get, path = "/api/v1/results/{electionId}", tag = "results",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)"),
           ("If-None-Match" = Option<String>, Header, description = "an ETag from an earlier answer")),
    responses(
        (status = 200, description = "results, with ETag and Cache-Control", body = ResultsDoc),
        (status = 304, description = "unchanged since the ETag sent"),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE, with Retry-After", body = ErrorBody),
    ))]
pub async fn results(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let r = app.live.get(election_id(&raw)?).await?;
    Ok(conditional(&headers, &r, Json(document(&r))))
}

/// Compact results for high-frequency polling.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveDoc {
    pub election_id: String,
    pub status: &'static str,
    /// `null` while embargoed.
    pub total_votes: Option<u64>,
    /// Votes per candidate id; `null` while embargoed.
    pub counts: Option<BTreeMap<String, u64>>,
    pub as_of: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub embargoed: bool,
    pub version: u64,
}

/// Compact results: totals and per-candidate counts only.
#[utoipa::path(get, path = "/api/v1/results/live/{electionId}", tag = "results",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)"),
           ("If-None-Match" = Option<String>, Header, description = "an ETag from an earlier answer")),
    responses(
        (status = 200, description = "counts, with ETag and Cache-Control", body = LiveDoc),
        (status = 304, description = "unchanged since the ETag sent"),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE, with Retry-After", body = ErrorBody),
    ))]
pub async fn live(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let r = app.live.get(election_id(&raw)?).await?;
    let visible = r.tally.as_ref().filter(|_| !r.embargoed);
    let doc = LiveDoc {
        election_id: r.election.id().to_string(),
        status: r.status.as_str(),
        total_votes: visible.map(Tally::total),
        counts: visible.map(|t| {
            r.election
                .candidates()
                .iter()
                .map(|c| (c.id().to_string(), t.votes_for(c.id())))
                .collect()
        }),
        as_of: rfc3339(&r.generated_at),
        is_final: r.is_final,
        embargoed: r.embargoed,
        version: r.election.version(),
    };
    Ok(conditional(&headers, &r, Json(doc)))
}

/// The stream of an election's results (Server-Sent Events).
///
/// Events: `SNAPSHOT` (first, and first again after a reconnect with
/// `Last-Event-ID`), `VOTE_UPDATE` (counts changed; at most one per
/// `LIVEVOTE_RESULTS_STREAM_UPDATE_MS`, 200 ms by default),
/// `STATUS_CHANGE` (status, `final` or embargo changed; at once), each with
/// the full results document and its sequence number as the event id; and
/// `HEARTBEAT` every 15 s. All clients of one election share one read of the
/// stores.
#[utoipa::path(get, path = "/api/v1/results/{electionId}/stream", tag = "results",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)"),
           ("Last-Event-ID" = Option<String>, Header, description = "the last event id seen, on reconnect")),
    responses(
        (status = 200, description = "text/event-stream: a sequence of SSE frames, each one event as described by StreamEvent (`event:` the type, `id:` the sequence number for resuming, `data:` one line of JSON)", body = StreamEvent, content_type = "text/event-stream"),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE (too many open streams, or the stores are down), with Retry-After", body = ErrorBody),
    ))]
pub async fn stream(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = election_id(&raw)?;
    let permit = app.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(
            "too many open result streams; poll /api/v1/results/live instead, or retry later",
            std::time::Duration::from_secs(5),
            format!("stream limit of {} reached", app.max_streams),
            None,
        )
    })?;
    let feed = app.live.subscribe(id).await?;
    let resumed_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .map(str::to_owned);
    let (tx, rx) = mpsc::channel::<Event>(8);
    tokio::spawn(pump(app.clone(), feed, tx, permit, resumed_from));
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let mut response = Sse::new(events).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn event(kind: &'static str, p: &Published, resumed_from: Option<String>) -> Event {
    let render = |resumed_from| {
        let mut doc = document(&p.results);
        doc.seq = Some(p.seq);
        doc.resumed_from = resumed_from;
        serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into())
    };
    // Every client of the election is sent the same document: written once.
    let data = match resumed_from {
        None => p.rendered.get_or_init(|| render(None)).clone(),
        Some(from) => render(Some(from)),
    };
    Event::default().event(kind).id(p.seq.to_string()).data(data)
}

fn status_moved(a: &ElectionResults, b: &ElectionResults) -> bool {
    a.status != b.status || a.is_final != b.is_final || a.embargoed != b.embargoed
}

fn open_streams(app: &AppState) -> u64 {
    (app.max_streams - app.streams.available_permits()) as u64
}

/// Feeds one client: its snapshot, then changes (updates paced), heartbeats.
async fn pump(
    app: AppState,
    mut feed: watch::Receiver<Arc<Published>>,
    tx: mpsc::Sender<Event>,
    permit: OwnedSemaphorePermit,
    resumed_from: Option<String>,
) {
    app.metrics.record(MetricEvent::ResultStreams {
        open: open_streams(&app),
    });
    let mut stop = app.stop.clone();
    let mut last = feed.borrow_and_update().clone();
    let mut sent = tx.send(event("SNAPSHOT", &last, resumed_from)).await.is_ok();
    let mut last_update = Instant::now();
    let period = app.stream.heartbeat;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    while sent {
        tokio::select! {
            changed = feed.changed() => {
                if changed.is_err() {
                    break;
                }
                let mut next = feed.borrow_and_update().clone();
                if next.seq <= last.seq {
                    continue;
                }
                if !status_moved(&last.results, &next.results) && next.change != ChangeType::Status {
                    // Counts only: at most one update per interval, with the latest counts.
                    let wait = app.stream.update_interval.saturating_sub(last_update.elapsed());
                    if !wait.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            _ = tx.closed() => break,
                            _ = stop.changed() => break,
                        }
                        next = feed.borrow_and_update().clone();
                    }
                }
                let kind = if status_moved(&last.results, &next.results) {
                    "STATUS_CHANGE"
                } else {
                    last_update = Instant::now();
                    "VOTE_UPDATE"
                };
                sent = tx.send(event(kind, &next, None)).await.is_ok();
                last = next;
            }
            _ = heartbeat.tick() => {
                let data = serde_json::json!({ "seq": last.seq, "at": rfc3339(&chrono::Utc::now()) });
                sent = tx.send(Event::default().event("HEARTBEAT").data(data.to_string())).await.is_ok();
            }
            () = tx.closed() => break,
            _ = stop.changed() => break,
        }
    }
    drop(permit);
    app.metrics.record(MetricEvent::ResultStreams {
        open: open_streams(&app),
    });
}

/// Quotes a CSV field, and defuses text a spreadsheet would run as a formula.
fn csv_field(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// The CSV text of a tally.
pub fn csv(election: &Election, tally: &Tally) -> String {
    let percentages = tally.percentages(PERCENT_DECIMALS);
    let mut out = String::from("candidate_id,name,party,votes,percentage\r\n");
    for (i, c) in election.candidates().iter().enumerate() {
        let p = percentages.get(i).map_or(0.0, Percentage::as_f64);
        out.push_str(&format!(
            "{},{},{},{},{:.1}\r\n",
            c.id(),
            csv_field(c.name().as_str()),
            csv_field(c.party().map_or("", |p| p.as_str())),
            tally.votes_for(c.id()),
            p
        ));
    }
    out
}

/// Results as CSV: final results for everyone (unless embargoed); the
/// persisted counts at any time for a caller with `audit:read`.
#[utoipa::path(get, path = "/api/v1/results/{electionId}/export.csv", tag = "results",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "text/csv: candidate_id,name,party,votes,percentage; headers X-Results-Final and X-Results-Source, and X-Vote-Policy (multi or changeable) for an election that is not single", content_type = "text/csv"),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED (a token was sent and is not valid)", body = ErrorBody),
        (status = 403, description = "RESULTS_EMBARGOED", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "RESULTS_NOT_FINAL", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn export_csv(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = election_id(&raw)?;
    let auditor = app
        .optional_principal(&headers)
        .await?
        .is_some_and(|p| p.has(Permission::AuditRead));
    let (election, tally, is_final, source) = if auditor {
        let r = app.reads.results(id).await?;
        let (election, tally) = app.reads.persisted(id).await?;
        (election, tally, r.is_final, "persisted")
    } else {
        let r = app.live.get(id).await?;
        if r.embargoed {
            return Err(ApiError::ResultsEmbargoed);
        }
        match (&r.tally, r.is_final) {
            (Some(tally), true) => (r.election.clone(), tally.clone(), true, source_name(r.source)),
            _ => return Err(ApiError::ResultsNotFinal),
        }
    };
    let disposition = format!("attachment; filename=\"results-{id}.csv\"");
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        csv(&election, &tally),
    )
        .into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        "x-results-final",
        HeaderValue::from_static(if is_final { "true" } else { "false" }),
    );
    h.insert("x-results-source", HeaderValue::from_static(source));
    if let Some(policy) = policy_name(election.policy()) {
        h.insert("x-vote-policy", HeaderValue::from_static(policy));
    }
    Ok(response)
}

/// Votes stored in one UTC hour.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourDoc {
    pub hour: String,
    pub votes: u64,
}

/// The busiest minute.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeakDoc {
    pub minute: String,
    pub votes: u64,
}

/// Audience figures of one election.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatisticsDoc {
    pub election_id: String,
    pub status: &'static str,
    /// Turnout as answered: votes accepted (202).
    pub accepted_votes: u64,
    /// Votes stored: under `single` one per viewer, so the number of viewers
    /// who voted; under `multi` every vote; under `changeable` every change.
    pub persisted_votes: u64,
    /// Second votes of a viewer dropped by the store.
    pub duplicates_dropped: u64,
    pub first_vote_at: Option<String>,
    pub last_vote_at: Option<String>,
    /// Stored votes per minute of the voting window (so far).
    pub average_votes_per_minute: f64,
    pub peak_minute: Option<PeakDoc>,
    pub votes_per_hour: Vec<HourDoc>,
    pub generated_at: String,
    /// `multi` or `changeable`; absent for `single`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(multi|changeable)$")]
    pub policy: Option<&'static str>,
    /// `multi`: votes per viewer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_votes: Option<u16>,
}

/// Votes per hour, the peak minute and turnout figures (auditors).
#[utoipa::path(get, path = "/api/v1/results/statistics/{electionId}", tag = "audit",
    params(("electionId" = uuid::Uuid, Path, description = "election id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "statistics", body = StatisticsDoc),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "INVALID_TOKEN, TOKEN_EXPIRED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN (needs audit:read)", body = ErrorBody),
        (status = 404, description = "ELECTION_NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = ErrorBody),
    ))]
pub async fn statistics(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Json<StatisticsDoc>, ApiError> {
    app.require(&headers, Permission::AuditRead).await?;
    let id = election_id(&raw)?;
    let s = app.reads.statistics(id).await?;
    Ok(Json(StatisticsDoc {
        election_id: id.to_string(),
        status: s.status.as_str(),
        accepted_votes: s.accepted,
        persisted_votes: s.persisted,
        duplicates_dropped: s.duplicates,
        first_vote_at: s.first_vote_at.as_ref().map(rfc3339),
        last_vote_at: s.last_vote_at.as_ref().map(rfc3339),
        average_votes_per_minute: (s.average_per_minute * 100.0).round() / 100.0,
        peak_minute: s.peak_minute.map(|(minute, votes)| PeakDoc {
            minute: rfc3339(&minute),
            votes,
        }),
        votes_per_hour: s
            .hourly
            .iter()
            .map(|h| HourDoc {
                hour: rfc3339(&h.hour),
                votes: h.votes,
            })
            .collect(),
        generated_at: rfc3339(&s.generated_at),
        policy: policy_name(s.policy),
        max_votes: s.policy.max_votes(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("Ana"), "\"Ana\"");
        assert_eq!(csv_field("say \"hi\", ok"), "\"say \"\"hi\"\", ok\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_field(""), "\"\"");
    }
}
