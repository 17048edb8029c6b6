//! Black-box tests of `livevote-processor`: the real binary against
//! PostgreSQL (a scratch database per test) and the local SQS endpoint
//! (queues per test). Votes are published the way ingestion publishes them.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use livevote_domain::{Election, VoteRecord};
use livevote_ports::{QueueInspector, VoteQueue};
use livevote_postgres::PgElections;
use livevote_sqs::QueueSettings;
use livevote_testkit::backends::Backends;
use livevote_testkit::fixtures::{active_election, record};
use livevote_testkit::{Relay, ServiceProcess, test_server_url};

struct Stack {
    backends: Backends,
    election: Election,
}

impl std::ops::Deref for Stack {
    type Target = Backends;
    fn deref(&self) -> &Backends {
        &self.backends
    }
}

impl Stack {
    async fn new(settings: QueueSettings) -> Self {
        let backends = Backends::start_with("https://livevote-processor.test/", settings).await;
        let elections = PgElections::new(backends.pool.clone());
        let election = active_election(
            &elections,
            &["Ada", "Grace", "Linus"],
            Utc::now(),
            ChronoDuration::hours(1),
            |_| {},
        )
        .await;
        Self { backends, election }
    }

    fn votes(&self, n: usize, tag: &str) -> Vec<VoteRecord> {
        (0..n)
            .map(|i| record(&self.election, &format!("auth0|{tag}-{i}"), i % 3, Utc::now()))
            .collect()
    }

    /// Publishes in calls of up to 1,000 votes, as the ingestion batcher does.
    async fn publish(&self, votes: &[VoteRecord]) {
        for chunk in votes.chunks(1000) {
            let outcomes = self.queue.publish(chunk).await;
            assert!(outcomes.iter().all(Result::is_ok), "publish failed");
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.backends.env();
        for (k, v) in [
            ("LIVEVOTE_PROCESSOR_LISTEN", "127.0.0.1:0"),
            ("LIVEVOTE_PROCESSOR_RECEIVE_WAIT_SECS", "1"),
            ("LIVEVOTE_PROCESSOR_EXTEND_EVERY_SECS", "1"),
            ("LIVEVOTE_PROCESSOR_EXTENSION_SECS", "5"),
            ("LIVEVOTE_LOG", "info"),
        ] {
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    async fn stored(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM votes WHERE election_id = $1")
            .bind(self.election.id().as_uuid())
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until the first vote is stored (the processor is mid-run).
    async fn wait_first_stored(&self) {
        let started = Instant::now();
        while self.stored().await == 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "nothing stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `want` votes are stored and the queue is empty.
    async fn wait_drained(&self, want: i64, limit: Duration) {
        let started = Instant::now();
        loop {
            let stored = self.stored().await;
            let stats = self.queue.stats().await.unwrap();
            if stored >= want && stats.visible == 0 && stats.in_flight == 0 {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "not drained after {limit:?}: {stored} of {want} stored, {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every vote exactly once with its candidate, and the persisted tallies
    /// equal to the rows, by SQL.
    async fn assert_exactly(&self, votes: &[VoteRecord]) {
        assert_eq!(self.stored().await, votes.len() as i64, "one row per vote");
        let ids: Vec<uuid::Uuid> = votes.iter().map(|v| v.vote.vote_id.as_uuid()).collect();
        let found: i64 = sqlx::query_scalar("SELECT count(*) FROM votes WHERE vote_id = ANY($1)")
            .bind(&ids)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        assert_eq!(found, votes.len() as i64, "every published vote is stored");
        let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
            "SELECT candidate_id, count(*) FROM votes WHERE election_id = $1 GROUP BY candidate_id ORDER BY 1",
        )
        .bind(self.election.id().as_uuid())
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let tallies: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
            "SELECT candidate_id, sum(votes)::bigint FROM tally_shards WHERE election_id = $1 \
             GROUP BY candidate_id HAVING sum(votes) > 0 ORDER BY 1",
        )
        .bind(self.election.id().as_uuid())
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert_eq!(
            tallies, rows,
            "persisted tallies equal count(votes) per candidate"
        );
    }
}

/// Starts `livevote-processor` with `env` and waits until it listens.
fn start_processor(env: &[(String, String)]) -> ServiceProcess {
    ServiceProcess::start(
        env!("CARGO_BIN_EXE_livevote-processor"),
        &[],
        env,
        "livevote-processor listening",
    )
    .expect("livevote-processor starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_votes_with_five_percent_of_messages_twice_are_stored_exactly_once() {
    let stack = Stack::new(QueueSettings::default()).await;
    let votes = stack.votes(100_000, "bulk");
    stack.publish(&votes).await;
    // 5 % of the messages again: every 20th publish call of 90 votes (about one message) repeated.
    let repeated: Vec<VoteRecord> = votes.chunks(90).step_by(20).flatten().cloned().collect();
    assert!(repeated.len() >= 5_000 * 9 / 10, "{}", repeated.len());
    for chunk in votes.chunks(90).step_by(20) {
        assert!(stack.queue.publish(chunk).await.iter().all(Result::is_ok));
    }
    let processor = start_processor(&stack.env());
    stack.wait_drained(100_000, Duration::from_secs(120)).await;
    stack.assert_exactly(&votes).await;
    let metrics = reqwest::get(format!("http://{}/metrics", processor.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("livevote_votes_persisted_total"), "{metrics}");
    assert!(
        metrics.contains("livevote_redeliveries_total"),
        "duplicates counted: {metrics}"
    );
    let ready = reqwest::get(format!("http://{}/health/ready", processor.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_restart_loses_nothing_and_counts_nothing_twice() {
    let stack = Stack::new(QueueSettings {
        visibility_timeout: Duration::from_secs(3),
        max_receive_count: 50,
        ..QueueSettings::default()
    })
    .await;
    let votes = stack.votes(40_000, "kill");
    stack.publish(&votes).await;
    let mut first = start_processor(&stack.env());
    stack.wait_first_stored().await;
    first.signal("-KILL");
    first.wait(Duration::from_secs(10));
    let at_kill = stack.stored().await;
    assert!(at_kill < 40_000, "killed mid-run ({at_kill} stored)");
    let _second = start_processor(&stack.env());
    stack.wait_drained(40_000, Duration::from_secs(120)).await;
    stack.assert_exactly(&votes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gone_for_twenty_seconds_loses_nothing_and_dead_letters_nothing() {
    let stack = Stack::new(QueueSettings {
        visibility_timeout: Duration::from_secs(5),
        ..QueueSettings::default()
    })
    .await;
    let pg: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let relay = Relay::start(pg).await.unwrap();
    let mut env = stack.env();
    let via_relay = stack
        .database_url
        .replacen("127.0.0.1:5432", &relay.addr.to_string(), 1);
    assert_ne!(
        via_relay, stack.database_url,
        "the test database URL names 127.0.0.1:5432"
    );
    env.retain(|(k, _)| k != "LIVEVOTE_DATABASE_URL");
    env.push(("LIVEVOTE_DATABASE_URL".into(), via_relay));
    let processor = start_processor(&env);
    let before = stack.votes(10_000, "before");
    stack.publish(&before).await;
    stack.wait_drained(10_000, Duration::from_secs(60)).await;
    relay.set_up(false);
    let during = stack.votes(10_000, "during");
    stack.publish(&during).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let ready = reqwest::get(format!("http://{}/health/ready", processor.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready without its database");
    assert_eq!(stack.stored().await, 10_000, "nothing stored during the outage");
    assert_eq!(
        stack.queue.stats().await.unwrap().dead_letter_messages,
        0,
        "nothing dead-lettered during the outage"
    );
    relay.set_up(true);
    stack.wait_drained(20_000, Duration::from_secs(120)).await;
    let all: Vec<VoteRecord> = before.into_iter().chain(during).collect();
    stack.assert_exactly(&all).await;
    assert_eq!(stack.queue.stats().await.unwrap().dead_letter_messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_ends_in_the_dead_letter_queue_while_the_rest_flows() {
    let stack = Stack::new(QueueSettings {
        visibility_timeout: Duration::from_secs(1),
        max_receive_count: 3,
        ..QueueSettings::default()
    })
    .await;
    stack
        .queue
        .client()
        .send_message()
        .queue_url(&stack.queue.config().queue_url)
        .message_body("{\"v\":1,\"votes\":\"not a list\"}")
        .send()
        .await
        .unwrap();
    let votes = stack.votes(2_000, "around-poison");
    stack.publish(&votes).await;
    let processor = start_processor(&stack.env());
    let started = Instant::now();
    loop {
        let stats = stack.queue.stats().await.unwrap();
        if stats.dead_letter_messages == 1 && stats.visible == 0 && stats.in_flight == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{stats:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.assert_exactly(&votes).await;
    let logs = processor.log_lines();
    assert!(
        logs.iter().any(|l| l.contains("poison")),
        "the poison message is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_the_batch_in_hand_and_exits_cleanly() {
    let stack = Stack::new(QueueSettings::default()).await;
    let votes = stack.votes(40_000, "term");
    stack.publish(&votes).await;
    let mut first = start_processor(&stack.env());
    stack.wait_first_stored().await;
    first.signal("-TERM");
    let status = first.wait(Duration::from_secs(30));
    assert!(status.success(), "clean exit: {status:?}");
    let logs = first.log_lines();
    assert!(
        logs.iter().any(|l| l.contains("the batch in hand was committed")),
        "{logs:#?}"
    );
    // Whatever it received was committed and deleted; the rest is still queued.
    let stored = stack.stored().await;
    let stats = stack.queue.stats().await.unwrap();
    assert!(stored > 0 && stored < 40_000, "stopped mid-run: {stored}");
    assert!(stats.visible > 0, "the rest waits in the queue: {stats:?}");
    let _second = start_processor(&stack.env());
    stack.wait_drained(40_000, Duration::from_secs(120)).await;
    stack.assert_exactly(&votes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_flag_applies_the_schema_once_and_exits() {
    // An empty database, named so that scripts/test.sh drops it later.
    let server = test_server_url();
    let admin = sqlx::PgPool::connect(&server).await.unwrap();
    let name = format!("livevote_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_livevote-processor"))
            .arg("--migrate")
            .env("LIVEVOTE_DATABASE_URL", &url)
            .env("LIVEVOTE_LOG", "warn")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("migrations applied: [1"),
        "{first:?}"
    );
    let second = run();
    assert!(second.status.success(), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("migrations applied: []"),
        "idempotent: {second:?}"
    );
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let votes: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(votes, 0, "the schema exists");
    // A database that cannot be reached is a clear failure naming the variable.
    let bad = Command::new(env!("CARGO_BIN_EXE_livevote-processor"))
        .arg("--migrate")
        .env(
            "LIVEVOTE_DATABASE_URL",
            format!("{base}/no_such_database_livevote"),
        )
        .env("LIVEVOTE_LOG", "warn")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("LIVEVOTE_DATABASE_URL"),
        "{bad:?}"
    );
}
