//! Harness of the black-box tests: the real `livevote-ingestion` binary
//! against PostgreSQL (a scratch database per test), Redis (a key prefix per
//! test), the local SQS endpoint (queues per test), a JWKS served from the
//! development key pair, and a fake Turnstile siteverify, all on 127.0.0.1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::response::IntoResponse;
use axum::routing::post;
use chrono::{Duration as ChronoDuration, Utc};
use livevote_auth0::DevTokenClaims;
use livevote_domain::{Election, VoteRecord};
use livevote_ports::{DeliveryContent, VoteSource};
use livevote_postgres::PgElections;
use livevote_testkit::backends::Backends;
use livevote_testkit::fixtures::active_election;
use serde_json::{Value, json};

pub const ISS: &str = "https://livevote-blackbox.test/";
pub use livevote_testkit::backends::{AUDIENCE as AUD, redis_url, serve, sqs_endpoint};

/// The `host:port` of the test Redis.
pub fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let rest = url.trim_start_matches("redis://");
    let host_port = rest.split('/').next().unwrap_or(rest);
    host_port
        .parse()
        .expect("LIVEVOTE_TEST_REDIS_URL with a numeric host:port")
}

/// Replaces (or adds) one variable of an environment.
pub fn set_env(env: &mut Vec<(String, String)>, key: &str, value: String) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value));
}

pub use livevote_testkit::Relay;

/// The servers around one ingestion instance (or several sharing them):
/// the shared [`Backends`] (reached through `Deref`), plus a fake Turnstile.
pub struct Stack {
    pub backends: Backends,
    pub elections: PgElections,
    pub turnstile_addr: SocketAddr,
    pub turnstile_up: Arc<AtomicBool>,
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
        let turnstile_up = Arc::new(AtomicBool::new(true));
        let up = turnstile_up.clone();
        let turnstile_addr = serve(axum::Router::new().route(
            "/siteverify",
            post(move |Json(body): Json<Value>| {
                let up = up.clone();
                async move {
                    if !up.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::BAD_GATEWAY, Json(json!({}))).into_response();
                    }
                    let human = body["secret"] == "bb-secret" && body["response"] == "human-token";
                    (
                        axum::http::StatusCode::OK,
                        Json(if human {
                            json!({"success": true})
                        } else {
                            json!({"success": false, "error-codes": ["invalid-input-response"]})
                        }),
                    )
                        .into_response()
                }
            }),
        ))
        .await;
        Self {
            elections: PgElections::new(backends.pool.clone()),
            backends,
            turnstile_addr,
            turnstile_up,
        }
    }

    /// An election open for the next hour, with three candidates.
    pub async fn election(&self, captcha: bool) -> Election {
        active_election(
            &self.elections,
            &["Ada", "Grace", "Linus"],
            Utc::now(),
            ChronoDuration::hours(1),
            |e| {
                e.captcha_required = captcha;
            },
        )
        .await
    }

    pub fn token(&self, sub: &str) -> String {
        self.issuer.token(&DevTokenClaims::viewer(sub))
    }

    /// The environment of an ingestion instance on this stack.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.backends.env();
        for (k, v) in [
            ("LIVEVOTE_INGESTION_LISTEN", "127.0.0.1:0".to_string()),
            ("LIVEVOTE_TURNSTILE_SECRET", "bb-secret".to_string()),
            (
                "LIVEVOTE_TURNSTILE_URL",
                format!("http://{}/siteverify", self.turnstile_addr),
            ),
            ("LIVEVOTE_RATE_VOTER_PER_SEC", "50".to_string()),
            ("LIVEVOTE_RATE_VOTER_BURST", "100".to_string()),
            ("LIVEVOTE_RATE_IP_PER_SEC", "0".to_string()),
            (
                "LIVEVOTE_LOG",
                "info,livevote_ingestion=debug,livevote_http=debug".to_string(),
            ),
        ] {
            env.push((k.to_string(), v));
        }
        env
    }

    /// Every vote in the queue, received and acknowledged, until `want` arrived or 20 s passed.
    pub async fn drain_queue(&self, want: usize) -> Vec<VoteRecord> {
        self.drain_queue_within(want, Duration::from_secs(20)).await
    }

    /// Fails when any vote arrives in the queue within 2 s.
    pub async fn assert_nothing_queued(&self, what: &str) {
        let got = self.drain_queue_within(1, Duration::from_secs(2)).await;
        assert!(got.is_empty(), "{what}: {got:?}");
    }

    /// As [`Stack::drain_queue`], waiting at most `limit`.
    pub async fn drain_queue_within(&self, want: usize, limit: Duration) -> Vec<VoteRecord> {
        let started = Instant::now();
        let mut got = Vec::new();
        while got.len() < want && started.elapsed() < limit {
            let deliveries = self.queue.receive(10, Duration::from_secs(1)).await.unwrap();
            let mut tags = Vec::new();
            for d in deliveries {
                if let DeliveryContent::Votes(v) = d.content {
                    got.extend(v);
                }
                tags.push(d.tag);
            }
            if !tags.is_empty() {
                self.queue.ack(&tags).await.unwrap();
            }
        }
        got
    }
}

/// A running `livevote-ingestion`; killed on drop.
pub type Ingestion = livevote_testkit::ServiceProcess;

/// Starts `livevote-ingestion` with `env` and waits until it listens.
pub fn start_ingestion(env: &[(String, String)]) -> Ingestion {
    Ingestion::start(
        env!("CARGO_BIN_EXE_livevote-ingestion"),
        &[],
        env,
        "livevote-ingestion listening",
    )
    .expect("livevote-ingestion starts")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs a vote; returns status, headers and JSON body.
pub async fn vote(
    client: &reqwest::Client,
    app: &Ingestion,
    token: Option<&str>,
    body: &Value,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client.post(app.url("/api/v1/votes")).json(body);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// Sends every (token, body) at once, each on a task of its own; each task
/// yields the status and JSON body.
pub fn spawn_votes(
    client: &reqwest::Client,
    app: &Ingestion,
    votes: Vec<(String, Value)>,
) -> Vec<tokio::task::JoinHandle<(u16, Value)>> {
    votes
        .into_iter()
        .map(|(token, body)| {
            let (c, url) = (client.clone(), app.url("/api/v1/votes"));
            tokio::spawn(async move {
                let r = c.post(url).bearer_auth(token).json(&body).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect()
}

pub fn ballot(e: &Election, candidate: usize) -> Value {
    json!({"electionId": e.id().to_string(), "candidateId": e.candidates()[candidate].id().to_string()})
}

/// Asserts the error shape `{code, message, traceId}` with the trace id
/// equal to the response's request id.
pub fn assert_error(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    want_status: u16,
    code: &str,
) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(!request_id.is_empty());
    assert_eq!(body["traceId"], request_id, "{body}");
}
