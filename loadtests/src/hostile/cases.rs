//! The cases. Each sends one hostile request (or a burst) and records the
//! answer as `STATUS CODE`; `Suite::record` adds the no-change check.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use livevote_domain::{CandidateCount, CandidateId, ElectionId, VoterId};
use livevote_ports::{LiveTallies, VoteDedup};

use super::Suite;

/// Viewers the cases vote as.
pub const VIEWERS: usize = 96;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `STATUS CODE` of an answer (`CODE` from the error body, `-` when none).
async fn describe(response: Result<reqwest::Response, reqwest::Error>) -> String {
    match response {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            format!("{status} {}", body["code"].as_str().unwrap_or("-"))
        }
        Err(e) if e.is_timeout() => "timeout".to_owned(),
        Err(_) => "connection closed".to_owned(),
    }
}

/// POST /api/v1/votes with these headers and body.
async fn post(s: &Suite, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> String {
    let mut request = s.api.http.post(s.votes_url()).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    describe(request.send().await).await
}

/// A JSON vote with `token` as the bearer.
async fn vote_with(s: &Suite, token: &str) -> String {
    let auth = format!("Bearer {token}");
    post(
        s,
        &[("content-type", "application/json"), ("authorization", &auth)],
        s.ballot(),
    )
    .await
}

/// A JSON vote with this body, by a viewer no earlier case used.
async fn vote_body(s: &mut Suite, body: impl Into<reqwest::Body>) -> String {
    let auth = format!("Bearer {}", s.fresh_token());
    post(
        s,
        &[("content-type", "application/json"), ("authorization", &auth)],
        body,
    )
    .await
}

/// Claims like the issuer's, altered by `change`.
fn claims(s: &Suite, change: impl FnOnce(&mut Value)) -> Value {
    let now = livevote_auth0::unix_now();
    let mut c = json!({
        "iss": s.issuer.issuer(), "aud": s.issuer.audience(), "sub": s.voter(1),
        "iat": now, "nbf": now, "exp": now + 600, "permissions": [],
    });
    change(&mut c);
    c
}

/// A token with a hand-made header (`alg` as given) and no valid signature.
fn unsigned(s: &Suite, alg: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": s.issuer.kid()});
    let body = claims(s, |_| {});
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(body.to_string().as_bytes())
    )
}

/// What came back on a raw connection.
struct Exchange {
    bytes: Vec<u8>,
    /// The server closed the connection (or, with `first_only`, the first answer was complete)
    /// before the wait ran out.
    ended: bool,
}

/// Writes `bytes` to `addr` and reads for at most `wait`: until the server
/// closes, or with `first_only` until the first answer's JSON body is in.
async fn exchange(
    addr: &str,
    bytes: &[u8],
    wait: Duration,
    first_only: bool,
) -> Result<Exchange, &'static str> {
    let mut stream = TcpStream::connect(addr).await.map_err(|_| "cannot connect")?;
    stream.write_all(bytes).await.map_err(|_| "connection closed")?;
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
            if first_only && answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await
    .is_ok();
    Ok(Exchange { bytes: answer, ended })
}

/// `STATUS CODE` of the first answer in `text` (`-` when it has no error code).
fn status_code(text: &str) -> String {
    let status = text.split(' ').nth(1).unwrap_or("none");
    let code = text
        .split("\"code\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("-");
    format!("{status} {code}")
}

/// Raw bytes to the ingestion port; the status line and error code of the answer.
async fn raw(addr: String, bytes: Vec<u8>, wait: Duration) -> String {
    match exchange(&addr, &bytes, wait, true).await {
        Err(what) => what.to_owned(),
        Ok(x) if x.bytes.is_empty() && !x.ended => "no answer".to_owned(),
        Ok(x) if x.bytes.is_empty() => "connection closed".to_owned(),
        Ok(x) => status_code(&String::from_utf8_lossy(&x.bytes)),
    }
}

/// Sends `bytes` and reads until the server closes or 3 s pass: the first
/// answer's `STATUS CODE`, how many answers came, and whether it closed.
async fn answers(addr: String, bytes: Vec<u8>) -> String {
    match exchange(&addr, &bytes, Duration::from_secs(3), false).await {
        Err(what) => what.to_owned(),
        Ok(x) => {
            let text = String::from_utf8_lossy(&x.bytes);
            let count = text.matches("HTTP/1.1 ").count();
            format!(
                "{}, {count} answer{}, {}",
                status_code(&text),
                if count == 1 { "" } else { "s" },
                if x.ended { "closed" } else { "kept open" }
            )
        }
    }
}

/// How many times the local issuer served its JWKS (`/stats` of `livevote issuer serve`).
async fn jwks_fetches(s: &Suite) -> Option<u64> {
    let url = std::env::var("LIVEVOTE_ISSUER_URL").ok()?;
    let doc: Value = s
        .api
        .http
        .get(format!("{url}/stats"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    doc["jwksFetches"].as_u64()
}

/// Sends `n` votes with `token`, 64 at a time; `401 INVALID_TOKEN xN` when all got that.
async fn unknown_kid_burst(s: &Suite, token: &str, n: usize) -> String {
    let mut tasks = tokio::task::JoinSet::new();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for _ in 0..n {
        let (http, url, body, auth, limit) = (
            s.api.http.clone(),
            s.votes_url(),
            s.ballot(),
            format!("Bearer {token}"),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            describe(
                http.post(url)
                    .header("content-type", "application/json")
                    .header("authorization", auth)
                    .body(body)
                    .send()
                    .await,
            )
            .await
        });
    }
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    while let Some(done) = tasks.join_next().await {
        *seen
            .entry(done.unwrap_or_else(|e| format!("task failed: {e}")))
            .or_default() += 1;
    }
    seen.iter()
        .map(|(o, k)| format!("{o} x{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// host:port of the ingestion service.
fn host(s: &Suite) -> String {
    s.api.ingestion_url.trim_start_matches("http://").to_owned()
}

fn request_head(s: &mut Suite, extra: &str, body: &str) -> Vec<u8> {
    let host = s.api.ingestion_url.trim_start_matches("http://").to_owned();
    format!(
        "POST /api/v1/votes HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n{extra}\r\n{body}",
        s.fresh_token()
    )
    .into_bytes()
}

pub async fn run_all(s: &mut Suite, only: Option<&str>) -> anyhow::Result<()> {
    macro_rules! case {
        ($name:expr, $expected:expr, $observed:expr) => {
            if only.is_none_or(|o| $name.contains(o)) {
                let observed = $observed;
                s.record($name, $expected, observed).await;
            }
        };
    }
    let json_ct = ("content-type", "application/json");
    let ballot = s.ballot();

    // Tokens.
    case!(
        "token: missing",
        "401 INVALID_TOKEN",
        post(s, &[json_ct], ballot.clone()).await
    );
    case!(
        "token: Basic scheme",
        "401 INVALID_TOKEN",
        post(
            s,
            &[json_ct, ("authorization", "Basic dXNlcjpwYXNz")],
            ballot.clone()
        )
        .await
    );
    case!(
        "token: empty bearer",
        "401 INVALID_TOKEN",
        post(s, &[json_ct, ("authorization", "Bearer ")], ballot.clone()).await
    );
    let good = format!("Bearer {}", s.viewer_token(1));
    case!(
        "token: two Authorization headers",
        "401 INVALID_TOKEN",
        post(
            s,
            &[json_ct, ("authorization", &good), ("authorization", &good)],
            ballot.clone()
        )
        .await
    );
    case!(
        "token: in the URL only",
        "401 INVALID_TOKEN",
        describe(
            s.api
                .http
                .post(format!("{}?access_token={}", s.votes_url(), s.viewer_token(1)))
                .header("content-type", "application/json")
                .body(ballot.clone())
                .send()
                .await
        )
        .await
    );
    for alg in ["none", "None", "NONE"] {
        let name: &'static str = match alg {
            "none" => "token: alg none",
            "None" => "token: alg None",
            _ => "token: alg NONE",
        };
        case!(name, "401 INVALID_TOKEN", vote_with(s, &unsigned(s, alg)).await);
    }
    // HS256 "signed" with the public key material (the JWKS modulus) as the HMAC secret.
    let jwks: Value = serde_json::from_str(s.issuer.jwks_json())?;
    let n = jwks["keys"][0]["n"].as_str().unwrap_or("").to_owned();
    let hs = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(s.issuer.kid().to_owned());
        jsonwebtoken::encode(
            &h,
            &claims(s, |_| {}),
            &jsonwebtoken::EncodingKey::from_secret(n.as_bytes()),
        )?
    };
    case!(
        "token: HS256 keyed with the public key",
        "401 INVALID_TOKEN",
        vote_with(s, &hs).await
    );
    let expired = s.issuer.sign(
        s.issuer.header(),
        &claims(s, |c| {
            c["exp"] = json!(1_000_000);
            c["nbf"] = json!(999_000);
            c["iat"] = json!(999_000);
        }),
    );
    case!(
        "token: expired",
        "401 TOKEN_EXPIRED",
        vote_with(s, &expired).await
    );
    let future = s.issuer.sign(
        s.issuer.header(),
        &claims(s, |c| {
            c["nbf"] = json!(livevote_auth0::unix_now() + 3600);
        }),
    );
    case!(
        "token: nbf in the future",
        "401 INVALID_TOKEN",
        vote_with(s, &future).await
    );
    for (name, change) in [
        (
            "token: missing iss",
            Box::new(|c: &mut Value| {
                c.as_object_mut().map(|o| o.remove("iss"));
            }) as Box<dyn Fn(&mut Value)>,
        ),
        (
            "token: wrong iss",
            Box::new(|c: &mut Value| c["iss"] = json!("https://evil.example/")),
        ),
        (
            "token: missing aud",
            Box::new(|c: &mut Value| {
                c.as_object_mut().map(|o| o.remove("aud"));
            }),
        ),
        (
            "token: wrong aud",
            Box::new(|c: &mut Value| c["aud"] = json!("https://other.api")),
        ),
        (
            "token: missing sub",
            Box::new(|c: &mut Value| {
                c.as_object_mut().map(|o| o.remove("sub"));
            }),
        ),
        ("token: empty sub", Box::new(|c: &mut Value| c["sub"] = json!(""))),
    ] {
        let t = s.issuer.sign(s.issuer.header(), &claims(s, |c| change(c)));
        case!(name, "401 INVALID_TOKEN", vote_with(s, &t).await);
    }
    // The lifetime cap (LIVEVOTE_JWT_MAX_LIFETIME_SECS, a day by default).
    let forever = s.issuer.sign(
        s.issuer.header(),
        &claims(s, |c| c["exp"] = json!(999_999_999_999_i64)),
    );
    case!(
        "token: exp in the year 33658",
        "401 INVALID_TOKEN",
        vote_with(s, &forever).await
    );
    let no_iat = s.issuer.sign(
        s.issuer.header(),
        &claims(s, |c| {
            c.as_object_mut().map(|o| o.remove("iat"));
        }),
    );
    case!("token: no iat", "401 INVALID_TOKEN", vote_with(s, &no_iat).await);
    // Headers jsonwebtoken cannot write: assembled by hand and signed with the real key is not
    // possible here, so these carry the real signature of a different header (tampering).
    let genuine = s.viewer_token(1);
    let mut parts: Vec<&str> = genuine.split('.').collect();
    for (name, header) in [
        (
            "token: crit header",
            json!({"alg": "RS256", "kid": s.issuer.kid(), "crit": ["exp"], "exp": 1}),
        ),
        (
            "token: jku elsewhere",
            json!({"alg": "RS256", "kid": s.issuer.kid(), "jku": "https://evil.example/jwks.json"}),
        ),
        (
            "token: x5u elsewhere",
            json!({"alg": "RS256", "kid": s.issuer.kid(), "x5u": "https://evil.example/cert.pem"}),
        ),
    ] {
        let forged = b64(header.to_string().as_bytes());
        parts[0] = &forged;
        let t = parts.join(".");
        case!(name, "401 INVALID_TOKEN", vote_with(s, &t).await);
        parts = genuine.split('.').collect();
    }
    let mut truncated = genuine.clone();
    truncated.truncate(genuine.len() - 10);
    case!(
        "token: truncated signature",
        "401 INVALID_TOKEN",
        vote_with(s, &truncated).await
    );
    case!(
        "token: padded segments",
        "401 INVALID_TOKEN",
        vote_with(s, &genuine.replace('.', "==.")).await
    );
    case!(
        "token: two segments",
        "401 INVALID_TOKEN",
        vote_with(s, &parts[..2].join(".")).await
    );
    // 10,000 tokens with a key id the JWKS does not have: all refused, and the services'
    // JWKS refetches stay throttled (at most one per 5 s per service, plus one at the start).
    let mut unknown_kid = s.issuer.header();
    unknown_kid.kid = Some("rotated-away-1".into());
    let t = s.issuer.sign(unknown_kid, &claims(s, |_| {}));
    let fetches_before = jwks_fetches(s).await;
    let began = std::time::Instant::now();
    let burst = unknown_kid_burst(s, &t, 10_000).await;
    let secs = began.elapsed().as_secs_f64();
    let fetched = jwks_fetches(s).await.zip(fetches_before).map(|(a, b)| a - b);
    // Two services verify tokens (ingestion, results); only ingestion sees this burst.
    let allowed = 1 + (secs / 5.0).ceil() as u64;
    case!(
        "token: unknown kid x10,000, JWKS refetches throttled",
        "401 INVALID_TOKEN x10000, refetches throttled",
        match fetched {
            Some(n) if n <= allowed => format!("{burst}, refetches throttled"),
            Some(n) => format!("{burst}, {n} JWKS fetches in {secs:.1} s (more than {allowed})"),
            None => format!("{burst}, JWKS fetch count unknown (LIVEVOTE_ISSUER_URL)"),
        }
    );
    let voter = s.viewer_token(1);
    case!(
        "token: viewer on admin",
        "403 FORBIDDEN",
        describe(
            s.api
                .http
                .get(format!("{}/api/v1/admin/elections", s.api.results_url))
                .bearer_auth(&voter)
                .send()
                .await
        )
        .await
    );
    case!(
        "token: viewer on audit",
        "403 FORBIDDEN",
        describe(
            s.api
                .http
                .get(format!("{}/api/v1/audit/reconciliation", s.api.results_url))
                .bearer_auth(&voter)
                .send()
                .await
        )
        .await
    );

    // Bodies.
    let auth = format!("Bearer {}", s.viewer_token(0));
    case!(
        "body: text/plain",
        "415 UNSUPPORTED_MEDIA_TYPE",
        post(
            s,
            &[("content-type", "text/plain"), ("authorization", &auth)],
            ballot.clone()
        )
        .await
    );
    case!(
        "body: no content type",
        "415 UNSUPPORTED_MEDIA_TYPE",
        post(s, &[("authorization", &auth)], ballot.clone()).await
    );
    let big = format!(
        r#"{{"electionId":"{}","candidateId":"{}","pad":"{}"}}"#,
        s.open.0,
        s.open.1[0],
        "x".repeat(8192)
    );
    case!(
        "body: over the size limit",
        "413 PAYLOAD_TOO_LARGE",
        vote_body(s, big.clone()).await
    );
    let chunked: String = big
        .as_bytes()
        .chunks(512)
        .map(|c| format!("{:x}\r\n{}\r\n", c.len(), String::from_utf8_lossy(c)))
        .collect();
    case!(
        "body: over the limit, chunked",
        "413 PAYLOAD_TOO_LARGE",
        raw(
            host(s),
            request_head(
                s,
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                &format!("{chunked}0\r\n\r\n")
            ),
            Duration::from_secs(3)
        )
        .await
    );
    let expect_head = "Content-Type: application/json\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n";
    case!(
        "body: Expect 100-continue over the limit",
        "413 PAYLOAD_TOO_LARGE",
        raw(host(s), request_head(s, expect_head, ""), Duration::from_secs(3)).await
    );
    case!("body: empty", "400 INVALID_REQUEST", vote_body(s, "").await);
    case!(
        "body: top-level array",
        "400 INVALID_REQUEST",
        vote_body(s, format!("[{ballot}]")).await
    );
    case!(
        "body: trailing garbage",
        "400 INVALID_REQUEST",
        vote_body(s, format!("{ballot}xx")).await
    );
    case!(
        "body: 10,000-deep nesting",
        "413 PAYLOAD_TOO_LARGE",
        vote_body(s, format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))).await
    );
    case!(
        "body: 2,000-deep nesting (under the size limit)",
        "400 INVALID_REQUEST",
        vote_body(s, format!("{}{}", "{\"a\":".repeat(600), "}".repeat(600))).await
    );
    case!(
        "body: duplicate keys",
        "400 INVALID_REQUEST",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}","candidateId":"{2}"}}"#,
                s.open.0, s.open.1[0], s.open.1[1]
            )
        )
        .await
    );
    case!(
        "body: unknown field",
        "400 INVALID_REQUEST",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}","weight":5}}"#,
                s.open.0, s.open.1[0]
            )
        )
        .await
    );
    case!(
        "body: voterId field",
        "400 INVALID_REQUEST",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}","voterId":"someone-else"}}"#,
                s.open.0, s.open.1[0]
            )
        )
        .await
    );
    case!(
        "body: ids not UUIDs",
        "400 INVALID_REQUEST",
        vote_body(s, r#"{"electionId":"1 OR 1=1","candidateId":"../../etc"}"#).await
    );
    case!(
        "body: NUL byte",
        "400 INVALID_REQUEST",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}\u0000"}}"#,
                s.open.0, s.open.1[0]
            )
        )
        .await
    );
    case!(
        "body: control character in captcha",
        "400 INVALID_REQUEST",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}","captchaToken":"a\u0007b"}}"#,
                s.open.0, s.open.1[0]
            )
        )
        .await
    );
    case!(
        "body: 2,049-char captcha token",
        "400 INVALID_REQUEST",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}","captchaToken":"{2}"}}"#,
                s.open.0,
                s.open.1[0],
                "a".repeat(2049)
            )
        )
        .await
    );
    case!(
        "body: unknown election",
        "404 ELECTION_NOT_FOUND",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}"}}"#,
                uuid::Uuid::new_v4(),
                s.open.1[0]
            )
        )
        .await
    );
    case!(
        "body: unknown candidate",
        "422 CANDIDATE_NOT_FOUND",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}"}}"#,
                s.open.0,
                uuid::Uuid::new_v4()
            )
        )
        .await
    );
    case!(
        "body: closed election",
        "409 ELECTION_CLOSED",
        vote_body(
            s,
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}"}}"#,
                s.closed.0, s.closed.1[0]
            )
        )
        .await
    );

    // Transport.
    let addr = host(s);
    case!(
        "transport: slowloris headers",
        "connection closed",
        raw(
            host(s),
            format!("POST /api/v1/votes HTTP/1.1\r\nHost: {addr}\r\nX-Slow: 1\r\n").into_bytes(),
            Duration::from_secs(8)
        )
        .await
    );
    let slow_body = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n",
        ballot.len() + 50
    );
    case!(
        "transport: slow body",
        "408 REQUEST_TIMEOUT",
        raw(
            host(s),
            request_head(s, &slow_body, &ballot[..10]),
            Duration::from_secs(15)
        )
        .await
    );
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    case!(
        "transport: 120 headers",
        "431 -",
        raw(
            host(s),
            request_head(
                s,
                &format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n{many}",
                    ballot.len()
                ),
                &ballot
            ),
            Duration::from_secs(3)
        )
        .await
    );
    // Smuggling: a proxy reading Content-Length sees one request; a server reading
    // Transfer-Encoding sees an empty body and then a second vote on the same connection.
    // The server must frame by Transfer-Encoding alone and close the connection after its
    // answer (RFC 9112, 6.1), so the smuggled vote is never read.
    let auth_s = s.fresh_token();
    let smuggled = format!(
        "POST /api/v1/votes HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {auth_s}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ballot}",
        ballot.len()
    );
    let body = format!("0\r\n\r\n{smuggled}");
    let head = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n",
        body.len()
    );
    case!(
        "transport: Content-Length and Transfer-Encoding (smuggling)",
        "400 INVALID_REQUEST, 1 answer, closed",
        answers(host(s), request_head(s, &head, &body)).await
    );
    for (name, method) in [
        ("transport: GET on votes", reqwest::Method::GET),
        ("transport: PUT on votes", reqwest::Method::PUT),
        ("transport: DELETE on votes", reqwest::Method::DELETE),
    ] {
        case!(
            name,
            "405 METHOD_NOT_ALLOWED",
            describe(
                s.api
                    .http
                    .request(method, s.votes_url())
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(ballot.clone())
                    .send()
                    .await
            )
            .await
        );
    }
    case!(
        "transport: spoofed X-Forwarded-For, closed election",
        "409 ELECTION_CLOSED",
        post(
            s,
            &[
                json_ct,
                ("authorization", &auth),
                ("x-forwarded-for", "1.2.3.4, 5.6.7.8")
            ],
            format!(
                r#"{{"electionId":"{0}","candidateId":"{1}"}}"#,
                s.closed.0, s.closed.1[0]
            )
        )
        .await
    );
    let name = "idempotency: the same key for another candidate";
    if only.is_none_or(|o| name.contains(o)) {
        let observed = key_reused(s).await?;
        s.record(name, "422 IDEMPOTENCY_KEY_REUSED", observed).await;
    }
    let name = "policy: a multi viewer's vote past the limit";
    if only.is_none_or(|o| name.contains(o)) {
        let observed = limit_reached(s).await?;
        s.record(name, "409 VOTE_LIMIT_REACHED", observed).await;
    }
    admin_cases(s, only).await
}

/// A `multi` election of one vote per viewer: the viewer's first vote is
/// taken (counted into the queued-votes baseline, as in [`key_reused`]), the
/// second is refused and changes nothing.
async fn limit_reached(s: &mut Suite) -> anyhow::Result<String> {
    let stamp = chrono::Utc::now().format("%H:%M:%S");
    let (election, candidates) = s
        .api
        .create_election_ids_with(
            &format!("hostile {stamp} (multi)"),
            &["Ada", "Grace"],
            60,
            &livevote_cli::api::PolicyArgs::multi(1),
        )
        .await?;
    s.api.open(&election).await?;
    let auth = format!(
        "Bearer {}",
        s.issuer.token(&livevote_auth0::DevTokenClaims::viewer(
            "hostile|multi-viewer".to_owned()
        ))
    );
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let ballot = |c: &str| format!(r#"{{"electionId":"{election}","candidateId":"{c}"}}"#);
    let first = post(s, &headers, ballot(&candidates[0])).await;
    if !first.starts_with("202") {
        return Ok(format!("the first vote got {first}"));
    }
    if let Some(wrong) = count_one_queued(s).await? {
        return Ok(wrong);
    }
    Ok(post(s, &headers, ballot(&candidates[1])).await)
}

/// Waits for the one vote a case was answered 202 for to be counted as
/// queued (its count may lag the answer by a moment), and adds it to the
/// suite's baseline. `Some` says what was queued instead.
async fn count_one_queued(s: &mut Suite) -> anyhow::Result<Option<String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let queued = s.counter("livevote_published_votes_total").await? - s.published_before;
        if queued == 1.0 {
            s.published_before += 1.0;
            return Ok(None);
        }
        if queued > 1.0 || tokio::time::Instant::now() >= deadline {
            return Ok(Some(format!("the first vote queued {queued} votes")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One vote accepted with an Idempotency-Key, then the same key with the
/// other candidate. The accepted vote is the one change this case makes, so
/// it goes to an election of its own by a viewer outside the suite's, and
/// is counted into the queued-votes baseline once the queue took it; the
/// second request must change nothing, and the viewer's claim must still be
/// the first vote.
async fn key_reused(s: &mut Suite) -> anyhow::Result<String> {
    let stamp = chrono::Utc::now().format("%H:%M:%S");
    let (election, candidates) = s
        .api
        .create_election_ids(&format!("hostile {stamp} (idempotency)"), &["Ada", "Grace"], 60)
        .await?;
    s.api.open(&election).await?;
    let voter = "hostile|idempotency-viewer";
    let auth = format!(
        "Bearer {}",
        s.issuer
            .token(&livevote_auth0::DevTokenClaims::viewer(voter.to_owned()))
    );
    let headers = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("idempotency-key", "hostile-key-1"),
    ];
    let ballot = |c: &str| format!(r#"{{"electionId":"{election}","candidateId":"{c}"}}"#);
    let mut first = s.api.http.post(s.votes_url()).body(ballot(&candidates[0]));
    for (k, v) in headers {
        first = first.header(k, v);
    }
    let first = first.send().await?;
    let status = first.status().as_u16();
    let accepted: Value = first.json().await.unwrap_or(Value::Null);
    let Some(vote_id) = accepted["voteId"]
        .as_str()
        .filter(|_| status == 202)
        .map(str::to_owned)
    else {
        return Ok(format!("the first vote got {status} {}", accepted["code"]));
    };
    // The first vote is queued before its 202; its count may lag the answer by a moment.
    if let Some(wrong) = count_one_queued(s).await? {
        return Ok(wrong);
    }
    let observed = post(s, &headers, ballot(&candidates[1])).await;
    let id = ElectionId::parse(&election).map_err(|e| anyhow::anyhow!("{e}"))?;
    let viewer = VoterId::parse(voter).map_err(|e| anyhow::anyhow!("{e}"))?;
    let held = s.redis.lookup(id, &viewer).await?.map(|c| c.vote_id.to_string());
    if held.as_deref() != Some(vote_id.as_str()) {
        return Ok(format!(
            "{observed}; the claim holds {held:?}, not the first vote {vote_id}"
        ));
    }
    Ok(observed)
}

/// `STATUS CODE` of an answer of the results service.
fn reply(r: &livevote_cli::api::Reply) -> String {
    format!("{} {}", r.status, r.body["code"].as_str().unwrap_or("-"))
}

/// The effective status of an election, as the admin API reads it.
async fn status_of(s: &Suite, id: &str) -> String {
    match s
        .api
        .results(
            reqwest::Method::GET,
            &format!("/api/v1/admin/elections/{id}"),
            None,
        )
        .await
    {
        Ok(r) => r.body["effectiveStatus"].as_str().unwrap_or("?").to_owned(),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Producers' and auditors' endpoints: a live show is not cancelled by one
/// DELETE, and free text cannot turn into a formula in the CSV export.
async fn admin_cases(s: &mut Suite, only: Option<&str>) -> anyhow::Result<()> {
    macro_rules! case {
        ($name:expr, $expected:expr, $observed:expr) => {
            if only.is_none_or(|o| $name.contains(o)) {
                let observed = $observed;
                s.record($name, $expected, observed).await;
            }
        };
    }
    // A live election of its own holding 440 accepted votes (set in the live tally: the
    // suite's own elections must stay empty).
    let (held, candidates) = s
        .api
        .create_election_ids("hostile: a live show with votes", &["Ada", "Grace"], 60)
        .await?;
    s.api.open(&held).await?;
    let id = ElectionId::parse(&held).map_err(|e| anyhow::anyhow!("{e}"))?;
    let counts = |n: u64| -> anyhow::Result<Vec<CandidateCount>> {
        Ok(vec![CandidateCount {
            candidate_id: CandidateId::parse(&candidates[0]).map_err(|e| anyhow::anyhow!("{e}"))?,
            votes: n,
        }])
    };
    s.redis.replace_counts(id, &counts(440)?).await?;
    let path = format!("/api/v1/admin/elections/{held}");
    let deleted = s.api.results(reqwest::Method::DELETE, &path, None).await?;
    case!(
        "admin: one DELETE of a live election holding votes",
        "409 ELECTION_HAS_VOTES, still ACTIVE",
        format!("{}, still {}", reply(&deleted), status_of(s, &held).await)
    );
    let no_reason = s
        .api
        .results(
            reqwest::Method::PATCH,
            &format!("{path}/status"),
            Some(json!({"status": "CANCELLED"})),
        )
        .await?;
    case!(
        "admin: CANCELLED without a reason",
        "400 INVALID_REQUEST, still ACTIVE",
        format!("{}, still {}", reply(&no_reason), status_of(s, &held).await)
    );
    // Leave nothing behind: cancel it properly and empty its tally.
    s.api
        .results(
            reqwest::Method::PATCH,
            &format!("{path}/status"),
            Some(json!({"status": "CANCELLED", "reason": "hostile-input suite clean-up"})),
        )
        .await?
        .expect(200, "cancelling with a reason")?;
    s.redis.replace_counts(id, &counts(0)?).await?;

    // Vote policies: limits out of range, limits without `multi`, an unknown
    // name, and a policy change once voting started: refused, nothing created.
    let create = |fields: Value| {
        let mut body = json!({
            "title": "hostile: a policy",
            "startsAt": chrono::Utc::now().to_rfc3339(),
            "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            "candidates": [{"name": "Ada"}, {"name": "Grace"}],
        });
        if let (Some(b), Some(f)) = (body.as_object_mut(), fields.as_object()) {
            b.extend(f.clone());
        }
        body
    };
    for (name, fields, expected) in [
        (
            "admin: a multi policy of 0 votes",
            json!({"policy": "multi", "maxVotes": 0}),
            "422 VALIDATION_FAILED",
        ),
        (
            "admin: a multi policy of 101 votes",
            json!({"policy": "multi", "maxVotes": 101}),
            "422 VALIDATION_FAILED",
        ),
        (
            "admin: maxPerCandidate above maxVotes",
            json!({"policy": "multi", "maxVotes": 3, "maxPerCandidate": 4}),
            "422 VALIDATION_FAILED",
        ),
        (
            "admin: maxVotes on a single election",
            json!({"maxVotes": 5}),
            "422 VALIDATION_FAILED",
        ),
        (
            "admin: an unknown policy",
            json!({"policy": "unlimited"}),
            "400 INVALID_REQUEST",
        ),
    ] {
        if only.is_none_or(|o| name.contains(o)) {
            let answer = s
                .api
                .results(
                    reqwest::Method::POST,
                    "/api/v1/admin/elections",
                    Some(create(fields)),
                )
                .await?;
            s.record(name, expected, reply(&answer)).await;
        }
    }
    let (live_show, _) = s
        .api
        .create_election_ids("hostile: a policy locked by voting", &["Ada", "Grace"], 60)
        .await?;
    s.api.open(&live_show).await?;
    let changed = s
        .api
        .results(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/elections/{live_show}"),
            Some(json!({"policy": "multi", "maxVotes": 10})),
        )
        .await?;
    let policy_now = s
        .api
        .results(
            reqwest::Method::GET,
            &format!("/api/v1/admin/elections/{live_show}"),
            None,
        )
        .await?
        .body["policy"]
        .as_str()
        .unwrap_or("single")
        .to_owned();
    case!(
        "admin: a policy change once voting started",
        "409 ELECTION_LOCKED, still single",
        format!("{}, still {policy_now}", reply(&changed))
    );

    // Free text that a spreadsheet would run: accepted as text, defused in the CSV export.
    let names = [
        "=HYPERLINK(\"http://evil.example\")",
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "<script>alert(1)</script>",
    ];
    let (export, _) = s
        .api
        .create_election_ids("<script>alert('title')</script>", &names, 60)
        .await?;
    let csv = s
        .api
        .results(
            reqwest::Method::GET,
            &format!("/api/v1/results/{export}/export.csv"),
            None,
        )
        .await?;
    let text = csv.body.as_str().unwrap_or_default();
    let cells: Vec<&str> = text.lines().skip(1).filter_map(|l| l.split(',').nth(1)).collect();
    let defused = cells.iter().filter(|c| c.starts_with("\"'")).count();
    let script_as_text = cells.contains(&"\"<script>alert(1)</script>\"");
    case!(
        "export: formulas in names are defused in the CSV",
        "200, 4 of 5 names defused, markup kept as quoted text",
        format!(
            "{}, {defused} of {} names defused, markup {}",
            csv.status,
            cells.len(),
            if script_as_text {
                "kept as quoted text"
            } else {
                "changed"
            }
        )
    );
    Ok(())
}
