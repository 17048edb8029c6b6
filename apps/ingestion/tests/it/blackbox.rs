//! Black-box tests of `livevote-ingestion`: the real binary, real Redis,
//! PostgreSQL and the local SQS endpoint, tokens signed by a local key pair
//! and verified through a JWKS served over HTTP.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::*;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use livevote_domain::ActorId;
use livevote_ports::{AdminAction, ChangeKind, ElectionAdmin, ElectionAnnouncer, QueueInspector};
use livevote_redis::RedisElectionCache;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_code_of_the_contract_from_real_requests() {
    let stack = Stack::new().await;
    let election = stack.election(false).await;
    let captcha_election = stack.election(true).await;
    let app = start_ingestion(&stack.env());
    let c = http();
    let alice = stack.token("auth0|alice");

    // 202, with the request id travelling as the vote's correlation id.
    let (status, headers, body) = vote(
        &c,
        &app,
        Some(&alice),
        &ballot(&election, 1),
        &[("x-request-id", "req-alice-1")],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(headers["x-request-id"], "req-alice-1");
    let vote_id = body["voteId"].as_str().unwrap().to_string();
    let accepted_at = body["acceptedAt"].as_str().unwrap().to_string();

    // 409 DUPLICATE_VOTE with the original vote.
    let (s, h, b) = vote(&c, &app, Some(&alice), &ballot(&election, 2), &[]).await;
    assert_error(s, &h, &b, 409, "DUPLICATE_VOTE");
    assert_eq!(b["details"]["voteId"], vote_id.as_str());
    assert_eq!(b["details"]["acceptedAt"], accepted_at.as_str());

    // A retry with the same Idempotency-Key is answered with the same vote.
    let bob = stack.token("auth0|bob");
    let (s1, _, b1) = vote(
        &c,
        &app,
        Some(&bob),
        &ballot(&election, 0),
        &[("idempotency-key", "bob-try-1")],
    )
    .await;
    let (s2, h2, b2) = vote(
        &c,
        &app,
        Some(&bob),
        &ballot(&election, 0),
        &[("idempotency-key", "bob-try-1")],
    )
    .await;
    assert_eq!((s1, s2), (202, 202), "{b1} {b2}");
    assert_eq!(b1["voteId"], b2["voteId"]);
    assert_eq!(h2["idempotent-replayed"], "true");
    // The same key with another candidate: 422, and the first vote stands.
    let (s3, h3, b3) = vote(
        &c,
        &app,
        Some(&bob),
        &ballot(&election, 1),
        &[("idempotency-key", "bob-try-1")],
    )
    .await;
    assert_error(s3, &h3, &b3, 422, "IDEMPOTENCY_KEY_REUSED");
    let (s4, _, b4) = vote(
        &c,
        &app,
        Some(&bob),
        &ballot(&election, 0),
        &[("idempotency-key", "bob-try-1")],
    )
    .await;
    assert_eq!(s4, 202, "{b4}");
    assert_eq!(b4["voteId"], b1["voteId"]);

    // The caller's status.
    let me = c
        .get(app.url(&format!("/api/v1/votes/status/{}/me", election.id())))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["hasVoted"], true);
    assert_eq!(me["voteId"], vote_id.as_str());
    let carol = stack.token("auth0|carol");
    let me: Value = c
        .get(app.url(&format!("/api/v1/votes/status/{}/me", election.id())))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me,
        json!({"electionId": election.id().to_string(), "hasVoted": false})
    );

    // 400 INVALID_REQUEST, each changing nothing.
    let e = election.id().to_string();
    let cand = election.candidates()[0].id().to_string();
    for bad in [
        json!({"electionId": e, "candidateId": cand, "voterId": "auth0|someone-else"}),
        json!({"electionId": e, "candidateId": 7}),
        json!({"electionId": e}),
        json!({"electionId": "not-a-uuid", "candidateId": cand}),
        json!({"electionId": format!("{e}\u{0}"), "candidateId": cand}),
        json!({"electionId": e, "candidateId": cand, "captchaToken": "x".repeat(2049)}),
        json!(["not", "an", "object"]),
    ] {
        let (s, h, b) = vote(&c, &app, Some(&carol), &bad, &[]).await;
        assert_error(s, &h, &b, 400, "INVALID_REQUEST");
    }
    let raw = c
        .post(app.url("/api/v1/votes"))
        .bearer_auth(&carol)
        .header("content-type", "application/json")
        .body("{\"electionId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let (s, h, b) = vote(
        &c,
        &app,
        Some(&carol),
        &ballot(&election, 0),
        &[("idempotency-key", "has space")],
    )
    .await;
    assert_error(s, &h, &b, 400, "INVALID_REQUEST");

    // 401: no token, garbage, expired.
    let (s, h, b) = vote(&c, &app, None, &ballot(&election, 0), &[]).await;
    assert_error(s, &h, &b, 401, "INVALID_TOKEN");
    let (s, h, b) = vote(&c, &app, Some("not.a.token"), &ballot(&election, 0), &[]).await;
    assert_error(s, &h, &b, 401, "INVALID_TOKEN");
    let expired = stack.issuer.sign(
        stack.issuer.header(),
        &json!({"iss": ISS, "aud": AUD, "sub": "auth0|carol", "exp": Utc::now().timestamp() - 120}),
    );
    let (s, h, b) = vote(&c, &app, Some(&expired), &ballot(&election, 0), &[]).await;
    assert_error(s, &h, &b, 401, "TOKEN_EXPIRED");

    // 403 CAPTCHA_FAILED, then a human passes.
    let (s, h, b) = vote(&c, &app, Some(&carol), &ballot(&captcha_election, 0), &[]).await;
    assert_error(s, &h, &b, 403, "CAPTCHA_FAILED");
    let mut robot = ballot(&captcha_election, 0);
    robot["captchaToken"] = json!("robot-token");
    let (s, h, b) = vote(&c, &app, Some(&carol), &robot, &[]).await;
    assert_error(s, &h, &b, 403, "CAPTCHA_FAILED");
    // The verifier down: fail closed with 503, nothing claimed.
    stack
        .turnstile_up
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut human = ballot(&captcha_election, 0);
    human["captchaToken"] = json!("human-token");
    let (s, h, b) = vote(&c, &app, Some(&carol), &human, &[]).await;
    assert_error(s, &h, &b, 503, "UNAVAILABLE");
    assert!(h.contains_key("retry-after"));
    stack
        .turnstile_up
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (s, _, b) = vote(&c, &app, Some(&carol), &human, &[]).await;
    assert_eq!(s, 202, "{b}");

    // 404 ELECTION_NOT_FOUND, 422 CANDIDATE_NOT_FOUND.
    let dave = stack.token("auth0|dave");
    let unknown = json!({"electionId": uuid::Uuid::new_v4().to_string(), "candidateId": cand});
    let (s, h, b) = vote(&c, &app, Some(&dave), &unknown, &[]).await;
    assert_error(s, &h, &b, 404, "ELECTION_NOT_FOUND");
    let stranger = json!({"electionId": e, "candidateId": uuid::Uuid::new_v4().to_string()});
    let (s, h, b) = vote(&c, &app, Some(&dave), &stranger, &[]).await;
    assert_error(s, &h, &b, 422, "CANDIDATE_NOT_FOUND");

    // 409 ELECTION_NOT_ACTIVE: a draft.
    let now = Utc::now();
    let draft = livevote_domain::Election::create(
        livevote_domain::ElectionId::generate(),
        livevote_testkit::fixtures::new_election(
            "Draft show",
            &["A", "B"],
            now,
            now + chrono::Duration::hours(1),
        ),
        now,
        livevote_domain::CandidateId::generate,
    )
    .unwrap();
    stack
        .elections
        .create(&draft, &ActorId::parse("auth0|op").unwrap(), now)
        .await
        .unwrap();
    let (s, h, b) = vote(&c, &app, Some(&dave), &ballot(&draft, 0), &[]).await;
    assert_error(s, &h, &b, 409, "ELECTION_NOT_ACTIVE");

    // 413, 415.
    let big = json!({"electionId": e, "candidateId": cand, "captchaToken": "x".repeat(5000)});
    let (s, h, b) = vote(&c, &app, Some(&dave), &big, &[]).await;
    assert_error(s, &h, &b, 413, "PAYLOAD_TOO_LARGE");
    let form = c
        .post(app.url("/api/v1/votes"))
        .bearer_auth(&dave)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("electionId={e}&candidateId={cand}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    let form: Value = form.json().await.unwrap();
    assert_eq!(form["code"], "UNSUPPORTED_MEDIA_TYPE");

    // 408: a body that trickles in slower than the body timeout.
    let addr = app.url("").trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(addr.trim_end_matches('/'))
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/votes HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {dave}\r\n\
         Content-Type: application/json\r\nContent-Length: 80\r\n\r\n{{\"electionId\":"
    );
    tokio::io::AsyncWriteExt::write_all(&mut slow, head.as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 2048];
    let n = tokio::time::timeout(
        Duration::from_secs(9),
        tokio::io::AsyncReadExt::read(&mut slow, &mut answer),
    )
    .await
    .expect("answered within the body timeout")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"REQUEST_TIMEOUT\""), "{answer}");

    // 409 ELECTION_CLOSED after an operator closes it.
    close(&stack, &election).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, h, b) = vote(&c, &app, Some(&dave), &ballot(&election, 0), &[]).await;
    assert_error(s, &h, &b, 409, "ELECTION_CLOSED");

    // JSON errors for unknown paths and methods.
    let r = c.get(app.url("/no/such/path")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "NOT_FOUND");
    let r = c.delete(app.url("/api/v1/votes")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "METHOD_NOT_ALLOWED");

    // Probes, metrics, contract.
    assert_eq!(c.get(app.url("/health/live")).send().await.unwrap().status(), 200);
    let ready = c.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    for dep in ["redis", "queue", "jwks"] {
        assert_eq!(ready["checks"][dep]["status"], "up", "{ready}");
    }
    let metrics = c
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("livevote_votes_accepted_total"), "{metrics}");
    assert!(metrics.contains("livevote_votes_rejected_total"), "{metrics}");
    assert!(
        metrics.contains("livevote_http_request_duration_seconds"),
        "{metrics}"
    );
    let doc: Value = c
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/votes"]["post"].is_object());

    // Exactly the accepted votes reached the queue: alice, bob (once), carol's captcha vote.
    let queued = stack.drain_queue(3).await;
    assert_eq!(queued.len(), 3, "{queued:?}");
    let alice_vote = queued
        .iter()
        .find(|r| r.vote.voter_id.as_str() == "auth0|alice")
        .unwrap();
    assert_eq!(alice_vote.vote.vote_id.to_string(), vote_id);
    assert_eq!(alice_vote.correlation_id.as_str(), "req-alice-1");
    assert_eq!(alice_vote.vote.candidate_id, election.candidates()[1].id());
    // The request id is in the service's log lines of that request.
    let logs = app.log_lines();
    assert!(
        logs.iter().any(|l| l.contains("req-alice-1")),
        "request id logged"
    );
    assert!(
        logs.iter().all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "JSON logs"
    );
}

/// Closes an election as an operator does: save, then announce.
async fn close(stack: &Stack, election: &livevote_domain::Election) {
    let now = Utc::now();
    let mut e = stack.elections.load(election.id()).await.unwrap();
    e.close(now).unwrap();
    stack
        .elections
        .update(
            &e,
            AdminAction::Closed,
            &ActorId::parse("auth0|op").unwrap(),
            "lines are closed",
            now,
        )
        .await
        .unwrap();
    let announcer = RedisElectionCache::new(stack.redis.clone(), stack.elections.clone());
    announcer
        .announce(election.id(), ChangeKind::Closed)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_requests_from_one_voter_get_exactly_one_202() {
    let stack = Stack::new().await;
    let election = stack.election(false).await;
    let app = start_ingestion(&stack.env());
    let c = http();
    let token = stack.token("auth0|eager");
    let tasks = spawn_votes(
        &c,
        &app,
        (0..50)
            .map(|i| (token.clone(), ballot(&election, i % 3)))
            .collect(),
    );
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            202 => accepted.push(body["voteId"].as_str().unwrap().to_string()),
            409 => {
                assert_eq!(body["code"], "DUPLICATE_VOTE", "{body}");
                duplicates.push(body["details"]["voteId"].as_str().unwrap().to_string());
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one 202");
    assert_eq!(duplicates.len(), 49);
    assert!(
        duplicates.iter().all(|d| *d == accepted[0]),
        "every 409 names the one vote"
    );
    let queued = stack.drain_queue(1).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].vote.vote_id.to_string(), accepted[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.assert_nothing_queued("nothing else was queued").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_with_401() {
    let stack = Stack::new().await;
    let election = stack.election(false).await;
    let app = start_ingestion(&stack.env());
    let c = http();
    let now = Utc::now().timestamp();
    let claims = |sub: &str| json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now, "exp": now + 600});
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let forger = livevote_auth0::DevIssuer::from_pem(
        include_bytes!("../../../../adapters/auth0/dev/other-key.pem"),
        stack.issuer.kid(),
        ISS,
        AUD,
    )
    .unwrap();
    let mut wrong_iss = claims("auth0|h1");
    wrong_iss["iss"] = json!("https://evil.example/");
    let mut wrong_aud = claims("auth0|h2");
    wrong_aud["aud"] = json!("https://another.example");
    let mut expired = claims("auth0|h3");
    expired["exp"] = json!(now - 300);
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(stack.issuer.kid().to_string());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims("auth0|h4"),
        &EncodingKey::from_secret(stack.issuer.jwks_json().as_bytes()),
    )
    .unwrap();
    let cases = [
        (
            "forged",
            forger.token(&livevote_auth0::DevTokenClaims::viewer("auth0|h0")),
            "INVALID_TOKEN",
        ),
        (
            "expired",
            stack.issuer.sign(stack.issuer.header(), &expired),
            "TOKEN_EXPIRED",
        ),
        (
            "wrong issuer",
            stack.issuer.sign(stack.issuer.header(), &wrong_iss),
            "INVALID_TOKEN",
        ),
        (
            "wrong audience",
            stack.issuer.sign(stack.issuer.header(), &wrong_aud),
            "INVALID_TOKEN",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims("auth0|h5"))
            ),
            "INVALID_TOKEN",
        ),
        ("HS256 keyed with the public key", hs256, "INVALID_TOKEN"),
    ];
    for (what, token, code) in cases {
        let (s, h, b) = vote(&c, &app, Some(&token), &ballot(&election, 0), &[]).await;
        assert_eq!(s, 401, "{what}: {b}");
        assert_error(s, &h, &b, 401, code);
    }
    stack.assert_nothing_queued("nothing queued").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_is_seen_by_two_instances_within_one_second() {
    let stack = Stack::new().await;
    let election = stack.election(false).await;
    let a = start_ingestion(&stack.env());
    let b = start_ingestion(&stack.env());
    let c = http();
    // Both instances have the election cached and take votes.
    for (i, app) in [&a, &b].into_iter().enumerate() {
        let (s, _, body) = vote(
            &c,
            app,
            Some(&stack.token(&format!("auth0|warm-{i}"))),
            &ballot(&election, 0),
            &[],
        )
        .await;
        assert_eq!(s, 202, "{body}");
    }
    close(&stack, &election).await;
    let closed_at = Instant::now();
    let mut seen = [None, None];
    let mut n = 0;
    while seen.iter().any(Option::is_none) && closed_at.elapsed() < Duration::from_secs(3) {
        for (i, app) in [&a, &b].into_iter().enumerate() {
            if seen[i].is_some() {
                continue;
            }
            n += 1;
            let (s, _, body) = vote(
                &c,
                app,
                Some(&stack.token(&format!("auth0|late-{n}"))),
                &ballot(&election, 0),
                &[],
            )
            .await;
            if s == 409 && body["code"] == "ELECTION_CLOSED" {
                seen[i] = Some(closed_at.elapsed());
            }
        }
    }
    for (i, at) in seen.iter().enumerate() {
        let at = at.unwrap_or_else(|| panic!("instance {i} still takes votes 3 s after the close"));
        assert!(
            at < Duration::from_secs(1),
            "instance {i} saw the close after {at:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_down_answers_503_and_the_voter_can_vote_once_it_is_back() {
    let stack = Stack::new().await;
    let election = stack.election(false).await;
    let target = sqs_endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let relay = Relay::start(target).await.unwrap();
    let mut env = stack.env();
    set_env(
        &mut env,
        "LIVEVOTE_SQS_ENDPOINT",
        format!("http://{}", relay.addr),
    );
    let app = start_ingestion(&env);
    let c = http();
    let token = stack.token("auth0|patient");
    relay.set_up(false);
    let (s, h, b) = vote(&c, &app, Some(&token), &ballot(&election, 2), &[]).await;
    assert_error(s, &h, &b, 503, "UNAVAILABLE");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let ready = c.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while the queue is down");
    // The failed attempt released its claim: no vote recorded.
    let me: Value = c
        .get(app.url(&format!("/api/v1/votes/status/{}/me", election.id())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["hasVoted"], false);
    relay.set_up(true);
    let (s, _, b) = vote(&c, &app, Some(&token), &ballot(&election, 2), &[]).await;
    assert_eq!(s, 202, "{b}");
    let queued = stack.drain_queue(1).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].vote.vote_id.to_string(), b["voteId"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_queues_nothing_and_recovers() {
    let stack = Stack::new().await;
    let election = stack.election(false).await;
    let relay = Relay::start(redis_addr()).await.unwrap();
    let mut env = stack.env();
    set_env(
        &mut env,
        "LIVEVOTE_REDIS_URL",
        format!("redis://{}/0", relay.addr),
    );
    let app = start_ingestion(&env);
    let c = http();
    let token = stack.token("auth0|through-the-outage");
    relay.set_up(false);
    let started = Instant::now();
    let (s, h, b) = vote(&c, &app, Some(&token), &ballot(&election, 1), &[]).await;
    assert_error(s, &h, &b, 503, "UNAVAILABLE");
    assert!(h.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast: {:?}",
        started.elapsed()
    );
    let ready = c.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["redis"]["status"], "down", "{ready}");
    relay.set_up(true);
    // The pool reconnects by itself; until then the answer stays 503, never a 202 without a claim.
    let back = Instant::now();
    let accepted = loop {
        let (s, _, b) = vote(&c, &app, Some(&token), &ballot(&election, 1), &[]).await;
        match s {
            202 => break b,
            503 => {}
            other => panic!("unexpected {other}: {b}"),
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "no recovery after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let queued = stack.drain_queue(1).await;
    assert_eq!(queued.len(), 1, "only the accepted vote was queued");
    assert_eq!(
        queued[0].vote.vote_id.to_string(),
        accepted["voteId"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let stack = Stack::new().await;
    let election = stack.election(false).await;
    let mut env = stack.env();
    env.retain(|(k, _)| !k.starts_with("LIVEVOTE_RATE_"));
    env.extend([
        ("LIVEVOTE_RATE_VOTER_PER_SEC".into(), "0.1".into()),
        ("LIVEVOTE_RATE_VOTER_BURST".into(), "2".into()),
        ("LIVEVOTE_RATE_IP_PER_SEC".into(), "1".into()),
        ("LIVEVOTE_RATE_IP_BURST".into(), "6".into()),
        ("LIVEVOTE_TRUSTED_PROXIES".into(), "1".into()),
    ]);
    let app = start_ingestion(&env);
    let c = http();
    // Per viewer: two requests, then 429.
    let token = stack.token("auth0|spammer");
    let via = [("x-forwarded-for", "198.51.100.1")];
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(vote(&c, &app, Some(&token), &ballot(&election, 0), &via).await);
    }
    assert_eq!(codes[0].0, 202);
    assert_eq!(codes[1].0, 409);
    let (s, h, b) = &codes[2];
    assert_error(*s, h, b, 429, "RATE_LIMITED");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Per client IP (through one trusted proxy): six, then 429 whoever votes.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let t = stack.token(&format!("auth0|crowd-{i}"));
        statuses.push(
            vote(
                &c,
                &app,
                Some(&t),
                &ballot(&election, 0),
                &[("x-forwarded-for", "198.51.100.2")],
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 6, "{statuses:?}");
    assert_eq!(statuses[6..], [429, 429]);
    // A forged left-most entry does not escape the limit; another real address does.
    let t = stack.token("auth0|crowd-x");
    let (s, _, _) = vote(
        &c,
        &app,
        Some(&t),
        &ballot(&election, 0),
        &[("x-forwarded-for", "1.2.3.4, 198.51.100.2")],
    )
    .await;
    assert_eq!(s, 429);
    let (s, _, _) = vote(
        &c,
        &app,
        Some(&t),
        &ballot(&election, 0),
        &[("x-forwarded-for", "198.51.100.3")],
    )
    .await;
    assert_eq!(s, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_vote_in_flight_and_loses_none() {
    let stack = Stack::new().await;
    let election = stack.election(false).await;
    let mut env = stack.env();
    // A long linger keeps votes in the publish buffer when SIGTERM arrives.
    env.push(("LIVEVOTE_PUBLISH_LINGER_MS".into(), "300".into()));
    let app = start_ingestion(&env);
    let c = http();
    let tasks = spawn_votes(
        &c,
        &app,
        (0..40)
            .map(|i| {
                (
                    stack.token(&format!("auth0|late-night-{i}")),
                    ballot(&election, i % 3),
                )
            })
            .collect(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = tokio::task::spawn_blocking(move || app.terminate())
        .await
        .unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    let mut accepted = HashSet::new();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert_eq!(s, 202, "every request in flight is answered: {b}");
        accepted.insert(b["voteId"].as_str().unwrap().to_string());
    }
    let queued: HashSet<String> = stack
        .drain_queue(accepted.len())
        .await
        .iter()
        .map(|r| r.vote.vote_id.to_string())
        .collect();
    assert_eq!(queued, accepted, "every 202 is in the queue");
    assert_eq!(stack.queue.stats().await.unwrap().visible, 0);
}
