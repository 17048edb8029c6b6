//! Harness of the results black-box tests: the real `livevote-results`
//! binary against PostgreSQL (a scratch database per test), Redis (a key
//! prefix per test), the local SQS endpoint (queues per test) and a JWKS
//! served from the development key pair, all on 127.0.0.1.
//!
//! Votes reach the stores the way the other services put them there: the
//! ingestion's claim + confirm in Redis (live tally `A`) and the
//! processor's batch insert in PostgreSQL (`P`), through the same adapters.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use livevote_auth0::DevTokenClaims;
use livevote_domain::{
    Ballot, CandidateCount, CandidateId, CorrelationId, ElectionId, VoteId, VoteRecord, VoterId,
};
use livevote_ports::{Claim, ClaimOutcome, ConfirmOutcome, LiveTallies, VoteDedup, VoteStore};
use livevote_postgres::{PgVoteStore, StoreConfig};
use livevote_testkit::backends::Backends;
use serde_json::{Value, json};

pub const ISS: &str = "https://livevote-results.test/";

/// A running `livevote-results`; killed on drop.
pub type Results = livevote_testkit::ServiceProcess;

/// The servers around one results instance: the shared [`Backends`]
/// (reached through `Deref`), the vote store and an HTTP client.
pub struct Stack {
    pub backends: Backends,
    pub store: PgVoteStore,
    pub http: reqwest::Client,
}

impl std::ops::Deref for Stack {
    type Target = Backends;
    fn deref(&self) -> &Backends {
        &self.backends
    }
}

impl Stack {
    pub async fn new() -> Self {
        let backends = Backends::start(ISS).await;
        Self {
            store: PgVoteStore::new(backends.pool.clone(), StoreConfig::default()),
            backends,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// The environment of a results instance on this stack.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.backends.env();
        env.push(("LIVEVOTE_RESULTS_LISTEN".into(), "127.0.0.1:0".into()));
        env.push((
            "LIVEVOTE_LOG".into(),
            "info,livevote_results=debug,livevote_http=debug".into(),
        ));
        env
    }

    /// Starts `livevote-results` on this stack, with `extra` variables.
    pub fn start(&self, extra: &[(&str, &str)]) -> Results {
        let mut env = self.env();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_string(), (*v).to_string()));
        }
        Results::start(
            env!("CARGO_BIN_EXE_livevote-results"),
            &[],
            &env,
            "livevote-results listening",
        )
        .expect("livevote-results starts")
    }

    pub fn token(&self, sub: &str, permissions: &[&str]) -> String {
        let mut claims = DevTokenClaims::viewer(sub);
        claims.permissions = permissions.iter().map(|p| (*p).to_string()).collect();
        self.issuer.token(&claims)
    }

    pub fn admin_token(&self) -> String {
        self.token("auth0|producer-1", &["elections:admin"])
    }

    pub fn auditor_token(&self) -> String {
        self.token("auth0|auditor-1", &["audit:read"])
    }

    /// A vote the way ingestion accepts it: claimed, then confirmed (live tally +1).
    pub async fn accept(&self, election: ElectionId, candidate: CandidateId, voter: &str) -> VoteRecord {
        let record = VoteRecord {
            vote: Ballot {
                vote_id: VoteId::generate(),
                election_id: election,
                candidate_id: candidate,
                voter_id: VoterId::parse(voter).unwrap(),
                accepted_at: chrono::Utc::now(),
                slot: livevote_domain::VoteSlot::FIRST,
            },
            correlation_id: CorrelationId::generate(),
        };
        let claim = Claim {
            vote: record.vote.clone(),
            idempotency_key: None,
            policy: livevote_domain::VotePolicy::Single,
        };
        assert_eq!(
            self.redis.claim(&claim).await.unwrap(),
            ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
        );
        assert_eq!(
            self.redis.confirm(&claim).await.unwrap(),
            ConfirmOutcome::Confirmed
        );
        record
    }

    /// `PATCH .../status` with `body`, as the producer.
    pub async fn change_status(&self, app: &Results, id: &str, body: Value) -> Answer {
        let admin = self.admin_token();
        call(
            &self.http,
            app,
            "PATCH",
            &format!("/api/v1/admin/elections/{id}/status"),
            Some(&admin),
            Some(body),
            &[],
        )
        .await
    }

    /// Puts a message straight into the dead-letter queue, as the redrive
    /// would after too many receives.
    pub async fn dead_letter(&self, body: &str) {
        self.queue
            .client()
            .send_message()
            .queue_url(&self.queue.config().dead_letter_queue_url)
            .message_body(body)
            .send()
            .await
            .expect("a send to the dead-letter queue");
    }

    /// Sets an election's live tallies (the counts ingestion would have confirmed).
    pub async fn set_live_counts(&self, election: ElectionId, counts: &[(CandidateId, u64)]) {
        let counts: Vec<CandidateCount> = counts
            .iter()
            .map(|&(candidate_id, votes)| CandidateCount { candidate_id, votes })
            .collect();
        self.redis.replace_counts(election, &counts).await.unwrap();
    }

    /// The processor's side: the votes stored in one batch.
    pub async fn persist(&self, votes: &[VoteRecord]) {
        let report = self.store.persist_batch(votes).await.unwrap();
        assert_eq!(report.inserted(), votes.len());
    }
}

/// One answer: status, headers, body (JSON when it parses, else the text).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts the error shape `{code, message, traceId}`, the trace id equal to the request id.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
        let request_id = self.header("x-request-id");
        assert!(!request_id.is_empty());
        assert_eq!(self.body["traceId"], request_id, "{}", self.body);
    }
}

/// Sends a request; `body` is sent as JSON when given.
pub async fn call(
    http: &reqwest::Client,
    app: &Results,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = http.request(method, app.url(path));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

/// A new election through the admin API (201), opened at once unless `open` is false.
pub async fn create_election(s: &Stack, app: &Results, names: &[&str], open: bool, extra: Value) -> Value {
    let now = chrono::Utc::now();
    let mut body = json!({
        "title": "Song of the Night",
        "description": "Grand final",
        "startsAt": (now + chrono::Duration::minutes(10)).to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(2)).to_rfc3339(),
        "candidates": names.iter().map(|n| json!({"name": n, "party": "Indie"})).collect::<Vec<_>>(),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let admin = s.admin_token();
    let created = call(
        &s.http,
        app,
        "POST",
        "/api/v1/admin/elections",
        Some(&admin),
        Some(body),
        &[],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["electionId"].as_str().unwrap().to_owned();
    if open {
        for status in ["SCHEDULED", "ACTIVE"] {
            let moved = call(
                &s.http,
                app,
                "PATCH",
                &format!("/api/v1/admin/elections/{id}/status"),
                Some(&admin),
                Some(json!({ "status": status })),
                &[],
            )
            .await;
            assert_eq!(moved.status, 200, "{}", moved.body);
        }
    }
    let got = call(
        &s.http,
        app,
        "GET",
        &format!("/api/v1/admin/elections/{id}"),
        Some(&admin),
        None,
        &[],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body
}

pub fn election_id(doc: &Value) -> ElectionId {
    ElectionId::parse(doc["electionId"].as_str().unwrap()).unwrap()
}

pub fn candidate_id(doc: &Value, i: usize) -> CandidateId {
    CandidateId::parse(doc["candidates"][i]["candidateId"].as_str().unwrap()).unwrap()
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
