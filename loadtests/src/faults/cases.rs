//! The fault cases. Each runs on a stack of its own while `livevote-load`
//! sends votes, breaks one thing, and passes only if the load generator's
//! exact verdict is clean afterwards (the two negative controls pass only
//! if the verdict reports the loss they cause).

use std::time::{Duration, Instant};

use anyhow::Context;
use livevote_cli::api::{Api, ApiArgs};
use livevote_cli::issuer::IssuerArgs;
use serde_json::{Value, json};

use super::{Harness, Stack};

/// (case, what must happen).
pub const ALL: &[(&str, &str)] = &[
    (
        "crash: ingestion after claim, before send",
        "dies, restarted; verdict clean",
    ),
    (
        "crash: ingestion after queue ack, before confirm",
        "dies, restarted; verdict clean",
    ),
    (
        "crash: ingestion after confirm, before 202",
        "dies, restarted; verdict clean",
    ),
    (
        "crash: processor after receive, before commit",
        "dies, restarted; verdict clean",
    ),
    (
        "crash: processor after commit, before delete",
        "dies, restarted; verdict clean",
    ),
    (
        "SIGKILL ingestion x3 at random moments",
        "restarted each time; verdict clean",
    ),
    (
        "SIGKILL processor x3 at random moments",
        "restarted each time; verdict clean",
    ),
    (
        "SIGKILL results x3 at random moments",
        "restarted each time; verdict clean",
    ),
    (
        "SIGSTOP processor 15 s (visibility 10 s)",
        "redelivered, stored once; verdict clean",
    ),
    ("PostgreSQL stopped 30 s", "votes still accepted; verdict clean"),
    ("Redis stopped 10 s", "503 while down; verdict clean"),
    (
        "Redis restarted empty",
        "no viewer twice; rebuild = PostgreSQL; verify clean",
    ),
    (
        "SQS endpoint unreachable 30 s (SIGSTOP)",
        "503 while down; verdict clean",
    ),
    ("poison messages x5 injected", "all 5 in the DLQ; verdict clean"),
    (
        "every message delivered 1-20 times",
        "copies ignored; verdict clean",
    ),
    (
        "ingestion clock +5 min",
        "host refuses votes (503, not ready); verdict clean",
    ),
    (
        "ingestion clock -5 min",
        "host refuses votes (503, not ready); verdict clean",
    ),
    (
        "close during 600 votes/s",
        "202 only before the end; verdict clean",
    ),
    (
        "JWKS endpoint down",
        "cached key accepted; new kid 401; verdict clean",
    ),
    ("CAPTCHA verifier down", "503, nothing claimed or stored"),
    (
        "CAPTCHA verifier slow (never answers)",
        "503, nothing claimed or stored",
    ),
    (
        "100,000 distinct client IPs",
        "limiter bounded; RSS growth < 64 MiB",
    ),
    (
        "multi: crash ingestion after queue ack, before confirm",
        "dies, restarted; no viewer over 3 rows; verdict clean",
    ),
    (
        "multi: crash processor after commit, before delete",
        "dies, restarted; no viewer over 3 rows; verdict clean",
    ),
    (
        "multi: Redis restarted empty",
        "no viewer over 3 rows; rebuild = PostgreSQL; verify clean",
    ),
    (
        "changeable: crash processor after commit, before delete",
        "dies, restarted; current = newest 202; verdict clean",
    ),
    (
        "changeable: Redis restarted empty",
        "current = newest stored 202; rebuild = PostgreSQL; verify clean",
    ),
    (
        "NEGATIVE: PostgreSQL synchronous_commit=off, SIGKILL",
        "verdict reports the loss",
    ),
    (
        "NEGATIVE: SQS endpoint restarted, queue lost",
        "verdict reports the loss",
    ),
];

type Observed = (String, bool);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A pseudo-random fraction in [0, 1) from the clock: kill moments differ per run.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// Brings up a stack for the case (processes started now get `env`), runs
/// `body`, and brings the stack down whatever happened.
async fn in_stack(
    h: &mut Harness,
    name: &str,
    queue: (u64, u32),
    env: &[(&str, &str)],
    body: impl AsyncFnOnce(&mut Harness, &Stack) -> anyhow::Result<Observed>,
) -> anyhow::Result<Observed> {
    let stack = h.stack(name, queue)?;
    let result = match stack.up(h, env).await {
        Ok(()) => body(h, &stack).await,
        Err(e) => Err(e),
    };
    if let Err(e) = stack.down(h).await {
        eprintln!("faults: {name}: stack down: {e:#}");
    }
    result
}

pub async fn run(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    let n = ALL.iter().position(|(c, _)| *c == case).context("unknown case")?;
    match n {
        0 => crash(h, case, "ingestion", "ingestion-after-claim=300*off->return", &[]).await,
        1 => {
            crash(
                h,
                case,
                "ingestion",
                "ingestion-after-publish=300*off->return",
                &[],
            )
            .await
        }
        2 => {
            crash(
                h,
                case,
                "ingestion",
                "ingestion-after-confirm=300*off->return",
                &[],
            )
            .await
        }
        3 => {
            crash(
                h,
                case,
                "processor",
                "processor-after-receive=40*off->return",
                &[],
            )
            .await
        }
        4 => crash(h, case, "processor", "processor-after-commit=40*off->return", &[]).await,
        5 => sigkill(h, case, "ingestion").await,
        6 => sigkill(h, case, "processor").await,
        7 => sigkill(h, case, "results").await,
        8 => sigstop_processor(h, case).await,
        9 => postgres_stopped(h, case).await,
        10 => redis_stopped(h, case).await,
        11 => redis_emptied(h, case, &[], "no viewer has two rows").await,
        12 => sqs_unreachable(h, case).await,
        13 => poison(h, case).await,
        14 => redelivered(h, case).await,
        15 => skew(h, case, "300").await,
        16 => skew(h, case, "-300").await,
        17 => close_boundary(h, case).await,
        18 => jwks_down(h, case).await,
        19 => captcha(h, case, false).await,
        20 => captcha(h, case, true).await,
        21 => many_ips(h, case).await,
        22 => {
            crash(
                h,
                case,
                "ingestion",
                "ingestion-after-publish=300*off->return",
                MULTI,
            )
            .await
        }
        23 => {
            crash(
                h,
                case,
                "processor",
                "processor-after-commit=40*off->return",
                MULTI,
            )
            .await
        }
        24 => redis_emptied(h, case, MULTI, "no viewer has more than 3 rows").await,
        25 => {
            crash(
                h,
                case,
                "processor",
                "processor-after-commit=40*off->return",
                CHANGEABLE,
            )
            .await
        }
        26 => redis_emptied(h, case, CHANGEABLE, "every change is its own row").await,
        27 => negative_async_commit(h, case).await,
        28 => negative_queue_lost(h, case).await,
        _ => anyhow::bail!("case {case} has no body"),
    }
}

/// The load of the vote-policy cases: viewers who come back often, so that
/// limits are met (`multi`) and votes are changed (`changeable`).
const MULTI: &[&str] = &["--policy", "multi", "--max-votes", "3"];
const CHANGEABLE: &[&str] = &["--policy", "changeable"];

/// A crash window: the failpoint kills `service` mid-load; it is restarted.
/// `policy` are the load's policy flags (none: `single`).
async fn crash(
    h: &mut Harness,
    case: &str,
    service: &str,
    failpoint: &str,
    policy: &[&str],
) -> anyhow::Result<Observed> {
    let service = service.to_owned();
    let mut policy: Vec<String> = policy.iter().map(|a| (*a).to_owned()).collect();
    if !policy.is_empty() {
        policy.extend(["--repeat-percent".to_owned(), "40".to_owned()]);
    }
    in_stack(h, case, (30, 5), &[("FAILPOINTS", failpoint)], async |h, s| {
        let args: Vec<&str> = policy.iter().map(String::as_str).collect();
        let load = s.start_load(h, h.duration_secs, &args).await?;
        let started = Instant::now();
        let died = s.wait_exit(&service, secs(h.duration_secs)).await?;
        let at = started.elapsed().as_secs_f64();
        if died {
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.up(h, &[]).await?;
        }
        let out = s.finish_load(load).await?;
        let observed = if died {
            format!(
                "{service} died at {at:.1} s, restarted; {}; {}",
                out.summary(),
                out.detail("no stored vote the client")
            )
        } else {
            format!("the failpoint never fired; {}", out.summary())
        };
        Ok((observed, died && out.clean()))
    })
    .await
}

async fn sigkill(h: &mut Harness, case: &str, service: &str) -> anyhow::Result<Observed> {
    let service = service.to_owned();
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs + 5.0, &[]).await?;
        let started = Instant::now();
        let mut moments = Vec::new();
        for _ in 0..3 {
            tokio::time::sleep(secs(1.5 + 3.5 * jitter())).await;
            s.signal(&service, "KILL")?;
            moments.push(format!("{:.1}", started.elapsed().as_secs_f64()));
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.up(h, &[]).await?;
        }
        let out = s.finish_load(load).await?;
        Ok((
            format!("killed at {} s; {}", moments.join(", "), out.summary()),
            out.clean(),
        ))
    })
    .await
}

async fn sigstop_processor(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (10, 5), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs + 10.0, &[]).await?;
        tokio::time::sleep(secs(3.0)).await;
        s.signal("processor", "STOP")?;
        tokio::time::sleep(secs(15.0)).await;
        s.signal("processor", "CONT")?;
        let out = s.finish_load(load).await?;
        let copies = &out.report["reconciliation"]["duplicatesDropped"];
        Ok((
            format!("{}; {copies} redelivered copies ignored", out.summary()),
            out.clean(),
        ))
    })
    .await
}

async fn postgres_stopped(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs + 20.0, &[]).await?;
        tokio::time::sleep(secs(3.0)).await;
        h.pg.stop()?;
        let accepted_before = metric(&s.ingestion_url, "livevote_votes_accepted_total").await;
        tokio::time::sleep(secs(30.0)).await;
        let accepted_during =
            metric(&s.ingestion_url, "livevote_votes_accepted_total").await - accepted_before;
        h.pg.start(&[])?;
        let out = s.finish_load(load).await?;
        Ok((
            format!(
                "{accepted_during} votes accepted while PostgreSQL was down; {}",
                out.summary()
            ),
            out.clean() && accepted_during > 0.0,
        ))
    })
    .await
}

async fn redis_stopped(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs + 5.0, &[]).await?;
        tokio::time::sleep(secs(3.0)).await;
        h.redis.stop(true)?;
        tokio::time::sleep(secs(10.0)).await;
        h.redis.start()?;
        let out = s.finish_load(load).await?;
        let shed = out.answered("503");
        Ok((
            format!(
                "{shed} answered 503 while Redis was down ({} of them VOTE_PENDING); {}",
                out.answered("503 VOTE_PENDING"),
                out.summary()
            ),
            out.clean() && shed > 0,
        ))
    })
    .await
}

/// Redis loses everything mid-run; afterwards the live tallies are rebuilt
/// from PostgreSQL and the verdict taken again. `rows_check` names the
/// verdict's check of rows per viewer, whose detail must report none over.
async fn redis_emptied(
    h: &mut Harness,
    case: &str,
    policy: &[&str],
    rows_check: &str,
) -> anyhow::Result<Observed> {
    // Many second attempts, so some meet the viewer's lost claim.
    let mut args: Vec<String> = vec!["--repeat-percent".into(), "30".into()];
    args.extend(policy.iter().map(|a| (*a).to_owned()));
    let rows_check = rows_check.to_owned();
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let load = s.start_load(h, h.duration_secs, &args).await?;
        tokio::time::sleep(secs(h.duration_secs / 2.0)).await;
        h.redis.stop(false)?;
        h.redis.start()?;
        let out = s.finish_load(load).await?;
        let election = out.election();
        s.livevote(h, &["tallies", "rebuild", &election], &[]).await?;
        let (clean, text) = s.verify(h, &out).await?;
        let two_rows = out.detail(&rows_check);
        let second = out.detail("every vote answered 202");
        Ok((
            format!(
                "during the run: {}; {second}; {two_rows}; after `livevote tallies rebuild`: verify {}",
                out.summary(),
                if clean {
                    "clean".to_owned()
                } else {
                    format!("FAILED\n{text}")
                }
            ),
            clean && two_rows.starts_with("0 viewers"),
        ))
    })
    .await
}

async fn sqs_unreachable(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs + 20.0, &[]).await?;
        tokio::time::sleep(secs(3.0)).await;
        let pid = h.sqs.pid()?;
        super::servers::signal(pid, "STOP", false)?;
        tokio::time::sleep(secs(30.0)).await;
        super::servers::signal(pid, "CONT", false)?;
        let out = s.finish_load(load).await?;
        let shed = out.answered("503");
        Ok((
            format!(
                "{shed} answered 503 while the endpoint hung ({} of them VOTE_PENDING); {}",
                out.answered("503 VOTE_PENDING"),
                out.summary()
            ),
            out.clean() && shed > 0,
        ))
    })
    .await
}

async fn poison(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (2, 3), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs, &[]).await?;
        tokio::time::sleep(secs(2.0)).await;
        let unknown = uuid::Uuid::new_v4();
        let bodies = [
            "this is not JSON".to_owned(),
            r#"{"v":99,"votes":[]}"#.to_owned(),
            r#"{"v":1,"votes":[{"voteId":"not-a-uuid"}]}"#.to_owned(),
            r#"{"v":1}"#.to_owned(),
            json!({"v": 1, "votes": [{
                "voteId": uuid::Uuid::now_v7().to_string(), "electionId": unknown.to_string(),
                "candidateId": uuid::Uuid::new_v4().to_string(),
                "voterId": "poison|viewer", "acceptedAt": chrono::Utc::now().to_rfc3339(), "correlationId": "poison"
            }]})
            .to_string(),
        ];
        let client = livevote_sqs::local_client(&h.sqs.url());
        let url = client
            .get_queue_url()
            .queue_name(&s.queue)
            .send()
            .await
            .context("finding the vote queue")?
            .queue_url()
            .context("no queue url")?
            .to_owned();
        for body in &bodies {
            client
                .send_message()
                .queue_url(&url)
                .message_body(body)
                .send()
                .await
                .context("injecting a poison message")?;
        }
        let out = s.finish_load(load).await?;
        let dlq = out.report["reconciliation"]["deadLetterMessages"].as_u64().unwrap_or(0);
        Ok((
            format!(
                "{dlq} of {} poison messages in the dead-letter queue; {}",
                bodies.len(),
                out.summary()
            ),
            out.clean() && dlq == bodies.len() as u64,
        ))
    })
    .await
}

async fn redelivered(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(
        h,
        case,
        (30, 25),
        &[("FAILPOINTS", "processor-redeliver=return(20)")],
        async |h, s| {
            let load = s.start_load(h, h.duration_secs, &[]).await?;
            let out = s.finish_load(load).await?;
            let copies = out.report["reconciliation"]["duplicatesDropped"]
                .as_u64()
                .unwrap_or(0);
            Ok((
                format!("{copies} redelivered copies ignored; {}", out.summary()),
                out.clean() && copies > 0,
            ))
        },
    )
    .await
}

/// The ingestion host's clock goes wrong mid-load: it is restarted with its
/// clock shifted by `offset` s, must refuse votes (503, not ready) instead of
/// stamping them wrongly, and is restarted right again.
async fn skew(h: &mut Harness, case: &str, offset: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs, &[]).await?;
        tokio::time::sleep(secs(3.0)).await;
        s.signal("ingestion", "TERM")?;
        s.wait_exit("ingestion", secs(30.0)).await?;
        let skewed = s
            .up_with(
                h,
                &[("LIVEVOTE_FAULT_CLOCK_OFFSET_SECS", offset)],
                &["--ready-timeout-secs", "4"],
            )
            .await;
        let refused_ready = matches!(&skewed, Err(e) if format!("{e:#}").contains("not ready"));
        tokio::time::sleep(secs(4.0)).await;
        let rejected = metric(&s.ingestion_url, "livevote_votes_rejected_total").await;
        let ready = probe(&format!("{}/health/ready", s.ingestion_url)).await;
        s.signal("ingestion", "TERM")?;
        s.wait_exit("ingestion", secs(30.0)).await?;
        s.up(h, &[]).await?;
        let out = s.finish_load(load).await?;
        Ok((
            format!(
                "skewed host {}; readiness {ready}; {rejected} votes refused by the skewed host; {}",
                if refused_ready {
                    "never became ready"
                } else {
                    "BECAME READY"
                },
                out.summary()
            ),
            out.clean() && refused_ready && out.answered("503") > 0,
        ))
    })
    .await
}

/// The status of a GET, or 0 when nothing answered.
async fn probe(url: &str) -> u16 {
    reqwest::get(url).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn close_boundary(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let rate = h.rate;
        h.rate = 600.0;
        let load = s.start_load(h, 6.0, &["--close-after-secs", "4"]).await;
        h.rate = rate;
        let out = s.finish_load(load?).await?;
        let closed = out.answered("409 ELECTION_CLOSED");
        Ok((
            format!(
                "{closed} refused as closed; {}; {}",
                out.summary(),
                out.detail("no stored vote was accepted at or after")
            ),
            out.clean() && closed > 0 && out.accepted() > 0,
        ))
    })
    .await
}

fn api_for(s: &Stack) -> anyhow::Result<Api> {
    Api::new(&ApiArgs {
        results_url: s.results_url.clone(),
        ingestion_url: s.ingestion_url.clone(),
        token: None,
        issuer: IssuerArgs {
            issuer: livevote_cli::issuer::DEFAULT_ISSUER.to_owned(),
            audience: livevote_cli::issuer::DEFAULT_AUDIENCE.to_owned(),
        },
    })
}

fn dev_issuer() -> livevote_auth0::DevIssuer {
    livevote_auth0::DevIssuer::builtin(
        livevote_cli::issuer::DEFAULT_ISSUER,
        livevote_cli::issuer::DEFAULT_AUDIENCE,
    )
}

fn viewer_claims(issuer: &livevote_auth0::DevIssuer, sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": issuer.issuer(), "aud": issuer.audience(), "sub": sub, "iat": now, "exp": now + 600})
}

async fn jwks_down(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs, &[]).await?;
        tokio::time::sleep(secs(3.0)).await;
        s.signal("issuer", "KILL")?;
        tokio::time::sleep(secs(2.0)).await;
        // A key the JWKS never had, while the JWKS cannot be fetched.
        let issuer = dev_issuer();
        let mut header = issuer.header();
        header.kid = Some("rotated-in-while-down".into());
        let token = issuer.sign(header, &viewer_claims(&issuer, "faults|new-kid"));
        let api = api_for(s)?;
        let reply = api
            .vote(
                &token,
                &uuid::Uuid::new_v4().to_string(),
                &uuid::Uuid::new_v4().to_string(),
            )
            .await?;
        let new_kid = format!("{} {}", reply.status, reply.body["code"].as_str().unwrap_or("?"));
        let out = s.finish_load(load).await?;
        s.up(h, &[]).await?;
        Ok((
            format!("new kid -> {new_kid}; {}", out.summary()),
            out.clean() && new_kid == "401 INVALID_TOKEN" && out.answered("202") > 0,
        ))
    })
    .await
}

/// Votes for a CAPTCHA election while the verifier is down (connection
/// refused) or hangs; every one must be 503 with nothing claimed or stored.
async fn captcha(h: &mut Harness, case: &str, slow: bool) -> anyhow::Result<Observed> {
    // Down: a port nobody listens on. Slow: a listener that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hang = if slow {
        Some(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        }))
    } else {
        drop(listener);
        None
    };
    let url = format!("http://127.0.0.1:{port}/siteverify");
    let env = [
        ("LIVEVOTE_TURNSTILE_SECRET", "fault-suite-secret"),
        ("LIVEVOTE_TURNSTILE_URL", url.as_str()),
        ("LIVEVOTE_TURNSTILE_TIMEOUT_MS", "1000"),
    ];
    let result = in_stack(h, case, (30, 5), &env, async |h, s| {
        let load = s.start_load(h, h.duration_secs, &[]).await?;
        let api = api_for(s)?;
        let now = chrono::Utc::now();
        let created = api
            .results(
                reqwest::Method::POST,
                "/api/v1/admin/elections",
                Some(json!({
                    "title": "faults captcha",
                    "startsAt": now.to_rfc3339(),
                    "endsAt": (now + chrono::Duration::minutes(30)).to_rfc3339(),
                    "candidates": [{"name": "Ada"}, {"name": "Grace"}],
                    "captchaRequired": true,
                })),
            )
            .await?
            .expect(201, "creating the CAPTCHA election")?;
        let election = created["electionId"].as_str().context("no electionId")?.to_owned();
        let candidate = created["candidates"][0]["candidateId"]
            .as_str()
            .context("no candidate")?
            .to_owned();
        api.open(&election).await?;
        tokio::time::sleep(secs(1.2)).await;
        let issuer = dev_issuer();
        let mut answers = std::collections::BTreeMap::<String, u32>::new();
        let started = Instant::now();
        for i in 0..20 {
            let token = issuer.token(&livevote_auth0::DevTokenClaims::viewer(format!("faults|captcha-{i}")));
            let reply = api
                .http
                .post(format!("{}/api/v1/votes", s.ingestion_url))
                .bearer_auth(&token)
                .json(&json!({"electionId": election, "candidateId": candidate, "captchaToken": "XXXX.DUMMY.TOKEN"}))
                .send()
                .await?;
            let status = reply.status().as_u16();
            let body: Value = reply.json().await.unwrap_or(Value::Null);
            *answers
                .entry(format!("{status} {}", body["code"].as_str().unwrap_or("?")))
                .or_default() += 1;
        }
        let took = started.elapsed().as_secs_f64() / 20.0;
        let pool = livevote_postgres::connect_lazy(&format!("{}/{}", h.pg.url(), stack_database(s)), 1)?;
        let rows: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM votes WHERE election_id = $1::uuid) + \
             (SELECT count(*) FROM vote_conflicts WHERE election_id = $1::uuid)",
        )
        .bind(&election)
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        let claims = redis_keys(h, s, &election).await?;
        let out = s.finish_load(load).await?;
        let all_503 = answers.len() == 1 && answers.keys().all(|k| k.starts_with("503"));
        Ok((
            format!(
                "{answers:?} ({took:.2} s each); {rows} rows, {claims} claims or tallies in Redis for that election; load: {}",
                out.summary()
            ),
            all_503 && rows == 0 && claims == 0 && out.clean(),
        ))
    })
    .await;
    if let Some(task) = hang {
        task.abort();
    }
    result
}

fn stack_database(s: &Stack) -> String {
    s.env
        .iter()
        .find(|(k, _)| k == "LIVEVOTE_STACK_DATABASE")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Claims and live tallies of `election` in the case's Redis key space
/// (`<prefix>:{e:<election>:<shard>}:...`; the cached election itself is not counted).
async fn redis_keys(h: &Harness, s: &Stack, election: &str) -> anyhow::Result<usize> {
    let prefix = s
        .env
        .iter()
        .find(|(k, _)| k == "LIVEVOTE_REDIS_PREFIX")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let out = tokio::process::Command::new("redis-cli")
        .args(["-p", &h.redis.port.to_string(), "--scan", "--pattern"])
        .arg(format!("{prefix}:{{e:{election}:*"))
        .output()
        .await
        .context("running redis-cli")?;
    anyhow::ensure!(out.status.success(), "redis-cli --scan failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .count())
}

async fn many_ips(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    let env = [
        ("LIVEVOTE_TRUSTED_PROXIES", "1"),
        // A slow refill keeps every address's state alive, so only the key bound frees memory.
        ("LIVEVOTE_RATE_IP_PER_SEC", "0.01"),
        ("LIVEVOTE_RATE_IP_BURST", "5"),
        ("LIVEVOTE_RATE_MAX_KEYS", "20000"),
    ];
    in_stack(h, case, (30, 5), &env, async |_h, s| {
        let pid = s.pid("ingestion")?;
        let before = rss_mib(pid);
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
        let url = format!("{}/api/v1/votes", s.ingestion_url);
        let total: u32 = 100_000;
        let mut peak = before;
        let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            let (http, url) = (http.clone(), url.clone());
            tasks.spawn(async move {
                // 10.x.y.z: a distinct address per request, no token (the address limit comes first).
                let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                http.post(&url)
                    .header("x-forwarded-for", ip)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            });
            while tasks.len() >= 64 {
                if let Some(Ok(status)) = tasks.join_next().await {
                    *statuses.entry(status).or_default() += 1;
                }
            }
            if i % 10_000 == 0 {
                peak = peak.max(rss_mib(pid));
            }
        }
        while let Some(done) = tasks.join_next().await {
            *statuses.entry(done.unwrap_or(0)).or_default() += 1;
        }
        tokio::time::sleep(secs(2.0)).await;
        let after = rss_mib(pid);
        peak = peak.max(after);
        let log = std::fs::read_to_string(s.dir.join("ingestion.log")).unwrap_or_default();
        let resets = log.matches("rate limiter over its key bound").count();
        Ok((
            format!(
                "answers {statuses:?}; RSS {before:.0} -> peak {peak:.0} -> {after:.0} MiB; limiter reset {resets} times at 20,000 keys"
            ),
            peak - before < 64.0 && resets > 0 && statuses.get(&401).copied().unwrap_or(0) > 0,
        ))
    })
    .await
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A counter's sum on a service's /metrics (0 when unreachable).
async fn metric(base: &str, name: &str) -> f64 {
    let Ok(reply) = reqwest::get(format!("{base}/metrics")).await else {
        return 0.0;
    };
    let text = reply.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Negative control: PostgreSQL acknowledges commits it has not written
/// (`synchronous_commit=off`) and is then killed; the votes of those
/// commits were already deleted from the queue, so they are gone, and the
/// verdict must say so.
async fn negative_async_commit(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    let unsafe_settings = [
        "synchronous_commit=off",
        "wal_writer_delay=10000",
        "wal_buffers=64MB",
    ];
    h.pg.stop()?;
    h.pg.start(&unsafe_settings)?;
    // The store forces `synchronous_commit = on` in every transaction; the
    // fault build's switch turns that off so the server's setting applies.
    let env = [("LIVEVOTE_FAULT_SERVER_COMMIT_MODE", "1")];
    let result = in_stack(h, case, (30, 5), &env, async |h, s| {
        // A low rate: each commit is a small WAL record, so the WAL writer is
        // woken rarely and the last commits sit unwritten in shared memory.
        let rate = h.rate;
        h.rate = 30.0;
        let load = s.start_load(h, 20.0, &[]).await;
        h.rate = rate;
        let load = load?;
        for _ in 0..3 {
            tokio::time::sleep(secs(4.0 + jitter())).await;
            h.pg.kill()?;
            h.pg.start(&unsafe_settings)?;
        }
        let out = s.finish_load(load).await?;
        let lost = out.detail("every vote answered 202");
        let reported = out
            .failed_checks()
            .iter()
            .any(|c| c.starts_with("every vote answered 202"));
        Ok((format!("killed 3 times; {lost}; {}", out.summary()), reported))
    })
    .await;
    h.pg.stop()?;
    h.pg.start(&[])?;
    result
}

/// Negative control: the in-memory SQS endpoint is killed with a backlog
/// queued (the processor is frozen) and started again empty.
async fn negative_queue_lost(h: &mut Harness, case: &str) -> anyhow::Result<Observed> {
    in_stack(h, case, (30, 5), &[], async |h, s| {
        let load = s.start_load(h, h.duration_secs, &[]).await?;
        tokio::time::sleep(secs(3.0)).await;
        s.signal("processor", "STOP")?;
        tokio::time::sleep(secs(4.0)).await;
        h.sqs.kill()?;
        h.sqs.start()?;
        s.livevote(h, &["queues", "create"], &[]).await?;
        s.signal("processor", "CONT")?;
        let out = s.finish_load(load).await?;
        let lost = out.detail("every vote answered 202");
        let reported = out
            .failed_checks()
            .iter()
            .any(|c| c.starts_with("every vote answered 202"));
        Ok((format!("{lost}; {}", out.summary()), reported))
    })
    .await
}
