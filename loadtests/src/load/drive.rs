//! The timed part of a run: two elections are set up (the one under test and
//! a closed one), viewers vote on the open-loop schedule while optional
//! readers poll and follow the results and each service's memory is sampled;
//! then the election closes, the queue drains and the verdict is taken.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use livevote_cli::api::{Api, PolicyArgs};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::plan::{Kind, Plan, WEIGHTS};
use super::report::{Readers, Report};
use super::stats::{Endpoint, Outcome, Stats};
use super::tokens::{viewer_tokens, voter_sub};
use super::verdict::{self, Check, Ledger, LedgerVote, RunPolicy};
use super::visibility::{Source, Visibility};
use super::{RunArgs, Settings};

const CANDIDATES: [&str; 4] = ["Ada", "Grace", "Linus", "Barbara"];
const _: () = assert!(CANDIDATES.len() == WEIGHTS.len());

/// One reading of a service's resident memory.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemorySample {
    /// Seconds since the voting started.
    pub t_secs: f64,
    pub service: String,
    pub rss_mb: f64,
}

/// A 202 as the client got it: vote id, viewer, candidate, `voteNumber`.
type Accepted = (String, usize, usize, Option<u32>);

/// Counters shared by the client tasks.
#[derive(Debug, Default)]
struct Live {
    sent: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    not_sent: AtomicU64,
    results_errors: AtomicU64,
    sse_events: AtomicU64,
    sse_errors: AtomicU64,
}

pub async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let (api, pool, redis) = args.target.connect().await?;
    api.ensure_ready().await?;

    let plan = Plan::new(settings.shape, settings.mix);
    eprintln!(
        "scenario {}: {} attempts from {} viewers over {} s (rate {}/s{})",
        settings.scenario.label(),
        plan.attempts.len(),
        plan.voters,
        settings.shape.duration_secs,
        settings.shape.rate,
        if settings.shape.ramp_secs > 0.0 {
            format!(", ramp {} s", settings.shape.ramp_secs)
        } else {
            String::new()
        }
    );
    let issuer = args.target.api.issuer.issuer();
    let (voters, cache) = (plan.voters, args.token_cache.clone());
    let tokens = Arc::new(
        tokio::task::spawn_blocking(move || viewer_tokens(&issuer, voters, &cache))
            .await
            .context("the token signer stopped")??,
    );

    // The election under test, and a closed one for the "closed" share.
    let started_at = chrono::Utc::now();
    let minutes = (settings.shape.duration_secs / 60.0).ceil() as i64 + 30;
    let title = format!(
        "load {} {}",
        settings.scenario.label(),
        started_at.format("%H:%M:%S")
    );
    let policy_args = match settings.policy {
        RunPolicy::Single => PolicyArgs::default(),
        RunPolicy::Multi { max_votes } => PolicyArgs::multi(u16::try_from(max_votes)?),
        RunPolicy::Changeable => PolicyArgs {
            policy: Some("changeable".into()),
            ..PolicyArgs::default()
        },
    };
    let (election, candidates) = api
        .create_election_ids_with(&title, &CANDIDATES, minutes, &policy_args)
        .await?;
    let (closed, closed_candidates) = api
        .create_election_ids(&format!("{title} (closed)"), &CANDIDATES, minutes)
        .await?;
    api.open(&closed).await?;
    api.set_status(&closed, "CLOSED").await?;
    let unknown = uuid::Uuid::new_v4().to_string();
    api.open(&election).await?;
    eprintln!("election {election} open; closed election {closed}; unknown election {unknown}");

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(settings.max_in_flight.min(4096))
        // The vote API never redirects; following redirects costs a layer per request.
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let stats = Arc::new(Stats::new());
    let live = Arc::new(Live::default());
    let visibility = Arc::new(Visibility::default());
    let ledger: Arc<Mutex<Vec<Accepted>>> = Arc::default();
    let unanswered: Arc<Mutex<Vec<usize>>> = Arc::default();
    // Viewers whose first attempt was refused as a duplicate: only right if another attempt of theirs got in.
    let refused_first: Arc<Mutex<Vec<usize>>> = Arc::default();
    let (stop_tx, stop) = watch::channel(false);
    let voting_started = Instant::now();

    let mut background = JoinSet::new();
    spawn_readers(
        &mut background,
        &settings,
        &api,
        &election,
        Shared {
            stats: stats.clone(),
            live: live.clone(),
            visibility: visibility.clone(),
        },
        &stop,
    );
    let sampler = tokio::spawn(sample_memory(
        args.stack_dir.clone(),
        Duration::from_secs(settings.sample_secs),
        voting_started,
        stop.clone(),
    ));
    let progress = tokio::spawn(show_progress(
        plan.attempts.len() as u64,
        live.clone(),
        stats.clone(),
        stop.clone(),
    ));

    // The open-loop schedule: attempt n goes out at its due time, whatever is still in flight.
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight));
    // The close boundary: "lines are closed" while the votes keep coming.
    let closer = settings.close_after.map(|after| {
        let (api, election) = (api.clone(), election.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until((voting_started + after).into()).await;
            api.set_status(&election, "CLOSED").await?;
            eprintln!(
                "election {election} closed {:.1} s into the voting",
                after.as_secs_f64()
            );
            anyhow::Ok(())
        })
    });
    // Parsed once: reqwest would parse a string URL again for every request.
    let votes_url: reqwest::Url = format!("{}/api/v1/votes", api.ingestion_url)
        .parse()
        .with_context(|| format!("ingestion URL {:?}", api.ingestion_url))?;
    let mut tasks = JoinSet::new();
    let cpu_before = cpu_snapshot();
    for attempt in &plan.attempts {
        let due = voting_started + attempt.due;
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            live.not_sent.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (election_id, candidate_id) = match attempt.kind {
            Kind::First | Kind::Repeat => (election.as_str(), candidates[attempt.candidate].as_str()),
            Kind::Closed => (closed.as_str(), closed_candidates[attempt.candidate].as_str()),
            Kind::Unknown => (unknown.as_str(), candidates[attempt.candidate].as_str()),
        };
        let body = format!(r#"{{"electionId":"{election_id}","candidateId":"{candidate_id}"}}"#);
        let (visibility, candidate) = (visibility.clone(), candidate_id.to_owned());
        let (http, url, tokens, stats, live, ledger, unanswered, refused_first) = (
            http.clone(),
            votes_url.clone(),
            tokens.clone(),
            stats.clone(),
            live.clone(),
            ledger.clone(),
            unanswered.clone(),
            refused_first.clone(),
        );
        let attempt = *attempt;
        live.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let (outcome, vote_id, vote_number) = send_vote(&http, &url, &tokens[attempt.voter], body).await;
            // Latency from the scheduled time: a slow server cannot hide behind fewer requests.
            stats.record_latency(Endpoint::Vote, due.elapsed());
            drop(permit);
            live.answered.fetch_add(1, Ordering::Relaxed);
            match (&outcome, vote_id) {
                (Outcome::Accepted, Some(id)) => {
                    live.accepted.fetch_add(1, Ordering::Relaxed);
                    if matches!(attempt.kind, Kind::First | Kind::Repeat) {
                        for (source, zero) in visibility.accepted(&candidate, Instant::now()) {
                            stats.record_latency(visible(source), zero);
                        }
                    }
                    lock(&ledger).push((id, attempt.voter, attempt.candidate, vote_number));
                }
                // No answer, or "the queue has not answered yet": the server may have taken it.
                (Outcome::Unanswered, _) | (Outcome::Refused { status: 503, .. }, _)
                    if matches!(attempt.kind, Kind::First | Kind::Repeat) && outcome.outcome_unknown() =>
                {
                    lock(&unanswered).push(attempt.voter);
                }
                // Refused as if the viewer had used their votes: judged per viewer below.
                (Outcome::Refused { code, .. }, _)
                    if (attempt.kind == Kind::First && code == "DUPLICATE_VOTE")
                        || code == "VOTE_LIMIT_REACHED" =>
                {
                    lock(&refused_first).push(attempt.voter);
                }
                _ => {}
            }
            stats.record_outcome(attempt.kind, outcome);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a vote task failed")?;
    }
    let voting_secs = voting_started.elapsed().as_secs_f64();
    // Cores each part of the system used while the votes came in.
    let cpu: BTreeMap<&'static str, f64> = cpu_snapshot()
        .into_iter()
        .map(|(role, secs)| {
            (
                role,
                (secs - cpu_before.get(role).copied().unwrap_or(0.0)) / voting_secs,
            )
        })
        .collect();

    // Close on time (unless closed during the run), then let the queue drain.
    match closer {
        Some(task) => task.await.context("the closing task stopped")??,
        None => {
            api.set_status(&election, "CLOSED").await?;
        }
    }
    let drain_started = Instant::now();
    let reconciliation = verdict::wait_for_drain(
        &api,
        &election,
        Duration::from_secs(args.target.drain_timeout_secs),
    )
    .await?;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    stop_tx.send_replace(true);
    while background.join_next().await.is_some() {}
    let memory = sampler.await.unwrap_or_default();
    progress.await.ok();

    // 202s per viewer: one is right, two mean the dedup let a viewer in twice.
    let mut accepted_voters: HashMap<usize, u32> = HashMap::new();
    for (_, v, _, _) in lock(&ledger).iter() {
        *accepted_voters.entry(*v).or_default() += 1;
    }
    // The ledger, with viewers and candidates by name.
    let ledger = Ledger {
        accepted: lock(&ledger)
            .iter()
            .map(|(id, voter, candidate, number)| LedgerVote {
                vote_id: id.clone(),
                voter: voter_sub(*voter),
                candidate_id: candidates[*candidate].clone(),
                vote_number: *number,
            })
            .collect(),
        unanswered_voters: lock(&unanswered).iter().map(|v| voter_sub(*v)).collect(),
    };
    let mut verdict = verdict::check(&api, &pool, &redis, &election, &ledger, settings.policy).await?;
    verdict.push(answers_check(
        &stats,
        &live,
        &lock(&refused_first),
        &accepted_voters,
        &lock(&unanswered),
        settings.close_after.is_some(),
        settings.policy,
    ));

    let run_id = format!(
        "{}-{}",
        settings.scenario.label(),
        started_at.format("%Y%m%d-%H%M%S")
    );
    std::fs::create_dir_all(&args.report_dir)
        .with_context(|| format!("creating {}", args.report_dir.display()))?;
    let ledger_path = args.report_dir.join(format!("{run_id}.ledger.csv"));
    ledger.write_csv(&ledger_path)?;
    let report = Report::new(
        &settings,
        &plan,
        started_at,
        [election.clone(), closed, unknown],
        &stats,
        live.not_sent.load(Ordering::Relaxed),
        voting_secs,
        drain_secs,
        Readers {
            results_errors: live.results_errors.load(Ordering::Relaxed),
            sse_events: live.sse_events.load(Ordering::Relaxed),
            sse_errors: live.sse_errors.load(Ordering::Relaxed),
        },
        memory,
        cpu,
        reconciliation,
        verdict,
        &ledger_path,
    );
    let report_path = args.report_dir.join(format!("{run_id}.json"));
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    println!("{}", report.summary());
    println!("report: {}", report_path.display());
    redis.close().await;
    Ok(if report.verdict.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends one vote; the outcome, and the vote id of a 202.
async fn send_vote(
    http: &reqwest::Client,
    url: &reqwest::Url,
    token: &str,
    body: String,
) -> (Outcome, Option<String>, Option<u32>) {
    let response = http
        .post(url.clone())
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let Ok(response) = response else {
        return (Outcome::Unanswered, None, None);
    };
    let status = response.status().as_u16();
    let Ok(bytes) = response.bytes().await else {
        return (Outcome::Unanswered, None, None);
    };
    let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let (202, Some(id)) = (status, doc["voteId"].as_str()) {
        let number = doc["voteNumber"].as_u64().and_then(|n| u32::try_from(n).ok());
        return (Outcome::Accepted, Some(id.to_owned()), number);
    }
    let code = doc["code"].as_str().unwrap_or("(no code)").to_owned();
    (Outcome::Refused { status, code }, None, None)
}

/// What the client tasks share with the readers.
struct Shared {
    stats: Arc<Stats>,
    live: Arc<Live>,
    visibility: Arc<Visibility>,
}

/// The latency a source's sighting of a vote is recorded under.
fn visible(source: Source) -> Endpoint {
    match source {
        Source::Api => Endpoint::VisibleInResults,
        Source::Stream => Endpoint::VisibleInStream,
    }
}

/// Result pollers (open loop, each on its own phase) and SSE followers; both
/// read the counts they get for [`Visibility`].
fn spawn_readers(
    set: &mut JoinSet<()>,
    settings: &Settings,
    api: &Api,
    election: &str,
    shared: Shared,
    stop: &watch::Receiver<bool>,
) {
    let Shared {
        stats,
        live,
        visibility,
    } = &shared;
    let period = Duration::from_millis(settings.poll_ms);
    let results_url = format!("{}/api/v1/results/{election}", api.results_url);
    for r in 0..settings.readers {
        let phase = period.mul_f64(r as f64 / settings.readers as f64);
        let (http, url, stats, live, visibility, mut stop) = (
            api.http.clone(),
            results_url.clone(),
            stats.clone(),
            live.clone(),
            visibility.clone(),
            stop.clone(),
        );
        set.spawn(async move {
            let start = Instant::now() + phase;
            for n in 0u32.. {
                let due = start + period * n;
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = stop.changed() => return,
                }
                let body = match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.ok(),
                    _ => None,
                };
                stats.record_latency(Endpoint::Results, due.elapsed());
                let ok = body.is_some();
                if let Some(doc) = body.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
                    for took in visibility.observed(Source::Api, &doc, Instant::now()) {
                        stats.record_latency(Endpoint::VisibleInResults, took);
                    }
                }
                if !ok {
                    live.results_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let Ok(sse_http) = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
    else {
        live.sse_errors
            .fetch_add(settings.sse_clients as u64, Ordering::Relaxed);
        return;
    };
    let stream_url = format!("{results_url}/stream");
    for _ in 0..settings.sse_clients {
        let (http, url, stats, live, visibility, mut stop) = (
            sse_http.clone(),
            stream_url.clone(),
            stats.clone(),
            live.clone(),
            visibility.clone(),
            stop.clone(),
        );
        set.spawn(async move {
            let began = Instant::now();
            let response = match http.get(&url).header("Accept", "text/event-stream").send().await {
                Ok(r) if r.status().is_success() => r,
                _ => {
                    live.sse_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let mut events = livevote_testkit::sse::events(response);
            let mut first = true;
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            if let Ok(doc) = serde_json::from_str::<Value>(&event.data) {
                                if let Some(age) = event_age(&doc, chrono::Utc::now()) {
                                    stats.record_latency(Endpoint::StreamEventAge, age);
                                }
                                for took in visibility.observed(Source::Stream, &doc, Instant::now()) {
                                    stats.record_latency(Endpoint::VisibleInStream, took);
                                }
                            }
                            if first {
                                stats.record_latency(Endpoint::StreamFirstEvent, began.elapsed());
                                first = false;
                            }
                            live.sse_events.fetch_add(1, Ordering::Relaxed);
                        }
                        // The server ended the stream before the run did, or broke it.
                        None | Some(Err(_)) => {
                            live.sse_errors.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

/// How old a results document is at `now`: from its `asOf` (when the
/// service read the counts; same host clock as ours) until now. None for a
/// document without one (heartbeats).
fn event_age(doc: &Value, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let as_of = chrono::DateTime::parse_from_rfc3339(doc["asOf"].as_str()?).ok()?;
    Some(
        (now - as_of.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Reads the resident memory of every process the local stack recorded, every `every`.
async fn sample_memory(
    stack_dir: std::path::PathBuf,
    every: Duration,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<MemorySample> {
    let processes = stack_processes(&stack_dir);
    if processes.is_empty() {
        eprintln!(
            "memory not sampled: no running services recorded in {} (LIVEVOTE_STACK_DIR)",
            stack_dir.display()
        );
        return Vec::new();
    }
    let mut samples = Vec::new();
    loop {
        let t_secs = t0.elapsed().as_secs_f64();
        for (service, pid) in &processes {
            if let Some(rss_mb) = rss_mb(*pid) {
                samples.push(MemorySample {
                    t_secs,
                    service: service.clone(),
                    rss_mb,
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return samples,
        }
    }
}

/// (name, pid) of the services in the stack record (`livevote stack up`).
fn stack_processes(dir: &Path) -> Vec<(String, u32)> {
    let Ok(text) = std::fs::read_to_string(dir.join("stack.json")) else {
        return Vec::new();
    };
    let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    doc["processes"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["pid"].as_u64()? as u32)))
                .filter(|(_, pid)| rss_mb(*pid).is_some())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU seconds used so far by the processes on this machine that make up the
/// system under test, grouped by role (Linux: `/proc/<pid>/stat`, utime + stime).
pub fn cpu_snapshot() -> BTreeMap<&'static str, f64> {
    const ROLES: [(&str, &str); 7] = [
        ("livevote-inges", "ingestion"),
        ("livevote-proce", "processor"),
        ("livevote-resul", "results"),
        ("livevote-sqs-lo", "sqs endpoint"),
        ("livevote-load", "load generator"),
        ("redis-server", "redis"),
        ("postgres", "postgresql"),
    ];
    // USER_HZ is 100 on Linux.
    const TICKS: f64 = 100.0;
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."; comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let Some((_, role)) = ROLES.iter().find(|(prefix, _)| comm.starts_with(prefix)) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the comm: state is field 0, utime 11, stime 12.
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
            .sum();
        *out.entry(*role).or_default() += ticks / TICKS;
    }
    out
}

/// VmRSS of a process, in MiB (Linux).
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// A bar on a terminal; a line every 5 s elsewhere (CI logs).
async fn show_progress(total: u64, live: Arc<Live>, stats: Arc<Stats>, mut stop: watch::Receiver<bool>) {
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} {bar:36.cyan/blue} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let every = if terminal {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let began = Instant::now();
    loop {
        let answered = live.answered.load(Ordering::Relaxed);
        let p99 = stats.latency(Endpoint::Vote).map_or(0.0, |l| l.p99_ms);
        let line = format!(
            "sent {} · answered {answered} · 202 {} · in flight {} · not sent {} · p99 {p99:.1} ms",
            live.sent.load(Ordering::Relaxed),
            live.accepted.load(Ordering::Relaxed),
            live.sent.load(Ordering::Relaxed).saturating_sub(answered),
            live.not_sent.load(Ordering::Relaxed),
        );
        if terminal {
            bar.set_position(answered);
            bar.set_message(line);
        } else {
            eprintln!("[{:>6.1} s] {line}", began.elapsed().as_secs_f64());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
    bar.abandon();
}

/// Every attempt got the answer its kind calls for; shedding (503/429) and
/// unanswered requests are allowed but listed. Judged per viewer where the
/// kind alone cannot tell:
/// - when a viewer's first attempt and their repeat are in flight at once,
///   the repeat may get in first: the first then meets DUPLICATE_VOTE. That
///   swap is right as long as the viewer does have an accepted vote;
/// - a repeat answered 202 is right when the viewer's first attempt got no
///   202 (unanswered or shed, so the retry was their one vote);
/// - no viewer may be answered 202 twice.
#[allow(clippy::too_many_arguments)]
fn answers_check(
    stats: &Stats,
    live: &Live,
    refused: &[usize],
    accepted_voters: &HashMap<usize, u32>,
    unanswered: &[usize],
    closed_mid_run: bool,
    policy: RunPolicy,
) -> Check {
    // Closed during the run: any vote may meet the closed election.
    let closed_refusal = |k: Kind, o: &Outcome| {
        closed_mid_run
            && matches!(k, Kind::First | Kind::Repeat)
            && matches!(o, Outcome::Refused { code, .. } if code == "ELECTION_CLOSED")
    };
    // A viewer refused as having used their votes must have used them: one
    // 202 (`single`), `maxVotes` of them (`multi`), or requests whose answer
    // never came and may have taken the rest. `changeable` refuses nobody.
    let needed = policy.rows_per_viewer().unwrap_or(usize::MAX) as u32;
    let unanswered: std::collections::HashSet<&usize> = unanswered.iter().collect();
    let used_up =
        |v: &usize| accepted_voters.get(v).copied().unwrap_or(0) >= needed || unanswered.contains(v);
    let overtaken = refused.iter().filter(|v| used_up(v)).count() as u64;
    let mut wrong: Vec<String> = refused
        .iter()
        .filter(|v| !used_up(v))
        .map(|v| {
            format!(
                "viewer {} was refused as having voted ({} of {} 202s) with votes left",
                voter_sub(*v),
                accepted_voters.get(v).copied().unwrap_or(0),
                policy.label()
            )
        })
        .collect();
    wrong.sort();
    wrong.dedup();
    let mut twice: Vec<String> = accepted_voters
        .iter()
        .filter(|(_, n)| **n > needed)
        .map(|(v, n)| format!("viewer {} was answered 202 {n} times", voter_sub(*v)))
        .collect();
    twice.sort();
    wrong.extend(twice);
    let refusal = |o: &Outcome| matches!(o, Outcome::Refused { code, .. } if code == "DUPLICATE_VOTE" || code == "VOTE_LIMIT_REACHED");
    let repeats_in = stats.count(|k, o| k == Kind::Repeat && *o == Outcome::Accepted);
    wrong.extend(
        stats
            .outcomes()
            .into_iter()
            .filter(|(k, o, _)| {
                !o.expected_for(*k, policy)
                    && !o.is_shed()
                    && *o != Outcome::Unanswered
                    && !closed_refusal(*k, o)
            })
            .filter(|(k, o, _)| {
                {
                    // The swaps are judged above, per viewer.
                    let swapped = (*k == Kind::First && refusal(o))
                        || (*k == Kind::Repeat && *o == Outcome::Accepted && policy == RunPolicy::Single);
                    !swapped
                }
            })
            .map(|(k, o, n)| format!("{n} {} attempts answered {}", k.label(), o.label())),
    );
    let shed = stats.count(|_, o| o.is_shed());
    let unanswered = stats.count(|_, o| *o == Outcome::Unanswered);
    let not_sent = live.not_sent.load(Ordering::Relaxed);
    Check {
        name: "every attempt got the answer its kind calls for".into(),
        passed: wrong.is_empty() && not_sent == 0,
        detail: format!(
            "{} unexpected answers; {repeats_in} repeats answered 202; {overtaken} refusals of viewers who had \
             used their votes (or whose answer never came); {shed} shed (503/429), {unanswered} unanswered, \
             {not_sent} not sent (generator at --max-in-flight)",
            wrong.len()
        ),
        ids: wrong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_age_runs_from_its_as_of_and_heartbeats_have_none() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T20:00:01.250000Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let doc = serde_json::json!({"asOf": "2026-12-04T20:00:01.000000Z", "totals": []});
        assert_eq!(event_age(&doc, now), Some(Duration::from_millis(250)));
        // A reading stamped after our clock (never by much on one host) is age zero, not an error.
        let ahead = serde_json::json!({"asOf": "2026-12-04T20:00:02Z"});
        assert_eq!(event_age(&ahead, now), Some(Duration::ZERO));
        assert_eq!(event_age(&serde_json::json!({"streams": 3}), now), None);
        assert_eq!(event_age(&serde_json::json!({"asOf": "yesterday"}), now), None);
    }
}
