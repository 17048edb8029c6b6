//! The JWKS verifier against a JWKS served over HTTP on 127.0.0.1 from a test
//! key pair: every rule of the crate docs, key rotation, single-flight
//! refetch and a JWKS endpoint that goes down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use livevote_auth0::{DevIssuer, DevTokenClaims, JwksConfig, JwksVerifier};
use livevote_ports::{Permission, TokenError, TokenVerifier};
use serde_json::{Value, json};

const ISS: &str = "https://livevote-test.example/";
const AUD: &str = "https://api.livevote.test";
const OTHER_KEY: &[u8] = include_bytes!("../dev/other-key.pem");

/// A JWKS endpoint whose document and availability the test controls.
struct Jwks {
    document: std::sync::RwLock<String>,
    up: AtomicBool,
    fetches: AtomicUsize,
}

async fn serve_jwks(State(jwks): State<Arc<Jwks>>) -> Response {
    jwks.fetches.fetch_add(1, Ordering::SeqCst);
    if !jwks.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = jwks.document.read().unwrap().clone();
    ([("content-type", "application/json")], body).into_response()
}

async fn start_jwks(document: String) -> (Arc<Jwks>, SocketAddr) {
    let jwks = Arc::new(Jwks {
        document: std::sync::RwLock::new(document),
        up: AtomicBool::new(true),
        fetches: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/.well-known/jwks.json", get(serve_jwks))
        .with_state(jwks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (jwks, addr)
}

struct Setup {
    issuer: DevIssuer,
    jwks: Arc<Jwks>,
    verifier: JwksVerifier,
}

async fn setup_with(refetch: Duration) -> Setup {
    let issuer = DevIssuer::builtin(ISS, AUD);
    let (jwks, addr) = start_jwks(issuer.jwks_json().to_string()).await;
    let mut config = JwksConfig::new(format!("http://{addr}/.well-known/jwks.json"), ISS, AUD);
    config.refetch_interval = refetch;
    config.leeway = Duration::from_secs(5);
    let verifier = JwksVerifier::new(config).unwrap();
    Setup {
        issuer,
        jwks,
        verifier,
    }
}

async fn setup() -> Setup {
    setup_with(Duration::from_secs(5)).await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now(), "exp": now() + 600})
}

fn invalid(result: Result<livevote_ports::Principal, TokenError>) -> String {
    match result {
        Err(TokenError::Invalid(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_yields_its_subject_and_known_permissions() {
    let s = setup().await;
    s.verifier.refresh().await.unwrap();
    let token = s.issuer.token(&DevTokenClaims {
        sub: "auth0|viewer-1".into(),
        permissions: vec!["elections:admin".into(), "something:else".into()],
        ttl: Duration::from_secs(60),
    });
    let p = s.verifier.verify(&token).await.unwrap();
    assert_eq!(p.subject.as_str(), "auth0|viewer-1");
    assert_eq!(p.permissions, vec![Permission::ElectionsAdmin]);
    assert!(!p.has(Permission::AuditRead));
}

#[tokio::test]
async fn expired_tokens_are_expired_and_leeway_is_honoured() {
    let s = setup().await;
    let mut c = claims("auth0|late");
    c["exp"] = json!(now() - 60);
    let token = s.issuer.sign(s.issuer.header(), &c);
    assert_eq!(s.verifier.verify(&token).await, Err(TokenError::Expired));
    // Expired 2 s ago, within the 5 s leeway: still fine.
    c["exp"] = json!(now() - 2);
    let token = s.issuer.sign(s.issuer.header(), &c);
    assert!(s.verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn wrong_issuer_audience_and_future_nbf_are_refused() {
    let s = setup().await;
    for (field, value) in [
        ("iss", json!("https://evil.example/")),
        ("aud", json!("https://another-api.example")),
        ("nbf", json!(now() + 600)),
    ] {
        let mut c = claims("auth0|x");
        c[field] = value;
        let token = s.issuer.sign(s.issuer.header(), &c);
        invalid(s.verifier.verify(&token).await);
    }
}

#[tokio::test]
async fn an_audience_list_must_name_this_api_and_other_claim_types_are_refused() {
    let s = setup().await;
    // Auth0 sends a list when the token is also good for /userinfo.
    let mut c = claims("auth0|listed");
    c["aud"] = json!(["https://tenant.example/userinfo", AUD]);
    let token = s.issuer.sign(s.issuer.header(), &c);
    assert_eq!(
        s.verifier.verify(&token).await.unwrap().subject.as_str(),
        "auth0|listed"
    );
    for aud in [json!(["https://another-api.example"]), json!([]), json!(42)] {
        c["aud"] = aud.clone();
        let token = s.issuer.sign(s.issuer.header(), &c);
        invalid(s.verifier.verify(&token).await);
    }
    // A numeric claim written as a string is not a number.
    let mut c = claims("auth0|stringly");
    c["exp"] = json!((now() + 600).to_string());
    let token = s.issuer.sign(s.issuer.header(), &c);
    invalid(s.verifier.verify(&token).await);
}

#[tokio::test]
async fn missing_required_claims_are_refused() {
    let s = setup().await;
    for field in ["iss", "aud", "exp", "sub"] {
        let mut c = claims("auth0|x");
        c.as_object_mut().unwrap().remove(field);
        let token = s.issuer.sign(s.issuer.header(), &c);
        invalid(s.verifier.verify(&token).await);
    }
    // A subject the domain cannot use as a voter id.
    let token = s.issuer.sign(s.issuer.header(), &claims("bad\u{0}sub"));
    invalid(s.verifier.verify(&token).await);
}

#[tokio::test]
async fn a_token_lives_at_most_the_maximum_lifetime() {
    let s = setup().await;
    // The outsiders' token: an exp in the year 33658.
    let mut c = claims("auth0|forever");
    c["exp"] = json!(999_999_999_999_i64);
    let reason = invalid(s.verifier.verify(&s.issuer.sign(s.issuer.header(), &c)).await);
    assert!(reason.contains("exceeds the maximum of 86400 s"), "{reason}");
    // With the cap set, iat is required...
    let mut c = claims("auth0|no-iat");
    c.as_object_mut().unwrap().remove("iat");
    let reason = invalid(s.verifier.verify(&s.issuer.sign(s.issuer.header(), &c)).await);
    assert!(reason.contains("iat"), "{reason}");
    // ...and may not be moved ahead to stretch the lifetime from now.
    let mut c = claims("auth0|future-iat");
    c["iat"] = json!(now() + 3600);
    c["exp"] = json!(now() + 3600 + 600);
    let reason = invalid(s.verifier.verify(&s.issuer.sign(s.issuer.header(), &c)).await);
    assert!(reason.contains("future"), "{reason}");
    // Exactly a day is fine.
    let mut c = claims("auth0|a-day");
    c["exp"] = json!(c["iat"].as_i64().unwrap() + 86_400);
    assert!(
        s.verifier
            .verify(&s.issuer.sign(s.issuer.header(), &c))
            .await
            .is_ok()
    );

    // Without a cap, neither the lifetime nor iat is checked.
    let issuer = DevIssuer::builtin(ISS, AUD);
    let (_jwks, addr) = start_jwks(issuer.jwks_json().to_string()).await;
    let mut config = JwksConfig::new(format!("http://{addr}/.well-known/jwks.json"), ISS, AUD);
    config.max_lifetime = None;
    let uncapped = JwksVerifier::new(config).unwrap();
    let mut c = claims("auth0|forever");
    c["exp"] = json!(999_999_999_999_i64);
    c.as_object_mut().unwrap().remove("iat");
    assert!(uncapped.verify(&issuer.sign(issuer.header(), &c)).await.is_ok());
}

#[tokio::test]
async fn alg_none_and_hs256_with_the_public_key_are_refused() {
    let s = setup().await;
    let body = URL_SAFE_NO_PAD.encode(claims("auth0|attacker").to_string());
    for header in [
        json!({"alg": "none", "typ": "JWT", "kid": s.issuer.kid()}),
        json!({"alg": "None", "typ": "JWT"}),
    ] {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        for token in [format!("{h}.{body}."), format!("{h}.{body}")] {
            invalid(s.verifier.verify(&token).await);
        }
    }
    // HS256 keyed with the public JWKS document, the classic confusion attack.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(s.issuer.kid().to_string());
    let key = EncodingKey::from_secret(s.issuer.jwks_json().as_bytes());
    let token = jsonwebtoken::encode(&header, &claims("auth0|attacker"), &key).unwrap();
    let reason = invalid(s.verifier.verify(&token).await);
    assert!(reason.contains("HS256"), "{reason}");
}

#[tokio::test]
async fn a_forged_signature_and_a_foreign_jku_are_refused() {
    let s = setup().await;
    s.verifier.refresh().await.unwrap();
    // Another key, claiming our key id.
    let forger = DevIssuer::from_pem(OTHER_KEY, s.issuer.kid(), ISS, AUD).unwrap();
    let forged = forger.token(&DevTokenClaims::viewer("auth0|victim"));
    invalid(s.verifier.verify(&forged).await);
    // The forger serves its own JWKS and points jku/x5u at it: never followed.
    let (foreign, addr) = start_jwks(forger.jwks_json().to_string()).await;
    let mut header = forger.header();
    header.jku = Some(format!("http://{addr}/.well-known/jwks.json"));
    header.x5u = Some(format!("http://{addr}/cert.pem"));
    let token = forger.sign(header, &claims("auth0|victim"));
    invalid(s.verifier.verify(&token).await);
    assert_eq!(foreign.fetches.load(Ordering::SeqCst), 0, "jku never fetched");
    // A tampered payload under a genuine signature.
    let genuine = s.issuer.token(&DevTokenClaims::viewer("auth0|alice"));
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = URL_SAFE_NO_PAD.encode(claims("auth0|mallory").to_string());
    invalid(
        s.verifier
            .verify(&format!("{}.{}.{}", parts[0], tampered, parts[2]))
            .await,
    );
}

#[tokio::test]
async fn a_crit_header_is_refused() {
    let s = setup().await;
    let mut header = s.issuer.header();
    header.crit = Some(vec!["exp".into()]);
    let token = s.issuer.sign(header, &claims("auth0|x"));
    let reason = invalid(s.verifier.verify(&token).await);
    assert!(reason.contains("critical"), "{reason}");
}

#[tokio::test]
async fn unknown_kids_refetch_once_per_interval_with_single_flight() {
    let s = setup_with(Duration::from_millis(500)).await;
    s.verifier.refresh().await.unwrap();
    assert_eq!(s.jwks.fetches.load(Ordering::SeqCst), 1);
    let flood = |round: usize| {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let mut header = s.issuer.header();
            header.kid = Some(format!("made-up-{round}-{i}"));
            let token = s.issuer.sign(header, &claims("auth0|x"));
            let v = s.verifier.clone();
            tasks.push(tokio::spawn(async move { v.verify(&token).await }));
        }
        tasks
    };
    // Within the interval of the last fetch: no fetch at all.
    for t in flood(0) {
        invalid(t.await.unwrap());
    }
    assert_eq!(
        s.jwks.fetches.load(Ordering::SeqCst),
        1,
        "no refetch within the interval"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 50 concurrent tokens with made-up key ids, after the interval.
    let tasks = flood(1);
    for t in tasks {
        let reason = invalid(t.await.unwrap());
        assert!(reason.contains("unknown key id"), "{reason}");
    }
    assert_eq!(
        s.jwks.fetches.load(Ordering::SeqCst),
        2,
        "one refetch for all of them"
    );
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_first_sight() {
    let s = setup_with(Duration::ZERO).await;
    s.verifier.refresh().await.unwrap();
    let rotated = DevIssuer::from_pem(OTHER_KEY, "rotated-2", ISS, AUD).unwrap();
    let token = rotated.token(&DevTokenClaims::viewer("auth0|r"));
    invalid(s.verifier.verify(&token).await);
    // The provider publishes the new key next to the old one.
    let mut keys: Value = serde_json::from_str(s.issuer.jwks_json()).unwrap();
    let new: Value = serde_json::from_str(rotated.jwks_json()).unwrap();
    keys["keys"].as_array_mut().unwrap().push(new["keys"][0].clone());
    *s.jwks.document.write().unwrap() = keys.to_string();
    assert_eq!(
        s.verifier.verify(&token).await.unwrap().subject.as_str(),
        "auth0|r"
    );
    assert_eq!(s.verifier.key_count(), 2);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_jwks_endpoint_is_down() {
    let s = setup_with(Duration::ZERO).await;
    s.verifier.refresh().await.unwrap();
    s.jwks.up.store(false, Ordering::SeqCst);
    assert!(s.verifier.refresh().await.is_err());
    let token = s.issuer.token(&DevTokenClaims::viewer("auth0|steady"));
    assert!(s.verifier.verify(&token).await.is_ok());
    assert_eq!(s.verifier.key_count(), 1);
}

#[tokio::test]
async fn without_any_key_the_verifier_says_keys_are_unavailable() {
    let s = setup_with(Duration::ZERO).await;
    s.jwks.up.store(false, Ordering::SeqCst);
    let token = s.issuer.token(&DevTokenClaims::viewer("auth0|early"));
    assert!(matches!(
        s.verifier.verify(&token).await,
        Err(TokenError::KeysUnavailable(_))
    ));
    // The endpoint comes back: the next token fetches the keys itself.
    s.jwks.up.store(true, Ordering::SeqCst);
    assert!(s.verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn keys_for_other_uses_or_algorithms_are_ignored() {
    let s = setup().await;
    let mut doc: Value = serde_json::from_str(s.issuer.jwks_json()).unwrap();
    doc["keys"][0]["use"] = json!("enc");
    *s.jwks.document.write().unwrap() = doc.to_string();
    assert!(s.verifier.refresh().await.is_err(), "no usable key");
    doc["keys"][0]["use"] = json!("sig");
    doc["keys"][0]["alg"] = json!("RS512");
    *s.jwks.document.write().unwrap() = doc.to_string();
    assert!(s.verifier.refresh().await.is_err(), "no usable key");
    assert_eq!(s.verifier.key_count(), 0);
}
