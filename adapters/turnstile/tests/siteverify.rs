//! The Turnstile verifier against a siteverify endpoint on 127.0.0.1 that
//! answers as Cloudflare documents: pass, fail, our own misconfiguration,
//! errors and timeouts (all but a clean "no" fail closed).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use livevote_ports::{HumanCheck, HumanCheckError, HumanVerdict};
use livevote_turnstile::{NoHumanCheck, TurnstileConfig, TurnstileVerifier};
use serde_json::{Value, json};

const SECRET: &str = "test-secret";

#[derive(Default)]
struct Seen {
    requests: Vec<Value>,
}

async fn siteverify(State(seen): State<Arc<Mutex<Seen>>>, Json(body): Json<Value>) -> Response {
    seen.lock().unwrap().requests.push(body.clone());
    if body["secret"] != SECRET {
        return Json(json!({"success": false, "error-codes": ["invalid-input-secret"]})).into_response();
    }
    match body["response"].as_str().unwrap_or("") {
        "human" => Json(json!({"success": true, "hostname": "localhost"})).into_response(),
        "robot" => Json(json!({"success": false, "error-codes": ["invalid-input-response"]})).into_response(),
        "reused" => Json(json!({"success": false, "error-codes": ["timeout-or-duplicate"]})).into_response(),
        "cf-broken" => Json(json!({"success": false, "error-codes": ["internal-error"]})).into_response(),
        "http-500" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "garbage" => "<html>not json</html>".into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(json!({"success": true})).into_response()
        }
        _ => Json(json!({"success": false, "error-codes": ["invalid-input-response"]})).into_response(),
    }
}

async fn start() -> (Arc<Mutex<Seen>>, SocketAddr) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/turnstile/v0/siteverify", post(siteverify))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, addr)
}

fn verifier(addr: SocketAddr, secret: &str) -> TurnstileVerifier {
    TurnstileVerifier::new(TurnstileConfig {
        siteverify_url: format!("http://{addr}/turnstile/v0/siteverify"),
        secret: secret.into(),
        timeout: Duration::from_millis(500),
    })
    .unwrap()
}

#[tokio::test]
async fn human_and_robot_answers_and_the_client_ip_is_passed_on() {
    let (seen, addr) = start().await;
    let v = verifier(addr, SECRET);
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    assert_eq!(v.verify("human", Some(ip)).await, Ok(HumanVerdict::Human));
    assert_eq!(v.verify("robot", None).await, Ok(HumanVerdict::NotHuman));
    assert_eq!(v.verify("reused", None).await, Ok(HumanVerdict::NotHuman));
    let requests = &seen.lock().unwrap().requests;
    assert_eq!(requests[0]["remoteip"], "203.0.113.7");
    assert_eq!(requests[0]["secret"], SECRET);
    assert!(requests[1].get("remoteip").is_none());
}

#[tokio::test]
async fn oversized_or_empty_tokens_are_refused_without_a_call() {
    let (seen, addr) = start().await;
    let v = verifier(addr, SECRET);
    assert_eq!(
        v.verify(&"h".repeat(2049), None).await,
        Ok(HumanVerdict::NotHuman)
    );
    assert_eq!(v.verify("", None).await, Ok(HumanVerdict::NotHuman));
    assert!(seen.lock().unwrap().requests.is_empty());
}

#[tokio::test]
async fn every_failure_that_is_not_a_clean_no_fails_closed() {
    let (_, addr) = start().await;
    let v = verifier(addr, SECRET);
    for token in ["cf-broken", "http-500", "garbage", "slow"] {
        assert!(
            matches!(v.verify(token, None).await, Err(HumanCheckError::Unavailable(_))),
            "{token}"
        );
    }
    // Our own secret is wrong: not the viewer's fault, and never a pass.
    let misconfigured = verifier(addr, "wrong-secret");
    assert!(matches!(
        misconfigured.verify("human", None).await,
        Err(HumanCheckError::Unavailable(_))
    ));
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    assert!(matches!(
        verifier(closed, SECRET).verify("human", None).await,
        Err(HumanCheckError::Unavailable(_))
    ));
    assert!(matches!(
        NoHumanCheck.verify("human", None).await,
        Err(HumanCheckError::Unavailable(_))
    ));
}
