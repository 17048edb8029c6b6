//! Criterion micro-benchmarks of the functions every vote runs through
//! (issue 20): bearer token verification, request body decoding, the Redis
//! claim value, and the queue message encoded and decoded.
//!
//! Run with `cargo bench -p livevote-loadtests --bench hot_paths`; the README
//! shows the figures before and after each change to these paths.

use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use livevote_auth0::{DevIssuer, DevTokenClaims, JwksConfig, JwksVerifier};
use livevote_domain::{
    Ballot, CandidateId, CorrelationId, ElectionId, IdempotencyKey, VoteId, VoteRecord, VoterId,
};
use livevote_ports::{Claim, ClaimState, TokenVerifier};

const ISS: &str = "https://livevote-bench.local/";
const AUD: &str = "https://api.livevote.bench";

fn record(n: usize) -> VoteRecord {
    VoteRecord {
        vote: Ballot {
            vote_id: VoteId::generate(),
            election_id: ElectionId::generate(),
            candidate_id: CandidateId::generate(),
            voter_id: VoterId::parse(format!("auth0|viewer-{n:08}")).expect("voter id"),
            accepted_at: Utc::now(),
            slot: livevote_domain::VoteSlot::FIRST,
        },
        correlation_id: CorrelationId::generate(),
    }
}

/// RS256 verification as ingestion runs it: a distinct viewer's token each
/// time, keys fetched once from a JWKS endpoint on loopback.
fn token_verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let issuer = DevIssuer::builtin(ISS, AUD);
    let jwks = issuer.jwks_json().to_owned();
    let verifier = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { ([("content-type", "application/json")], jwks) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let verifier = JwksVerifier::new(JwksConfig::new(format!("http://{addr}/jwks.json"), ISS, AUD))
            .expect("verifier");
        verifier.refresh().await.expect("JWKS loaded");
        verifier
    });
    let tokens: Vec<String> = (0..256)
        .map(|n| issuer.token(&DevTokenClaims::viewer(format!("auth0|viewer-{n:08}"))))
        .collect();
    let mut next = 0usize;
    c.bench_function("token_verify_rs256", |b| {
        b.iter(|| {
            next = (next + 1) % tokens.len();
            let principal = rt
                .block_on(verifier.verify(black_box(&tokens[next])))
                .expect("a valid token");
            black_box(principal)
        })
    });
}

/// The vote body as the HTTP edge parses and checks it.
fn request_decode(c: &mut Criterion) {
    let body = format!(
        r#"{{"electionId":"{}","candidateId":"{}"}}"#,
        ElectionId::generate(),
        CandidateId::generate()
    );
    c.bench_function("request_decode", |b| {
        b.iter(|| {
            livevote_ingestion::http::votes::parse_vote(black_box(body.as_bytes())).expect("valid body")
        })
    });
}

/// The claim value written by the Redis claim, and read back on a duplicate.
fn claim_encode(c: &mut Criterion) {
    let claim = Claim {
        vote: record(1).vote,
        idempotency_key: Some(IdempotencyKey::parse("retry-7f3a9c").expect("key")),
        policy: livevote_domain::VotePolicy::Single,
    };
    c.bench_function("claim_encode", |b| {
        b.iter(|| livevote_redis::encode_claim(ClaimState::Reserved, black_box(&claim)))
    });
    let value = livevote_redis::encode_claim(ClaimState::Accepted, &claim);
    c.bench_function("claim_decode", |b| {
        b.iter(|| livevote_redis::decode_claim(black_box(&value)).expect("valid claim"))
    });
}

/// One queue message of 10 votes (a full SQS batch entry), written and read.
fn message_codec(c: &mut Criterion) {
    let votes: Vec<VoteRecord> = (0..10).map(record).collect();
    c.bench_function("message_encode_10_votes", |b| {
        b.iter(|| livevote_sqs::message::encode(black_box(&votes)))
    });
    let body = livevote_sqs::message::encode(&votes);
    c.bench_function("message_decode_10_votes", |b| {
        b.iter(|| livevote_sqs::message::decode(black_box(&body)).expect("valid message"))
    });
}

criterion_group!(benches, token_verify, request_decode, claim_encode, message_codec);
criterion_main!(benches);
