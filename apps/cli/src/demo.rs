//! `livevote demo`: a show end to end against the running stack. An election
//! with four candidates is created and opened, a simulated audience votes
//! at a constant rate (distinct viewers, each with its own signed token, a
//! tenth of them trying a second time), the lines close on time, the queue
//! drains, and the reconciliation verdict and the final results are printed.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;

use crate::api::{Api, ApiArgs, PolicyArgs};
use crate::issuer::claims;
use crate::view::{LiveBars, print_reconciliation, print_results};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Distinct viewers.
    #[arg(long, default_value_t = 2000)]
    pub voters: usize,
    /// Vote attempts per second (open loop: a slow service does not slow the schedule).
    #[arg(long, default_value_t = 150.0)]
    pub rate: f64,
    /// How long the lines stay open, seconds; attempts scheduled later meet a closed election.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Share of viewers who try to vote a second time, percent.
    #[arg(long, default_value_t = 10)]
    pub repeat_percent: usize,
    /// Runs ingestion, processor and results in this process on the in-memory adapters instead
    /// (NOT durable; no server needed).
    #[arg(long)]
    pub embedded: bool,
    /// With --embedded: keep serving after the demo (the printed URLs and pages work) until Ctrl-C.
    #[arg(long, requires = "embedded")]
    pub hold: bool,
    /// The show's vote policy (e.g. `--policy multi --max-votes 5`: the
    /// viewers who come back vote up to five times, and one try more is
    /// refused with VOTE_LIMIT_REACHED).
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

const CANDIDATES: [&str; 4] = ["Ada", "Grace", "Linus", "Barbara"];
/// Popularity of the candidates, in percent.
const WEIGHTS: [usize; 4] = [40, 30, 20, 10];

/// The candidate viewer `i` picks (deterministic, following [`WEIGHTS`]).
fn pick(i: usize) -> usize {
    let roll = (i.wrapping_mul(2_654_435_761) >> 7) % 100;
    let mut acc = 0;
    for (c, w) in WEIGHTS.iter().enumerate() {
        acc += w;
        if roll < acc {
            return c;
        }
    }
    0
}

/// What the audience saw.
#[derive(Debug, Default)]
struct Tally {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    closed: AtomicU64,
    refused: AtomicU64,
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.voters > 0, "--voters must be at least 1");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be a positive number"
    );
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    if args.embedded {
        return crate::embedded::run(args).await;
    }
    show(args, &Api::new(&args.api)?).await
}

/// The show, against the services `api` talks to.
pub async fn show(args: &DemoArgs, api: &Api) -> anyhow::Result<ExitCode> {
    api.ensure_ready().await?;

    // The election.
    let title = format!("livevote demo {}", chrono::Utc::now().format("%H:%M:%S"));
    let (id, candidate_ids) = api
        .create_election_ids_with(&title, &CANDIDATES, (args.seconds / 60 + 10) as i64, &args.policy)
        .await?;
    let policy = args.policy.policy.as_deref().unwrap_or("single");
    println!("election {id}: {title} (policy {policy})");

    // Tokens are signed before the clock starts: RS256 signing is far costlier than verifying.
    let multi = MultiProgress::new();
    let signing = multi.add(ProgressBar::new(args.voters as u64));
    signing.set_style(bar_style("signing viewer tokens"));
    let issuer = args.api.issuer.issuer();
    let mut tokens = Vec::with_capacity(args.voters);
    for i in 0..args.voters {
        tokens.push(issuer.token(&claims(
            &format!("demo|viewer-{i:06}"),
            false,
            false,
            Duration::from_secs(3600),
        )));
        signing.inc(1);
    }
    signing.finish_and_clear();

    // Who votes when: every viewer once, then a share of them again for
    // someone else (under `multi`, as many times again as the policy gives,
    // so their last try meets the limit).
    let mut attempts: Vec<(usize, usize)> = (0..args.voters).map(|i| (i, pick(i))).collect();
    let repeaters = args.voters * args.repeat_percent.min(100) / 100;
    let comebacks = usize::from(args.policy.max_votes.unwrap_or(1).max(1));
    for round in 1..=comebacks {
        attempts.extend((0..repeaters).map(|k| {
            let i = k * args.voters / repeaters.max(1);
            (i, (pick(i) + round) % CANDIDATES.len())
        }));
    }

    api.open(&id).await?;
    let opened = Instant::now();
    let lines_close = opened + Duration::from_secs(args.seconds);
    println!(
        "lines open: {} attempts from {} viewers at {}/s, closing in {} s",
        attempts.len(),
        args.voters,
        args.rate,
        args.seconds
    );
    let sending = multi.add(ProgressBar::new(attempts.len() as u64));
    sending.set_style(bar_style("votes sent"));
    let bars = LiveBars::new(&multi, &api.results_of(&id).await?);

    let tally = Arc::new(Tally::default());
    // Every vote answered 202: vote id -> (viewer, candidate id), for the exact check.
    let accepted_ids: Arc<std::sync::Mutex<HashMap<String, (usize, String)>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(256));
    let tokens = Arc::new(tokens);
    let mut tasks = tokio::task::JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut refresh = Instant::now();
    for (n, (viewer, candidate)) in attempts.iter().copied().enumerate() {
        let due = opened + period.mul_f64(n as f64);
        if due >= lines_close {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (client, tokens, counts, ids, election) = (
            api.clone(),
            tokens.clone(),
            tally.clone(),
            accepted_ids.clone(),
            id.clone(),
        );
        let candidate_id = candidate_ids[candidate].clone();
        let sent = sending.clone();
        tasks.spawn(async move {
            let reply = client.vote(&tokens[viewer], &election, &candidate_id).await;
            drop(permit);
            sent.inc(1);
            match reply {
                Ok(r) if r.status == 202 => {
                    counts.accepted.fetch_add(1, Ordering::Relaxed);
                    if let Some(v) = r.body["voteId"].as_str() {
                        ids.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(v.to_owned(), (viewer, candidate_id));
                    }
                }
                Ok(r) if r.body["code"] == "DUPLICATE_VOTE" || r.body["code"] == "VOTE_LIMIT_REACHED" => {
                    counts.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) if r.body["code"] == "ELECTION_CLOSED" => {
                    counts.closed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        if refresh.elapsed() >= Duration::from_millis(500) {
            refresh = Instant::now();
            sending.set_message(summary(&tally));
            if let Ok(doc) = api.results_of(&id).await {
                bars.update(&doc);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a viewer task failed")?;
    }
    sending.set_message(summary(&tally));
    sending.finish();

    // Close on time, then let the queue drain.
    tokio::time::sleep_until(lines_close.into()).await;
    api.set_status(&id, "CLOSED").await?;
    let draining = multi.add(ProgressBar::new_spinner());
    draining.set_message("lines closed; waiting for the queue to drain");
    draining.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let reconciliation = loop {
        let r = api.reconciliation(&id).await?;
        if let Ok(doc) = api.results_of(&id).await {
            bars.update(&doc);
        }
        if r["verdict"] != "pending" {
            break r;
        }
        draining.set_message(format!(
            "waiting for the queue to drain: {} messages in flight",
            r["inFlight"]
        ));
        if started.elapsed() > Duration::from_secs(180) {
            bail!(
                "the queue did not drain within 3 minutes: is the processor running? (`livevote stack status`)"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    draining.finish_and_clear();
    bars.finish();

    // Final results: persisted counts, once reconciled.
    let mut results = api.results_of(&id).await?;
    let waited = Instant::now();
    while results["final"] != true
        && reconciliation["allowsFinal"] == true
        && waited.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(300)).await;
        results = api.results_of(&id).await?;
    }
    println!();
    println!("audience: {}", summary(&tally));
    print_reconciliation(&reconciliation);
    print_results(&results);
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let persisted = reconciliation["persisted"].as_u64().unwrap_or(0);
    let shown = results["totalVotes"].as_u64().unwrap_or(0);
    let missing = exact_check(api, &tokens, &accepted_ids, &multi).await?;
    println!();
    if missing.is_empty() {
        println!(
            "exact check: every one of the {accepted} votes answered 202 is stored, for the candidate chosen"
        );
    } else {
        println!(
            "exact check: {} votes answered 202 are not stored as cast: {missing:?}",
            missing.len()
        );
    }
    println!("on air:  {}/onair/{id}", api.results_url);
    println!(
        "audit:   {}/audit  (token: livevote token --sub you --auditor)",
        api.results_url
    );
    println!(
        "demo: verdict={} accepted={accepted} persisted={persisted} shown={shown} final={}",
        reconciliation["verdict"].as_str().unwrap_or("?"),
        results["final"]
    );
    // Under `changeable` the results show each viewer's current vote: one
    // per viewer with a 202, while every change is stored.
    let expected_shown = if policy == "changeable" {
        let ids = accepted_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.values()
            .map(|(viewer, _)| *viewer)
            .collect::<std::collections::HashSet<_>>()
            .len() as u64
    } else {
        persisted
    };
    let ok = reconciliation["verdict"] == "balanced"
        && accepted == persisted
        && shown == expected_shown
        && results["final"] == true
        && missing.is_empty();
    if !ok {
        eprintln!("livevote demo: the counts do not balance (see above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks for the receipt of every vote answered 202, with its viewer's token:
/// each must be stored, for the candidate the viewer chose. Returns the ids
/// that are not.
async fn exact_check(
    api: &Api,
    tokens: &Arc<Vec<String>>,
    accepted: &std::sync::Mutex<HashMap<String, (usize, String)>>,
    multi: &MultiProgress,
) -> anyhow::Result<Vec<String>> {
    let votes: Vec<(String, (usize, String))> = accepted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let checking = multi.add(ProgressBar::new(votes.len() as u64));
    checking.set_style(bar_style("checking receipts"));
    let limit = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for (vote_id, (viewer, candidate)) in votes {
        let (api, tokens, limit, checking) = (api.clone(), tokens.clone(), limit.clone(), checking.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let request = api
                .http
                .get(format!("{}/api/v1/votes/{vote_id}/receipt", api.results_url))
                .bearer_auth(&tokens[viewer]);
            let stored = match request.send().await {
                Ok(r) if r.status().is_success() => {
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    body["state"] == "persisted" && body["candidateId"] == candidate.as_str()
                }
                _ => false,
            };
            checking.inc(1);
            (!stored).then_some(vote_id)
        });
    }
    let mut missing = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Some(id) = done.context("a receipt check failed")? {
            missing.push(id);
        }
    }
    checking.finish_and_clear();
    missing.sort();
    Ok(missing)
}

fn summary(t: &Tally) -> String {
    format!(
        "202 accepted {} · 409 repeat refused {} · closed {} · other refusals {}",
        t.accepted.load(Ordering::Relaxed),
        t.duplicates.load(Ordering::Relaxed),
        t.closed.load(Ordering::Relaxed),
        t.refused.load(Ordering::Relaxed)
    )
}

fn bar_style(what: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{what:>22} {{bar:40.cyan/blue}} {{pos}}/{{len}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_pick_candidates_by_popularity() {
        let mut counts = [0usize; 4];
        for i in 0..10_000 {
            counts[pick(i)] += 1;
        }
        // Roughly 40/30/20/10, and everyone gets votes.
        assert!(
            counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[3],
            "{counts:?}"
        );
        assert!(counts[3] > 500, "{counts:?}");
    }
}
