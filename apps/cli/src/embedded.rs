//! `livevote demo --embedded`: the three services' use cases wired to the
//! in-memory adapters in one process. NOT DURABLE: nothing survives the
//! process. It shows the flow of DESIGN.md end to end (cast -> queue ->
//! persist -> reconcile) without any server.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use livevote_domain::{CorrelationId, VoterId};
use livevote_ingestion::{
    CacheConfig, CastConfig, CastVote, CastVoteError, CastVoteService, ElectionCache, PublisherConfig,
    VoteBatcher,
};
use livevote_memory::fixtures::{active_election, operator};
use livevote_memory::{
    DedupConfig, FakeHumanCheck, MemoryDatabase, MemoryDedup, MemoryQueue, NoMetrics, QueueConfig,
    SystemClock,
};
use livevote_ports::{AdminAction, Clock, ElectionAdmin, QueueInspector};
use livevote_processor::{PersistConfig, PersistService};
use livevote_results::ResultsService;

pub async fn run(voters: usize, repeat_percent: usize) -> anyhow::Result<ExitCode> {
    println!(
        "livevote embedded demo (in-memory adapters, NOT DURABLE: nothing is kept): {voters} voters, \
         {repeat_percent}% try twice"
    );

    let clock = SystemClock;
    let db = MemoryDatabase::new(clock);
    let dedup = MemoryDedup::new(clock, DedupConfig::default());
    let queue = MemoryQueue::new(clock, QueueConfig::default());
    let names = ["Ada", "Grace", "Linus", "Barbara", "Ken"];
    let election = active_election(&db, &names, clock.now(), ChronoDuration::minutes(10), |_| {}).await;
    let cache = Arc::new(ElectionCache::new(db.clone(), CacheConfig::default()));
    let (batcher, publisher) = VoteBatcher::start(queue.clone(), PublisherConfig::default(), NoMetrics);
    let cast = CastVoteService::new(
        cache,
        dedup.clone(),
        batcher,
        FakeHumanCheck::AlwaysHuman,
        clock,
        NoMetrics,
        CastConfig::default(),
    );
    let persist = PersistService::new(
        queue.clone(),
        db.clone(),
        db.clone(),
        clock,
        NoMetrics,
        PersistConfig {
            receive_max: 10,
            receive_wait: Duration::from_millis(50),
        },
    );
    let results = ResultsService::new(db.clone(), dedup.clone(), db.clone(), queue.clone(), clock);

    let processor = {
        let persist = persist.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = persist.run_once().await {
                    eprintln!("processor: {e}");
                }
            }
        })
    };

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(voters);
    for i in 0..voters {
        let cast = cast.clone();
        let election = election.clone();
        tasks.push(tokio::spawn(async move {
            // A skewed audience, so the bars differ.
            const PICKS: [usize; 11] = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4];
            let candidate = election.candidates()[PICKS[i % PICKS.len()] % election.candidates().len()].id();
            let request = CastVote {
                voter: VoterId::parse(format!("demo|viewer-{i}")).expect("valid voter"),
                election_id: election.id(),
                candidate_id: candidate,
                captcha_token: None,
                idempotency_key: None,
                correlation_id: CorrelationId::generate(),
                remote_ip: None,
            };
            let first = cast.cast(request.clone()).await;
            let second = if i * 100 / voters.max(1) < repeat_percent {
                Some(cast.cast(request).await)
            } else {
                None
            };
            (first, second)
        }));
    }
    let (mut accepted, mut refused_repeats, mut other_errors) = (HashSet::new(), 0usize, 0usize);
    for t in tasks {
        let (first, second) = t.await?;
        match first {
            Ok(receipt) => {
                accepted.insert(receipt.vote_id);
            }
            Err(e) => {
                other_errors += 1;
                eprintln!("vote refused: {e}");
            }
        }
        match second {
            Some(Err(CastVoteError::AlreadyVoted { .. })) => refused_repeats += 1,
            Some(other) => {
                other_errors += 1;
                eprintln!("unexpected answer to a repeat: {other:?}");
            }
            None => {}
        }
    }
    let elapsed = started.elapsed();
    println!(
        "accepted {} votes in {:.2} s ({:.0}/s), {refused_repeats} repeats refused as already voted, {other_errors} other errors",
        accepted.len(),
        elapsed.as_secs_f64(),
        accepted.len() as f64 / elapsed.as_secs_f64()
    );

    // Lines close; wait for the queue to drain.
    let mut closing = db.load(election.id()).await?;
    closing.close(clock.now())?;
    db.update(
        &closing,
        AdminAction::Closed,
        &operator(),
        "demo: lines closed",
        clock.now(),
    )
    .await?;
    while queue.stats().await?.pending_messages() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    processor.abort();
    drop(cast);
    publisher.await?;

    let stored: HashSet<_> = db
        .all_votes()
        .into_iter()
        .map(|v| v.record.vote.vote_id)
        .collect();
    let missing = accepted.difference(&stored).count();
    let r = results.reconcile(election.id()).await?;
    println!(
        "reconciliation: accepted {} persisted {} duplicates {} dead-lettered {} in flight {} -> {}",
        r.counts.accepted,
        r.counts.persisted,
        r.counts.duplicates,
        r.counts.dead_lettered,
        r.counts.in_flight,
        r.verdict
    );
    println!("exact check: {missing} accepted vote ids missing from the store");
    let res = results.results(election.id()).await?;
    println!(
        "final results ({}):",
        if res.is_final { "final" } else { "not final" }
    );
    if let Some(tally) = &res.tally {
        for ((candidate, count), pct) in election
            .candidates()
            .iter()
            .zip(tally.counts())
            .zip(&res.percentages)
        {
            let bar = "#".repeat((pct.as_f64() / 2.0).round() as usize);
            println!(
                "  {:<10} {:>7} {:>5}% {bar}",
                candidate.name().as_str(),
                count.votes,
                pct
            );
        }
    }
    if missing > 0 || r.verdict.is_loss() || other_errors > 0 {
        anyhow::bail!("demo found a problem");
    }
    Ok(ExitCode::SUCCESS)
}
