//! Measures the storage adapters against the bare operations they are made
//! of, on the local servers, and prints the figures as a table.
//!
//! 1. PostgreSQL: `PgVoteStore::persist_batch` (one transaction: insert,
//!    conflict classification, tally shard increments, synchronous commit)
//!    versus a plain `INSERT ... SELECT FROM UNNEST ... ON CONFLICT DO NOTHING`
//!    of rows of the same shape into the same schema, with the same batch
//!    size and the same number of concurrent connections. Rounds alternate
//!    which one goes first; the median round is reported, and the ratio.
//!    With `--processor-bin PATH`, the `livevote-processor` binary drains a
//!    pre-filled queue `rounds` times, each drain followed by a plain
//!    INSERT into the same database; the median ratio is reported.
//! 2. Redis: claim + confirm pairs per second through `RedisStore`, with
//!    many votes in flight at once (as the ingestion service has).
//!
//! Usage: `adapter-bench [--votes N] [--batch B] [--workers W] [--rounds R]
//! [--pairs P] [--concurrency C] [--redis-pool N]`. Servers: `LIVEVOTE_TEST_DATABASE_URL`,
//! `LIVEVOTE_TEST_REDIS_URL` (defaults: the local ones). It creates a scratch
//! database `livevote_test_*` and Redis keys `lvtest-*`, which
//! `scripts/test.sh` deletes on its next run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use livevote_domain::{Election, ElectionId, VoteRecord};
use livevote_ports::{ClaimOutcome, ConfirmOutcome, ElectionAdmin, LiveTallies, VoteDedup, VoteStore};
use livevote_postgres::{PgElections, PgVoteStore, StoreConfig};
use livevote_redis::{RedisConfig, RedisStore};
use livevote_testkit::fixtures::{new_election, operator, record};
use livevote_testkit::{scratch_database, test_server_url};
use sqlx::PgPool;

#[derive(Debug, Clone, Copy)]
struct Options {
    votes: usize,
    batch: usize,
    workers: usize,
    rounds: usize,
    pairs: usize,
    concurrency: usize,
    redis_pool: usize,
}

impl Options {
    fn parse(args: Vec<String>) -> anyhow::Result<Self> {
        let mut o = Options {
            votes: 100_000,
            batch: 1_000,
            workers: 4,
            rounds: 3,
            pairs: 100_000,
            concurrency: 256,
            redis_pool: RedisConfig::default().pool_size,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let value = args.next().with_context(|| format!("{flag} needs a value"))?;
            let n: usize = value
                .parse()
                .with_context(|| format!("{flag} {value}: not a number"))?;
            ensure!(n > 0, "{flag} must be at least 1");
            match flag.as_str() {
                "--votes" => o.votes = n,
                "--batch" => o.batch = n,
                "--workers" => o.workers = n,
                "--rounds" => o.rounds = n,
                "--pairs" => o.pairs = n,
                "--concurrency" => o.concurrency = n,
                "--redis-pool" => o.redis_pool = n,
                other => bail!("unknown flag {other} (see the doc comment of adapter_bench.rs)"),
            }
        }
        Ok(o)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--processor-bin PATH` is the one flag that is not a number.
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let processor_bin = match args.iter().position(|a| a == "--processor-bin") {
        Some(i) => {
            let path = args.get(i + 1).context("--processor-bin needs a path")?.clone();
            args.drain(i..=i + 1);
            Some(path)
        }
        None => None,
    };
    let o = Options::parse(args)?;
    println!("adapter-bench {o:?}");
    let (persist, plain) = postgres(o).await?;
    // The drain is repeated `rounds` times, each against a plain INSERT run
    // right after it: one drain moves by a tenth or more from run to run.
    let mut drains = Vec::new();
    if let Some(path) = &processor_bin {
        for round in 0..o.rounds {
            let d = processor(o, path).await?;
            println!(
                "drain {}/{}: {:.0} votes/s, {:.1} us CPU a vote, plain right after {:.0} rows/s, ratio {:.2}",
                round + 1,
                o.rounds,
                d.rate,
                d.cpu_us_per_vote,
                d.plain_after,
                d.rate / d.plain_after
            );
            drains.push(d);
        }
    }
    let pairs = redis(o).await?;
    println!();
    println!("| measurement | figure |");
    println!("|---|---|");
    println!(
        "| PgVoteStore::persist_batch, median of {} rounds | {persist:.0} votes/s |",
        o.rounds
    );
    println!("| plain INSERT ... UNNEST ... ON CONFLICT DO NOTHING, median | {plain:.0} rows/s |");
    println!("| ratio persist / plain | {:.2} |", persist / plain);
    println!(
        "| Redis claim + confirm in batches of 32, {} in flight, {} connections | {pairs:.0} pairs/s |",
        o.concurrency, o.redis_pool
    );
    if !drains.is_empty() {
        let n = drains.len();
        let ratios: Vec<f64> = drains.iter().map(|d| d.rate / d.plain_after).collect();
        let (low, high) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
        let rate = median(drains.iter().map(|d| d.rate).collect());
        println!(
            "| livevote-processor draining {} queued votes into PostgreSQL, median of {n} | {rate:.0} votes/s |",
            o.votes
        );
        println!(
            "| livevote-processor CPU per stored vote (its own process), median | {:.1} us |",
            median(drains.iter().map(|d| d.cpu_us_per_vote).collect())
        );
        println!(
            "| plain INSERT right after each drain, same database, median | {:.0} rows/s |",
            median(drains.iter().map(|d| d.plain_after).collect())
        );
        println!(
            "| ratio processor / plain right after, median of {n} (target >= 0.9) | {:.2} ({low:.2}-{high:.2}) |",
            median(ratios.clone())
        );
    }
    Ok(())
}

/// What the processor's drain measured.
struct Drain {
    /// Votes/s from the processor's start until the last vote was stored.
    rate: f64,
    /// The processor process's CPU (user + system) per stored vote.
    cpu_us_per_vote: f64,
    /// A plain batched INSERT of as many rows into the same database just
    /// after: the baseline nearest in time and table size.
    plain_after: f64,
}

/// The real processor binary draining `o.votes` votes, queued beforehand on
/// the local SQS endpoint, into a scratch database (checked exactly once),
/// then a plain INSERT round into the same database.
async fn processor(o: Options, bin: &str) -> anyhow::Result<Drain> {
    use livevote_ports::VoteQueue;
    let url = test_server_url();
    let pool = scratch_database(&url, u32::try_from(o.workers + 1)?).await?;
    let db = pool
        .connect_options()
        .get_database()
        .unwrap_or_default()
        .to_owned();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b).to_owned();
    // Open for voting, as every election with queued votes is.
    let election = livevote_testkit::fixtures::active_election(
        &PgElections::new(pool.clone()),
        &["Ada", "Grace", "Linus", "Barbara"],
        Utc::now(),
        chrono::Duration::hours(1),
        |_| {},
    )
    .await;
    let endpoint =
        std::env::var("LIVEVOTE_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let client = livevote_sqs::local_client(&endpoint);
    let name = format!("lvtest-bench-{}", uuid::Uuid::new_v4().simple());
    let queue = livevote_sqs::SqsQueue::new(
        client.clone(),
        livevote_sqs::create_queues(&client, &name, livevote_sqs::QueueSettings::default()).await?,
    );
    let votes: Vec<VoteRecord> = (0..o.votes)
        .map(|i| record(&election, &format!("bench|proc-{i}"), i % 4, Utc::now()))
        .collect();
    println!("processor: queueing {} votes", votes.len());
    for chunk in votes.chunks(1000) {
        ensure!(
            queue.publish(chunk).await.iter().all(Result::is_ok),
            "publish failed"
        );
    }
    let env: Vec<(String, String)> = [
        ("LIVEVOTE_PROCESSOR_LISTEN", "127.0.0.1:0".to_string()),
        ("LIVEVOTE_DATABASE_URL", format!("{base}/{db}")),
        ("LIVEVOTE_DATABASE_POOL", o.workers.to_string()),
        ("LIVEVOTE_SQS_ENDPOINT", endpoint.clone()),
        ("LIVEVOTE_QUEUE_NAME", name),
        ("LIVEVOTE_LOG", "warn,livevote_processor=info".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // The clock starts once the processor is up (connected, queue found), not at spawn.
    let processor = livevote_testkit::ServiceProcess::start(bin, &[], &env, "livevote-processor listening")?;
    let started = Instant::now();
    let cpu_before = livevote_loadtests::cpu_time(processor.pid());
    let want = i64::try_from(o.votes)?;
    let result = loop {
        // The tally shards grow in the same transaction as the rows, and summing
        // a few hundred of them costs the database nothing; counting the rows
        // every 20 ms took a good part of a core from the drain being measured.
        let stored: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(votes), 0)::int8 FROM tally_shards WHERE election_id = $1",
        )
        .bind(election.id().as_uuid())
        .fetch_one(&pool)
        .await?;
        if stored >= want {
            break Ok(o.votes as f64 / started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(600) {
            break Err(anyhow::anyhow!("only {stored} of {want} stored after 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu = livevote_loadtests::cpu_time(processor.pid()).saturating_sub(cpu_before);
    drop(processor);
    let rate = result?;
    let store = PgVoteStore::new(pool.clone(), StoreConfig::default());
    let tallied: u64 = store
        .persisted_tallies(election.id())
        .await?
        .iter()
        .map(|c| c.votes)
        .sum();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM votes WHERE election_id = $1")
        .bind(election.id().as_uuid())
        .fetch_one(&pool)
        .await?;
    ensure!(
        tallied == o.votes as u64 && rows == want,
        "tally shards say {tallied}, rows {rows}, expected {}",
        o.votes
    );
    println!(
        "processor: {} votes stored in {:.2} s: {rate:.0} votes/s",
        o.votes,
        o.votes as f64 / rate
    );
    let other = new_election_in(&PgElections::new(pool.clone()), "Bench plain after drain").await?;
    let plain_after = run_plain(&pool, batches(&other, "after", o, Utc::now()), o).await?;
    Ok(Drain {
        rate,
        cpu_us_per_vote: cpu.as_secs_f64() * 1e6 / o.votes as f64,
        plain_after,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn new_election_in(admin: &PgElections, title: &str) -> anyhow::Result<Election> {
    let now = Utc::now();
    let new = new_election(
        title,
        &["Ada", "Grace", "Linus", "Barbara"],
        now,
        now + chrono::Duration::hours(1),
    );
    let election = Election::create(
        ElectionId::generate(),
        new,
        now,
        livevote_domain::CandidateId::generate,
    )?;
    admin.create(&election, &operator(), now).await?;
    Ok(election)
}

/// `votes` records for `election`, in batches, every voter distinct.
fn batches(election: &Election, tag: &str, o: Options, at: DateTime<Utc>) -> Vec<Vec<VoteRecord>> {
    let all: Vec<VoteRecord> = (0..o.votes)
        .map(|i| record(election, &format!("bench|{tag}-{i}"), i % 4, at))
        .collect();
    all.chunks(o.batch).map(<[VoteRecord]>::to_vec).collect()
}

/// Runs `work` on every batch with `workers` concurrent tasks; returns items/s.
async fn timed<T, F, Fut>(items: Arc<Vec<T>>, workers: usize, work: F) -> anyhow::Result<f64>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<Vec<T>>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<usize>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (items, next, work) = (items.clone(), next.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    return anyhow::Ok(done);
                }
                done += work(items.clone(), i).await?;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn run_persist(store: &PgVoteStore, batches: Vec<Vec<VoteRecord>>, o: Options) -> anyhow::Result<f64> {
    let store = store.clone();
    timed(
        Arc::new(batches),
        o.workers,
        move |b: Arc<Vec<Vec<VoteRecord>>>, i| {
            let store = store.clone();
            async move {
                let report = store.persist_batch(&b[i]).await?;
                ensure!(
                    report.inserted() == b[i].len(),
                    "persist inserted {} of {}",
                    report.inserted(),
                    b[i].len()
                );
                Ok(report.inserted())
            }
        },
    )
    .await
}

/// Column arrays of one batch, built before timing (the plain insert gets every advantage).
struct Columns {
    vote_ids: Vec<uuid::Uuid>,
    election_ids: Vec<uuid::Uuid>,
    candidate_ids: Vec<uuid::Uuid>,
    voter_ids: Vec<String>,
    accepted_at: Vec<DateTime<Utc>>,
    correlation_ids: Vec<String>,
}

fn columns(batch: &[VoteRecord]) -> Columns {
    Columns {
        vote_ids: batch.iter().map(|r| r.vote.vote_id.as_uuid()).collect(),
        election_ids: batch.iter().map(|r| r.vote.election_id.as_uuid()).collect(),
        candidate_ids: batch.iter().map(|r| r.vote.candidate_id.as_uuid()).collect(),
        voter_ids: batch
            .iter()
            .map(|r| r.vote.voter_id.as_str().to_owned())
            .collect(),
        accepted_at: batch.iter().map(|r| r.vote.accepted_at).collect(),
        correlation_ids: batch
            .iter()
            .map(|r| r.correlation_id.as_str().to_owned())
            .collect(),
    }
}

async fn run_plain(pool: &PgPool, batches: Vec<Vec<VoteRecord>>, o: Options) -> anyhow::Result<f64> {
    let cols: Vec<Columns> = batches.iter().map(|b| columns(b)).collect();
    let pool = pool.clone();
    timed(Arc::new(cols), o.workers, move |c: Arc<Vec<Columns>>, i| {
        let pool = pool.clone();
        async move {
            let c = &c[i];
            let done = sqlx::query(
                "INSERT INTO votes (vote_id, election_id, candidate_id, voter_id, accepted_at, correlation_id)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(&c.vote_ids)
            .bind(&c.election_ids)
            .bind(&c.candidate_ids)
            .bind(&c.voter_ids)
            .bind(&c.accepted_at)
            .bind(&c.correlation_ids)
            .execute(&pool)
            .await?;
            Ok(usize::try_from(done.rows_affected())?)
        }
    })
    .await
}

async fn postgres(o: Options) -> anyhow::Result<(f64, f64)> {
    let url = test_server_url();
    let connections = u32::try_from(o.workers + 1)?;
    let pool = scratch_database(&url, connections)
        .await
        .with_context(|| format!("PostgreSQL at {url}"))?;
    let admin = PgElections::new(pool.clone());
    let store = PgVoteStore::new(pool.clone(), StoreConfig::default());
    let (mut persist, mut plain) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let at = Utc::now();
        let e_persist = new_election_in(&admin, "Bench persist").await?;
        let e_plain = new_election_in(&admin, "Bench plain").await?;
        let b_persist = batches(&e_persist, &format!("p{round}"), o, at);
        let b_plain = batches(&e_plain, &format!("r{round}"), o, at);
        // Alternate which goes first, so table growth and caches favour neither.
        let (p, r) = if round % 2 == 0 {
            let p = run_persist(&store, b_persist, o).await?;
            (p, run_plain(&pool, b_plain, o).await?)
        } else {
            let r = run_plain(&pool, b_plain, o).await?;
            (run_persist(&store, b_persist, o).await?, r)
        };
        // The persisted tallies must equal the rows, or the figure means nothing.
        let tallied: u64 = store
            .persisted_tallies(e_persist.id())
            .await?
            .iter()
            .map(|c| c.votes)
            .sum();
        ensure!(
            tallied == o.votes as u64,
            "tally shards say {tallied}, expected {}",
            o.votes
        );
        println!(
            "round {}/{}: persist_batch {p:.0} votes/s, plain insert {r:.0} rows/s, ratio {:.2}",
            round + 1,
            o.rounds,
            p / r
        );
        persist.push(p);
        plain.push(r);
    }
    Ok((median(persist), median(plain)))
}

async fn redis(o: Options) -> anyhow::Result<f64> {
    let url = std::env::var("LIVEVOTE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let prefix = format!("lvtest-bench-{}", uuid::Uuid::new_v4().simple());
    let store = RedisStore::connect(RedisConfig {
        url: url.clone(),
        key_prefix: prefix.clone(),
        pool_size: o.redis_pool,
        ..RedisConfig::default()
    })
    .await
    .with_context(|| format!("Redis at {url}"))?;
    let now = Utc::now();
    let election = Election::create(
        ElectionId::generate(),
        new_election(
            "Bench redis",
            &["A", "B", "C", "D"],
            now,
            now + chrono::Duration::hours(1),
        ),
        now,
        livevote_domain::CandidateId::generate,
    )?;
    // In batches of 32, as the vote pipeline sends them (claim_many, then
    // confirm_many), `concurrency / 32` batches at once.
    const BATCH: usize = 32;
    let claims: Vec<Vec<livevote_ports::Claim>> = (0..o.pairs)
        .map(|i| livevote_ports::Claim {
            vote: record(&election, &format!("bench|{i}"), i % 4, now).vote,
            idempotency_key: None,
            policy: livevote_domain::VotePolicy::Single,
        })
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[_]>::to_vec)
        .collect();
    println!(
        "redis: {} claim + confirm pairs in batches of {BATCH}, {} in flight",
        o.pairs, o.concurrency
    );
    let s = store.clone();
    let progress = Arc::new(AtomicUsize::new(0));
    let reporter = {
        let progress = progress.clone();
        let total = o.pairs;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                println!("redis: {} / {total} pairs", progress.load(Ordering::Relaxed));
            }
        })
    };
    let rate = timed(
        Arc::new(claims),
        (o.concurrency / BATCH).max(1),
        move |c: Arc<Vec<Vec<livevote_ports::Claim>>>, i| {
            let (s, progress) = (s.clone(), progress.clone());
            async move {
                let batch = &c[i];
                for answer in s.claim_many(batch).await {
                    ensure!(matches!(answer?, ClaimOutcome::Claimed(_)), "claim refused");
                }
                for answer in s.confirm_many(batch).await {
                    ensure!(answer? == ConfirmOutcome::Confirmed, "confirm refused");
                }
                progress.fetch_add(batch.len(), Ordering::Relaxed);
                Ok(batch.len())
            }
        },
    )
    .await?;
    reporter.abort();
    let counted: u64 = store
        .accepted_counts(election.id())
        .await?
        .iter()
        .map(|c| c.votes)
        .sum();
    ensure!(
        counted == o.pairs as u64,
        "live tallies say {counted}, expected {}",
        o.pairs
    );
    store.close().await;
    let cleaner = fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&url)?).build()?;
    fred::prelude::ClientLike::init(&cleaner).await?;
    let deleted = livevote_loadtests::delete_redis_prefix(&cleaner, &prefix).await?;
    println!("redis: deleted the run's {deleted} keys");
    Ok(rate)
}
