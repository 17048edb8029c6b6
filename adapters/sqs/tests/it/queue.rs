//! The SQS adapter against a real SQS-compatible server. The same tests run
//! against both local servers (`scripts/test.sh` runs them twice):
//! `LIVEVOTE_TEST_SQS_ENDPOINT` (default `http://127.0.0.1:4566`, the
//! project's awsim-based endpoint) and `LIVEVOTE_TEST_SQS_SERVER`
//! (`awsim` or `moto`: where the servers differ, the tests follow AWS and
//! relax only what a named server is known to get wrong). Each test creates
//! queues of its own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageAttributeValue;
use chrono::{Duration as ChronoDuration, Utc};
use livevote_domain::{Election, ElectionId, VoteId, VoteRecord};
use livevote_ports::{DeadLetter, DeliveryContent, PoisonReason, QueueInspector, VoteQueue, VoteSource};
use livevote_sqs::{QueueSettings, SqsQueue, create_queues, local_client};
use livevote_testkit::fixtures::{new_election, record};

fn endpoint() -> String {
    std::env::var("LIVEVOTE_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// Whether the server counts receives as AWS does (moto does; awsim counts a
/// receive twice after a visibility timeout, so its dead-letter queue fills early).
fn exact_receive_counts() -> bool {
    std::env::var("LIVEVOTE_TEST_SQS_SERVER").is_ok_and(|s| s == "moto")
}

async fn queue(settings: QueueSettings) -> SqsQueue {
    let client = local_client(&endpoint());
    let name = format!("lvtest-{}", uuid::Uuid::new_v4().simple());
    let config = create_queues(&client, &name, settings).await.unwrap_or_else(|e| {
        panic!(
            "queues on {} (scripts/services.sh sqs starts it): {e:#}",
            endpoint()
        )
    });
    // Some local servers accept a native move task and never run it: give up on it quickly here.
    let config = livevote_sqs::SqsConfig {
        move_task_stall: Duration::from_secs(2),
        ..config
    };
    SqsQueue::new(client, config)
}

fn election() -> Election {
    let now = Utc::now();
    Election::create(
        ElectionId::generate(),
        new_election(
            "Queue test",
            &["A", "B", "C"],
            now,
            now + ChronoDuration::hours(1),
        ),
        now,
        livevote_domain::CandidateId::generate,
    )
    .unwrap()
}

fn votes(e: &Election, n: usize, tag: &str) -> Vec<VoteRecord> {
    (0..n)
        .map(|i| record(e, &format!("auth0|{tag}-{i}"), i % 3, Utc::now()))
        .collect()
}

/// Receives until `want` votes arrived (acknowledging each batch) or `limit` passes.
async fn receive_votes(q: &SqsQueue, want: usize, limit: Duration) -> Vec<VoteRecord> {
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < want && started.elapsed() < limit {
        let deliveries = q.receive(10, Duration::from_secs(1)).await.unwrap();
        let mut tags = Vec::new();
        for d in deliveries {
            match d.content {
                DeliveryContent::Votes(v) => got.extend(v),
                DeliveryContent::Poison(p) => panic!("unexpected poison: {p}"),
            }
            tags.push(d.tag);
        }
        if !tags.is_empty() {
            let report = q.ack(&tags).await.unwrap();
            assert!(report.failed.is_empty(), "{report:?}");
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_votes_round_trip_with_none_lost_or_duplicated() {
    let q = queue(QueueSettings::default()).await;
    let e = election();
    let sent = votes(&e, 10_000, "rt");
    // As the ingestion batcher does: many publish calls of up to 1,000 votes.
    for chunk in sent.chunks(1000) {
        let outcomes = q.publish(chunk).await;
        assert_eq!(outcomes.len(), chunk.len());
        assert!(
            outcomes.iter().all(Result::is_ok),
            "{:?}",
            outcomes.iter().find(|o| o.is_err())
        );
    }
    let got = receive_votes(&q, sent.len(), Duration::from_secs(120)).await;
    let ids: HashSet<VoteId> = got.iter().map(|v| v.vote.vote_id).collect();
    assert_eq!(ids.len(), got.len(), "no vote delivered twice");
    assert_eq!(got.len(), sent.len(), "every vote arrived");
    let by_id: HashMap<VoteId, &VoteRecord> = got.iter().map(|v| (v.vote.vote_id, v)).collect();
    for v in &sent {
        assert_eq!(by_id[&v.vote.vote_id], v, "arrived unchanged");
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_letter_messages),
        (0, 0, 0)
    );
    // Nothing more to receive.
    assert!(q.receive(10, Duration::from_secs(1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_message_not_deleted_comes_back_after_its_visibility_timeout() {
    let q = queue(QueueSettings {
        visibility_timeout: Duration::from_secs(1),
        ..QueueSettings::default()
    })
    .await;
    let e = election();
    let sent = votes(&e, 3, "vis");
    assert!(q.publish(&sent).await.iter().all(Result::is_ok));
    let first = q.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.len(), 1, "three votes travel in one message");
    assert_eq!(first[0].receive_count, 1);
    assert!(first[0].sent_at.is_some());
    assert!(
        q.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "hidden while in flight"
    );
    assert_eq!(q.stats().await.unwrap().in_flight, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = q.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, first[0].message_id);
    assert!(again[0].receive_count >= 2);
    assert_eq!(again[0].content, first[0].content);
    // Extending visibility keeps it hidden past the queue's timeout.
    q.extend_visibility(&[again[0].tag.clone()], Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        q.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "still hidden after extending"
    );
    q.ack(&[again[0].tag.clone()]).await.unwrap();
}

#[tokio::test]
async fn five_receives_without_delete_dead_letter_the_message_and_replay_brings_it_back() {
    let q = queue(QueueSettings {
        visibility_timeout: Duration::from_secs(1),
        ..QueueSettings::default()
    })
    .await;
    let e = election();
    let sent = votes(&e, 2, "dlq");
    assert!(q.publish(&sent).await.iter().all(Result::is_ok));
    let mut receives = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let got = q.receive(10, Duration::from_secs(1)).await.unwrap();
        receives += got.len();
        if q.stats().await.unwrap().dead_letter_messages == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    if exact_receive_counts() {
        assert_eq!(receives, 5, "maxReceiveCount 5: five deliveries, then the DLQ");
    } else {
        assert!(
            (1..=5).contains(&receives),
            "never more than maxReceiveCount: {receives}"
        );
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.visible, stats.in_flight, stats.dead_letter_messages),
        (0, 0, 1)
    );
    // Auditors look without consuming: twice the same answer.
    for _ in 0..2 {
        let summary = q.dead_letter_summary().await.unwrap();
        assert_eq!(summary.votes_per_election, vec![(e.id(), 2)]);
        assert_eq!((summary.messages, summary.unattributed_messages), (1, 0));
    }
    let mut reports = Vec::new();
    let done = q.replay_dead_letters(|p| reports.push(p)).await.unwrap();
    assert_eq!((done.moved, done.failed), (1, 0));
    assert_eq!(reports.last().copied(), Some(done), "progress reported");
    assert_eq!(q.stats().await.unwrap().dead_letter_messages, 0);
    let back = receive_votes(&q, 2, Duration::from_secs(10)).await;
    assert_eq!(back, sent, "the replayed message carries the same votes");
}

#[tokio::test]
async fn every_dead_letter_is_listed_and_those_that_do_not_decode_are_unattributed() {
    let q = queue(QueueSettings::default()).await;
    let e = election();
    let dlq = q.config().dead_letter_queue_url.clone();
    // A producer that is not ours wrote these straight into the dead-letter queue.
    for body in [
        "not json at all",
        "{\"schemaVersion\":1,\"votes\":[{\"oops\":1}]}",
    ] {
        q.client()
            .send_message()
            .queue_url(&dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    // And a well-formed message of three votes, as the redrive moves one.
    q.client()
        .send_message()
        .queue_url(&dlq)
        .message_body(livevote_sqs::message::encode(&votes(&e, 3, "dl")))
        .send()
        .await
        .unwrap();
    let letters: Vec<DeadLetter> = q.peek_dead_letters().await.unwrap();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let undecoded: Vec<&DeadLetter> = letters.iter().filter(|l| !l.is_attributed()).collect();
    assert_eq!(undecoded.len(), 2, "{letters:?}");
    assert!(undecoded.iter().all(|l| l.poison.is_some()));
    assert!(undecoded.iter().any(|l| l.head == "not json at all"));
    let summary = q.dead_letter_summary().await.unwrap();
    assert_eq!(
        (
            summary.messages,
            summary.unattributed_messages,
            summary.votes_of(e.id())
        ),
        (3, 2, 3)
    );
}

#[tokio::test]
async fn poison_is_reported_with_its_reason_and_never_acknowledged() {
    let q = queue(QueueSettings {
        visibility_timeout: Duration::from_secs(1),
        ..QueueSettings::default()
    })
    .await;
    let client = q.client();
    let url = q.config().queue_url.clone();
    client
        .send_message()
        .queue_url(&url)
        .message_body("this is not a vote")
        .send()
        .await
        .unwrap();
    let e = election();
    let future_version = livevote_sqs::message::encode(&votes(&e, 1, "v2")).replacen("\"v\":1", "\"v\":2", 1);
    client
        .send_message()
        .queue_url(&url)
        .message_body(future_version)
        .message_attributes(
            "schemaVersion",
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value("2")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let mut reasons = Vec::new();
    let started = Instant::now();
    while reasons.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        for d in q.receive(10, Duration::from_secs(1)).await.unwrap() {
            match d.content {
                DeliveryContent::Poison(reason) => reasons.push(reason),
                DeliveryContent::Votes(v) => panic!("decoded poison as votes: {v:?}"),
            }
        }
    }
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| matches!(r, PoisonReason::Undecodable(_))));
    assert!(reasons.contains(&PoisonReason::UnknownVersion(2)));
    // Not acknowledged: both come back.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let started = Instant::now();
    let mut back = 0;
    while back < 2 && started.elapsed() < Duration::from_secs(10) {
        back += q.receive(10, Duration::from_secs(1)).await.unwrap().len();
    }
    assert_eq!(back, 2);
}
