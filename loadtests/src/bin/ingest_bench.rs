//! Measures the full vote path of `livevote-ingestion` against a bare axum
//! handler that parses the same JSON and answers 202, in one run on one
//! machine, and prints votes/s, latency percentiles and the ratio.
//!
//! Both servers run as processes of their own (the bare one is this binary
//! re-run as `ingest-bench bare`), and the same client drives both: a fixed
//! number of concurrent keep-alive connections, each sending its next request
//! when the previous one is answered (closed loop: this finds the maximum
//! rate). Every request of the full path is a distinct viewer with a token
//! signed beforehand (signing costs far more than verifying), so each one
//! runs the whole path: RS256 verification, rate limits, election cache,
//! Redis claim, SQS publish (micro-batched), Redis confirm. Rounds alternate
//! which server goes first; the median round is reported.
//!
//! Redis is measured over each full round too: `INFO cpu` before and after
//! gives the Redis server's CPU time per accepted vote (command execution
//! and its network I/O), and `CONFIG RESETSTAT` then `INFO commandstats`
//! the commands a vote cost. (The `usec` of commandstats is not summed: a
//! script's time already includes the commands it runs, which are counted
//! again under their own names.)
//!
//! After the runs every accepted vote id is looked for in the queue.
//!
//! Usage: `ingest-bench --ingestion-bin PATH [--votes N] [--concurrency C]
//! [--rounds R] [--open-seconds S] [--perf-record FILE]`. Servers: `LIVEVOTE_TEST_DATABASE_URL`,
//! `LIVEVOTE_TEST_REDIS_URL`, `LIVEVOTE_TEST_SQS_ENDPOINT` (defaults: local).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::http::StatusCode;
use chrono::Utc;
use livevote_auth0::{DevIssuer, DevTokenClaims};
use livevote_domain::Election;
use livevote_ports::{DeliveryContent, VoteSource};
use livevote_postgres::PgElections;
use livevote_sqs::{QueueSettings, SqsQueue, create_queues, local_client};
use livevote_testkit::fixtures::active_election;
use livevote_testkit::{scratch_database, test_server_url};
use serde::Deserialize;

const ISS: &str = "https://livevote-bench.local/";
const AUD: &str = "https://api.livevote.bench";

#[derive(Debug, Clone)]
struct Options {
    ingestion_bin: String,
    votes: usize,
    concurrency: usize,
    rounds: usize,
    /// Length of the open-loop phase at half the measured maximum rate.
    open_seconds: usize,
    /// Where `perf record` writes a profile of the ingestion process during
    /// the first full round (for `scripts/flamegraph-ingestion.sh`).
    perf_record: Option<String>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut o = Options {
        ingestion_bin: String::new(),
        votes: 10_000,
        concurrency: 64,
        rounds: 3,
        open_seconds: 5,
        perf_record: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        let number = || -> anyhow::Result<usize> {
            let n: usize = value
                .parse()
                .with_context(|| format!("{flag} {value}: not a number"))?;
            ensure!(n > 0, "{flag} must be at least 1");
            Ok(n)
        };
        match flag.as_str() {
            "--ingestion-bin" => o.ingestion_bin = value.clone(),
            "--votes" => o.votes = number()?,
            "--concurrency" => o.concurrency = number()?,
            "--rounds" => o.rounds = number()?,
            "--open-seconds" => o.open_seconds = number()?,
            "--perf-record" => o.perf_record = Some(value.clone()),
            other => bail!("unknown flag {other} (see the file's header for usage)"),
        }
    }
    ensure!(!o.ingestion_bin.is_empty(), "--ingestion-bin PATH is required");
    Ok(o)
}

/// The same request shape the ingestion service takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct VoteRequest {
    election_id: String,
    candidate_id: String,
    #[serde(default)]
    captcha_token: Option<String>,
}

/// The bare server: parse the JSON, answer 202 with a body of the same shape.
async fn bare_handler(body: axum::body::Bytes) -> (StatusCode, axum::Json<serde_json::Value>) {
    match serde_json::from_slice::<VoteRequest>(&body) {
        Ok(_) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "voteId": uuid::Uuid::now_v7().to_string(),
                "status": "accepted",
                "acceptedAt": Utc::now().to_rfc3339(),
            })),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"code": "INVALID_REQUEST", "message": e.to_string()})),
        ),
    }
}

async fn run_bare() -> anyhow::Result<()> {
    let app = axum::Router::new().route("/api/v1/votes", axum::routing::post(bare_handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "{{\"message\":\"bare listening\",\"addr\":\"{}\"}}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// A server process (killed on drop).
type Server = livevote_testkit::ServiceProcess;

#[derive(Default)]
struct Round {
    /// Server CPU (user + system) per request, microseconds.
    cpu_us: f64,
    /// Redis over the round, per request (zero for the bare handler).
    redis: RedisCost,
    votes_per_s: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    accepted: Vec<String>,
}

/// What Redis spent on a round, per accepted vote.
#[derive(Debug, Default, Clone, Copy)]
struct RedisCost {
    /// Redis process CPU (`used_cpu_user + used_cpu_sys`), microseconds.
    cpu_us: f64,
    /// Script calls (`evalsha`).
    scripts: f64,
    /// Commands run, a script's own commands included.
    calls: f64,
}

/// Reads Redis's own counters around a round.
struct RedisMeter {
    client: fred::prelude::Client,
}

/// The counters at one moment: commandstats calls (all commands, and
/// scripts alone), and the process CPU in seconds.
#[derive(Debug, Default, Clone, Copy)]
struct RedisCounters {
    calls: u64,
    scripts: u64,
    cpu_s: f64,
}

impl RedisMeter {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        use fred::prelude::ClientLike;
        let client = fred::prelude::Builder::from_config(fred::prelude::Config::from_url(url)?).build()?;
        client.init().await?;
        Ok(Self { client })
    }

    async fn info(&self, section: &str) -> anyhow::Result<String> {
        use fred::prelude::ClientLike;
        Ok(self
            .client
            .custom::<String, _>(fred::cmd!("INFO"), vec![section])
            .await?)
    }

    /// Zeroes the command statistics and reads the counters.
    async fn start(&self) -> anyhow::Result<RedisCounters> {
        use fred::prelude::ClientLike;
        let () = self
            .client
            .custom(fred::cmd!("CONFIG"), vec!["RESETSTAT"])
            .await?;
        self.read().await
    }

    async fn read(&self) -> anyhow::Result<RedisCounters> {
        let mut counters = RedisCounters::default();
        // Lines like `cmdstat_set:calls=10,usec=25,usec_per_call=2.50,...`.
        for line in self.info("commandstats").await?.lines() {
            let Some((name, fields)) = line.split_once(':').filter(|(k, _)| k.starts_with("cmdstat_")) else {
                continue;
            };
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            counters.calls += calls;
            if name == "cmdstat_evalsha" || name == "cmdstat_eval" {
                counters.scripts += calls;
            }
        }
        for line in self.info("cpu").await?.lines() {
            if let Some((key, value)) = line.split_once(':')
                && (key == "used_cpu_user" || key == "used_cpu_sys")
            {
                counters.cpu_s += value.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
        Ok(counters)
    }

    /// The cost since `start`, per vote.
    async fn cost(&self, start: RedisCounters, votes: usize) -> anyhow::Result<RedisCost> {
        let end = self.read().await?;
        let votes = votes.max(1) as f64;
        // The INFO calls of `read` are counted too: negligible next to a round.
        Ok(RedisCost {
            cpu_us: (end.cpu_s - start.cpu_s) * 1e6 / votes,
            scripts: end.scripts as f64 / votes,
            calls: end.calls as f64 / votes,
        })
    }
}

/// `perf record` attached to a process: sampled at 499 Hz with DWARF call
/// graphs, stopped with SIGINT so it writes its file.
struct Perf(std::process::Child);

impl Perf {
    fn start(pid: u32, file: &str) -> anyhow::Result<Self> {
        let child = std::process::Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-o",
                file,
                "-p",
            ])
            .arg(pid.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("perf record (linux-perf must be installed)")?;
        // perf needs a moment to attach before the round starts.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self(child))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()?;
        ensure!(status.success(), "could not stop perf record");
        let status = self.0.wait()?;
        use std::os::unix::process::ExitStatusExt;
        ensure!(
            status.success() || status.signal() == Some(2),
            "perf record ended with {status}"
        );
        Ok(())
    }
}

/// Sends `requests` (token, body) with `concurrency` workers; every answer must be 202.
async fn drive(
    server: &Server,
    requests: Vec<(String, String)>,
    concurrency: usize,
) -> anyhow::Result<Round> {
    let url = format!("http://{}/api/v1/votes", server.addr);
    let cpu_before = livevote_loadtests::cpu_time(server.pid());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let requests = Arc::new(requests);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, requests, next, url) = (client.clone(), requests.clone(), next.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((token, body)) = requests.get(i) else {
                    break;
                };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = response.status();
                let text = response.text().await?;
                latencies.push(sent.elapsed());
                ensure!(status == StatusCode::ACCEPTED, "HTTP {status}: {text}");
                let v: serde_json::Value = serde_json::from_str(&text)?;
                accepted.push(v["voteId"].as_str().context("a 202 without voteId")?.to_string());
            }
            anyhow::Ok((latencies, accepted))
        }));
    }
    let mut latencies = Vec::new();
    let mut accepted = Vec::new();
    for w in workers {
        let (l, a) = w.await??;
        latencies.extend(l);
        accepted.extend(a);
    }
    let elapsed = started.elapsed();
    let cpu = livevote_loadtests::cpu_time(server.pid()).saturating_sub(cpu_before);
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Round {
        cpu_us: cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64,
        votes_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        max: *latencies.last().unwrap_or(&Duration::ZERO),
        accepted,
        ..Round::default()
    })
}

/// Open loop: request `i` is sent at `start + i / rate` whatever happened to
/// the others, and its latency counts from that scheduled time, so a slow
/// server cannot hide behind fewer requests.
async fn open_loop(server: &Server, requests: Vec<(String, String)>, rate: f64) -> anyhow::Result<Round> {
    let url = format!("http://{}/api/v1/votes", server.addr);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let cpu_before = livevote_loadtests::cpu_time(server.pid());
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(requests.len());
    for (i, (token, body)) in requests.into_iter().enumerate() {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(&url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let text = response.text().await?;
            ensure!(status == StatusCode::ACCEPTED, "HTTP {status}: {text}");
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let id = v["voteId"].as_str().context("a 202 without voteId")?.to_string();
            anyhow::Ok((at.elapsed(), id))
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut accepted = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (latency, id) = t.await??;
        latencies.push(latency);
        accepted.push(id);
    }
    let elapsed = start.elapsed();
    let cpu = livevote_loadtests::cpu_time(server.pid()).saturating_sub(cpu_before);
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Round {
        cpu_us: cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64,
        votes_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        max: *latencies.last().unwrap_or(&Duration::ZERO),
        accepted,
        ..Round::default()
    })
}

fn median_by(rounds: &mut [Round]) -> &Round {
    rounds.sort_by(|a, b| a.votes_per_s.total_cmp(&b.votes_per_s));
    &rounds[rounds.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("bare") {
        return run_bare().await;
    }
    let o = parse_options()?;
    eprintln!("setting up: scratch database, queue, election, JWKS");
    let pool = scratch_database(&test_server_url(), 4).await?;
    let db = pool
        .connect_options()
        .get_database()
        .unwrap_or_default()
        .to_owned();
    let server = test_server_url();
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(b, _)| b)
        .to_owned();
    let elections = PgElections::new(pool);
    let election: Election = active_election(
        &elections,
        &["A", "B", "C"],
        Utc::now(),
        chrono::Duration::hours(2),
        |_| {},
    )
    .await;
    let sqs_endpoint =
        std::env::var("LIVEVOTE_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let queue_name = format!("lvtest-bench-{}", uuid::Uuid::new_v4().simple());
    let queue = SqsQueue::new(
        local_client(&sqs_endpoint),
        create_queues(
            &local_client(&sqs_endpoint),
            &queue_name,
            QueueSettings::default(),
        )
        .await?,
    );
    let issuer = Arc::new(DevIssuer::builtin(ISS, AUD));
    let jwks = issuer.jwks_json().to_string();
    let jwks_app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { jwks }
        }),
    );
    let jwks_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let jwks_addr = jwks_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(jwks_listener, jwks_app).await });

    let redis_url =
        std::env::var("LIVEVOTE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let meter = RedisMeter::connect(&redis_url).await?;
    // The run's keys are deleted at the end, so that Redis's key space (and
    // with it the cost of each write while its tables grow) is the same at
    // the start of every run.
    let prefix = format!("lvtest-{}", uuid::Uuid::new_v4().simple());
    let ingestion_env: Vec<(String, String)> = [
        ("LIVEVOTE_INGESTION_LISTEN", "127.0.0.1:0".to_string()),
        ("LIVEVOTE_DATABASE_URL", format!("{base}/{db}")),
        ("LIVEVOTE_REDIS_URL", redis_url),
        ("LIVEVOTE_REDIS_PREFIX", prefix.clone()),
        ("LIVEVOTE_SQS_ENDPOINT", sqs_endpoint.clone()),
        ("LIVEVOTE_QUEUE_NAME", queue_name.clone()),
        (
            "LIVEVOTE_JWKS_URL",
            format!("http://{jwks_addr}/.well-known/jwks.json"),
        ),
        ("LIVEVOTE_JWT_ISSUER", ISS.to_string()),
        ("LIVEVOTE_JWT_AUDIENCE", AUD.to_string()),
        // Every request comes from 127.0.0.1: the per-IP limit would measure itself.
        ("LIVEVOTE_RATE_IP_PER_SEC", "0".to_string()),
        ("LIVEVOTE_LOG", "warn,livevote_ingestion=info".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let full = Server::start(
        &o.ingestion_bin,
        &[],
        &ingestion_env,
        "livevote-ingestion listening",
    )?;
    let this = std::env::current_exe()?;
    let bare = Server::start(&this.to_string_lossy(), &["bare"], &[], "bare listening")?;

    let total = o.votes * o.rounds;
    eprintln!("signing {total} tokens (one viewer each)");
    let mut tokens = Vec::with_capacity(total);
    let per_thread = total.div_ceil(2);
    let mut signers = Vec::new();
    for part in 0..2 {
        let issuer = issuer.clone();
        signers.push(tokio::task::spawn_blocking(move || {
            (part * per_thread..((part + 1) * per_thread).min(total))
                .map(|i| issuer.token(&DevTokenClaims::viewer(format!("auth0|bench-{i}"))))
                .collect::<Vec<_>>()
        }));
    }
    for s in signers {
        tokens.extend(s.await?);
    }
    let bodies: Vec<String> = (0..total)
        .map(|i| {
            serde_json::json!({
                "electionId": election.id().to_string(),
                "candidateId": election.candidates()[i % 3].id().to_string(),
            })
            .to_string()
        })
        .collect();

    let (mut full_rounds, mut bare_rounds) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let slice = |from: usize| -> Vec<(String, String)> {
            (from..from + o.votes)
                .map(|i| (tokens[i].clone(), bodies[i].clone()))
                .collect()
        };
        let requests = slice(round * o.votes);
        let full_round = async |requests: Vec<(String, String)>| -> anyhow::Result<Round> {
            let perf = match &o.perf_record {
                Some(file) if round == 0 => Some(Perf::start(full.pid(), file)?),
                _ => None,
            };
            let start = meter.start().await?;
            let mut r = drive(&full, requests, o.concurrency).await?;
            r.redis = meter.cost(start, r.accepted.len()).await?;
            if let Some(perf) = perf {
                perf.stop()?;
            }
            Ok(r)
        };
        // Alternate which goes first, so warm-up and drift favour neither.
        if round % 2 == 0 {
            bare_rounds.push(drive(&bare, requests.clone(), o.concurrency).await?);
            full_rounds.push(full_round(requests).await?);
        } else {
            full_rounds.push(full_round(requests.clone()).await?);
            bare_rounds.push(drive(&bare, requests, o.concurrency).await?);
        }
        let (f, b) = (full_rounds.last().unwrap(), bare_rounds.last().unwrap());
        eprintln!(
            "round {}: full {:.0} votes/s (p99 {}, {:.0} us CPU/vote, Redis {:.1} us CPU/vote), bare {:.0} req/s (p99 {}, {:.0} us CPU/req), ratio {:.2}",
            round + 1,
            f.votes_per_s,
            ms(f.p99),
            f.cpu_us,
            f.redis.cpu_us,
            b.votes_per_s,
            ms(b.p99),
            b.cpu_us,
            f.votes_per_s / b.votes_per_s
        );
    }
    // Open loop at half the median maximum rate, with viewers of its own.
    let max_rate = {
        let mut rates: Vec<f64> = full_rounds.iter().map(|r| r.votes_per_s).collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let half = max_rate / 2.0;
    let open_n = ((half * o.open_seconds as f64) as usize).max(1);
    eprintln!("open loop: {open_n} votes at {half:.0}/s (half the maximum), signing their tokens");
    let open_requests: Vec<(String, String)> = {
        let issuer = issuer.clone();
        let e = election.clone();
        tokio::task::spawn_blocking(move || {
            (0..open_n)
                .map(|i| {
                    let token = issuer.token(&DevTokenClaims::viewer(format!("auth0|open-{i}")));
                    let body = serde_json::json!({
                        "electionId": e.id().to_string(),
                        "candidateId": e.candidates()[i % 3].id().to_string(),
                    })
                    .to_string();
                    (token, body)
                })
                .collect()
        })
        .await?
    };
    let open = open_loop(&full, open_requests, half).await?;
    eprintln!(
        "open loop: {:.0} votes/s, p50 {}, p99 {}, max {}",
        open.votes_per_s,
        ms(open.p50),
        ms(open.p99),
        ms(open.max)
    );
    let total = total + open_n;
    let accepted: HashSet<String> = full_rounds
        .iter()
        .chain(std::iter::once(&open))
        .flat_map(|r| r.accepted.iter().cloned())
        .collect();
    ensure!(
        accepted.len() == total,
        "{} distinct vote ids for {total} requests",
        accepted.len()
    );

    eprintln!("checking that every accepted vote is in the queue");
    let mut queued = HashSet::new();
    let started = Instant::now();
    while queued.len() < total && started.elapsed() < Duration::from_secs(120) {
        let deliveries = queue.receive(10, Duration::from_secs(1)).await?;
        let mut tags = Vec::new();
        for d in deliveries {
            if let DeliveryContent::Votes(v) = d.content {
                queued.extend(v.into_iter().map(|r| r.vote.vote_id.to_string()));
            }
            tags.push(d.tag);
        }
        if !tags.is_empty() {
            queue.ack(&tags).await?;
        }
    }
    let missing = accepted.difference(&queued).count();
    let metrics = reqwest::get(format!("http://{}/metrics", full.addr))
        .await?
        .text()
        .await?;
    let series = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (batches, published) = (
        series("livevote_publish_batches_total"),
        series("livevote_published_votes_total"),
    );

    let f = median_by(&mut full_rounds);
    let redis = f.redis;
    let f = (f.votes_per_s, f.p50, f.p99, f.max, f.cpu_us);
    let b = median_by(&mut bare_rounds);
    let b = (b.votes_per_s, b.p50, b.p99, b.max, b.cpu_us);
    println!(
        "ingestion benchmark: {} votes per round, {} connections, {} rounds (median round)",
        o.votes, o.concurrency, o.rounds
    );
    println!("| server | votes/s | p50 | p99 | max | server CPU per request |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| livevote-ingestion, full path | {:.0} | {} | {} | {} | {:.0} us |",
        f.0,
        ms(f.1),
        ms(f.2),
        ms(f.3),
        f.4
    );
    println!(
        "| bare axum, same JSON, 202 | {:.0} | {} | {} | {} | {:.0} us |",
        b.0,
        ms(b.1),
        ms(b.2),
        ms(b.3),
        b.4
    );
    println!(
        "ratio full / bare: {:.2} (target >= 0.5); server CPU full / bare: {:.2} (target <= 3.5)",
        f.0 / b.0,
        f.4 / b.4.max(f64::MIN_POSITIVE)
    );
    println!(
        "Redis per accepted vote: {:.1} us of server CPU (target <= 6), {:.2} script calls, {:.2} commands in all",
        redis.cpu_us, redis.scripts, redis.calls
    );
    println!(
        "open loop at half the maximum ({half:.0} votes/s for {} s): p50 {}, p99 {} (target < 10 ms), max {}",
        o.open_seconds,
        ms(open.p50),
        ms(open.p99),
        ms(open.max)
    );
    println!(
        "publish: {published:.0} votes in {batches:.0} batches ({:.1} votes per SendMessageBatch call)",
        published / batches.max(1.0)
    );
    println!(
        "accepted votes found in the queue: {} of {} (missing {missing})",
        accepted.len() - missing,
        accepted.len()
    );
    let deleted = livevote_loadtests::delete_redis_prefix(&meter.client, &prefix).await?;
    eprintln!("deleted the run's {deleted} Redis keys");
    ensure!(missing == 0, "{missing} accepted votes are not in the queue");
    Ok(())
}
