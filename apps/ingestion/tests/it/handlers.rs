//! The router on the in-memory adapters, through `Router::oneshot`: the
//! mapping of every use-case outcome to status, code and headers, without
//! any server. The black-box suite repeats the important ones on the real
//! binary and servers.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration as ChronoDuration, Utc};
use livevote_domain::{Election, VoterId};
use livevote_hosting::SystemClock;
use livevote_ingestion::http::{AppState, router};
use livevote_ingestion::ratelimit::{RateLimitConfig, RateLimits};
use livevote_ingestion::{
    CacheConfig, CastConfig, CastVoteService, ElectionCache, PublisherConfig, VoteBatcher,
};
use livevote_memory::{
    DedupConfig, FakeHumanCheck, MemoryDatabase, MemoryDedup, MemoryQueue, NoMetrics, QueueConfig,
    StaticTokens,
};
use livevote_ports::{Principal, TokenError};
use livevote_testkit::fixtures::active_election;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Fixture {
    app: axum::Router,
    election: Election,
    queue: MemoryQueue,
}

async fn fixture(queue_up: bool) -> Fixture {
    let db = MemoryDatabase::new(SystemClock);
    let election = active_election(&db, &["A", "B"], Utc::now(), ChronoDuration::hours(1), |_| {}).await;
    let queue = MemoryQueue::new(SystemClock, QueueConfig::default());
    queue.set_available(queue_up);
    let dedup = MemoryDedup::new(SystemClock, DedupConfig::default());
    let (batcher, _task) = VoteBatcher::start(
        queue.clone(),
        dedup.clone(),
        PublisherConfig::default(),
        NoMetrics,
    );
    let cast = CastVoteService::new(
        Arc::new(ElectionCache::new(db.clone(), CacheConfig::default())),
        dedup,
        batcher,
        FakeHumanCheck::AlwaysHuman,
        SystemClock,
        NoMetrics,
        CastConfig::default(),
    );
    let tokens = StaticTokens::new();
    for who in ["alice", "bob"] {
        tokens.allow(
            who,
            Principal {
                subject: VoterId::parse(format!("auth0|{who}")).unwrap(),
                permissions: vec![],
            },
        );
    }
    tokens.refuse("old", TokenError::Expired);
    let state = AppState {
        voting: Arc::new(cast),
        tokens: Arc::new(tokens),
        limits: Arc::new(RateLimits::new(RateLimitConfig {
            per_voter: None,
            per_ip: None,
            max_keys: 10,
        })),
        metrics: Arc::new(NoMetrics),
        render_metrics: Arc::new(|| "livevote_up 1\n".into()),
        readiness: Arc::new([]),
        draining: Arc::new(AtomicBool::new(false)),
        trusted_proxies: 0,
        request_timeout: Duration::from_secs(5),
    };
    Fixture {
        app: router(state),
        election,
        queue,
    }
}

async fn post(app: &axum::Router, token: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::post("/api/v1/votes")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn ballot(e: &Election) -> Value {
    json!({"electionId": e.id().to_string(), "candidateId": e.candidates()[0].id().to_string()})
}

#[tokio::test]
async fn accept_then_duplicate_then_token_errors() {
    let f = fixture(true).await;
    let (s, first) = post(&f.app, "alice", ballot(&f.election)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let (s, dup) = post(&f.app, "alice", ballot(&f.election)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(dup["code"], "DUPLICATE_VOTE");
    assert_eq!(dup["details"]["voteId"], first["voteId"]);
    assert!(!dup["traceId"].as_str().unwrap().is_empty());
    let (s, body) = post(&f.app, "old", ballot(&f.election)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("TOKEN_EXPIRED"))
    );
    let (s, body) = post(&f.app, "nobody", ballot(&f.election)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_TOKEN"))
    );
    assert_eq!(f.queue.published_messages(), 1, "one vote queued");
}

#[tokio::test]
async fn queue_down_is_503_with_retry_after_and_releases_the_claim() {
    let f = fixture(false).await;
    let request = || {
        Request::post("/api/v1/votes")
            .header("authorization", "Bearer bob")
            .header("content-type", "application/json")
            .body(Body::from(ballot(&f.election).to_string()))
            .unwrap()
    };
    let response = f.app.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    f.queue.set_available(true);
    let response = f.app.clone().oneshot(request()).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "the voter can vote once the queue is back"
    );
}
