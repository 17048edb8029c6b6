//! The persist-batch service on the in-memory queue and database:
//! redelivery changes nothing, poison is never acknowledged, a database
//! outage acknowledges nothing and loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use livevote_domain::{CandidateId, Election, ElectionId, VoteRecord};
use livevote_memory::{MemoryDatabase, MemoryQueue, QueueConfig, RecordingMetrics};
use livevote_ports::{
    AckReport, Clock, Delivery, DeliveryContent, DeliveryTag, MetricEvent, QueueError, QueueInspector,
    StoreCounts, VoteQueue, VoteSource, VoteStore,
};
use livevote_processor::{PersistConfig, PersistService, ProcessError};
use livevote_testkit::ManualClock;
use livevote_testkit::fixtures::{active_election, record};

/// Wraps the memory queue; while `drop_acks` is set, acknowledgements are
/// lost on the way (the processor "crashed" after commit and before delete).
#[derive(Debug, Clone)]
struct LossyAcks {
    queue: MemoryQueue,
    drop_acks: Arc<AtomicBool>,
}

impl VoteSource for LossyAcks {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.queue.receive(max, wait).await
    }
    async fn ack(&self, tags: &[DeliveryTag]) -> Result<AckReport, QueueError> {
        if self.drop_acks.load(Ordering::SeqCst) {
            return Err(QueueError::Unavailable("ack lost".into()));
        }
        self.queue.ack(tags).await
    }
    async fn extend_visibility(&self, tags: &[DeliveryTag], by: Duration) -> Result<(), QueueError> {
        self.queue.extend_visibility(tags, by).await
    }
}

type Service = PersistService<LossyAcks, MemoryDatabase, MemoryDatabase, ManualClock, RecordingMetrics>;

struct Harness {
    clock: ManualClock,
    db: MemoryDatabase,
    queue: MemoryQueue,
    drop_acks: Arc<AtomicBool>,
    metrics: RecordingMetrics,
    service: Service,
    election: Election,
}

async fn harness() -> Harness {
    let clock = ManualClock::new(Utc::now());
    let db = MemoryDatabase::new(clock.clone());
    let queue = MemoryQueue::new(
        clock.clone(),
        QueueConfig {
            votes_per_message: 25,
            ..QueueConfig::default()
        },
    );
    let drop_acks = Arc::new(AtomicBool::new(false));
    let metrics = RecordingMetrics::new();
    let election = active_election(
        &db,
        &["A", "B", "C"],
        clock.now(),
        ChronoDuration::hours(1),
        |_| {},
    )
    .await;
    let service = PersistService::new(
        LossyAcks {
            queue: queue.clone(),
            drop_acks: drop_acks.clone(),
        },
        db.clone(),
        db.clone(),
        clock.clone(),
        metrics.clone(),
        PersistConfig {
            receive_max: 10,
            receive_wait: Duration::from_millis(5),
        },
    );
    Harness {
        clock,
        db,
        queue,
        drop_acks,
        metrics,
        service,
        election,
    }
}

fn votes(h: &Harness, n: usize) -> Vec<VoteRecord> {
    (0..n)
        .map(|i| record(&h.election, &format!("viewer-{i}"), i % 3, h.clock.now()))
        .collect()
}

/// Receives and processes until a receive comes back empty.
async fn drain(h: &Harness) -> Result<(), ProcessError> {
    loop {
        let summary = h.service.run_once().await?;
        if summary.messages == 0 {
            return Ok(());
        }
    }
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    votes: usize,
    tallies: BTreeMap<CandidateId, u64>,
    persisted: u64,
    duplicates: u64,
}

async fn snapshot(h: &Harness) -> Snapshot {
    let id: ElectionId = h.election.id();
    let StoreCounts {
        persisted,
        duplicates,
        ..
    } = h.db.counts(id).await.unwrap();
    Snapshot {
        votes: h.db.all_votes().len(),
        tallies: h
            .db
            .persisted_tallies(id)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.candidate_id, c.votes))
            .collect(),
        persisted,
        duplicates,
    }
}

#[tokio::test]
async fn redelivering_every_message_three_times_changes_nothing() {
    let h = harness().await;
    let mut batch = votes(&h, 200);
    // A second vote of an existing voter: a conflict that is redelivered too.
    batch.push(record(&h.election, "viewer-0", 2, h.clock.now()));
    assert!(h.queue.publish(&batch).await.iter().all(Result::is_ok));
    h.drop_acks.store(true, Ordering::SeqCst);
    drain(&h).await.unwrap();
    let first = snapshot(&h).await;
    assert_eq!(first.votes, 200);
    assert_eq!(first.persisted, 200);
    assert_eq!(first.duplicates, 1);
    assert_eq!(first.tallies.values().sum::<u64>(), 200);
    for _ in 0..3 {
        // Past the visibility timeout: every message comes back.
        h.clock.advance(ChronoDuration::seconds(31));
        drain(&h).await.unwrap();
        assert_eq!(snapshot(&h).await, first, "a redelivery changed the store");
    }
    h.drop_acks.store(false, Ordering::SeqCst);
    h.clock.advance(ChronoDuration::seconds(31));
    drain(&h).await.unwrap();
    assert_eq!(snapshot(&h).await, first);
    assert_eq!(
        h.queue.stats().await.unwrap().pending_messages(),
        0,
        "all deleted at last"
    );
    assert_eq!(h.db.counts(h.election.id()).await.unwrap().redeliveries, 4 * 200);
}

#[tokio::test]
async fn poison_is_never_acknowledged_and_ends_in_the_dead_letter_queue() {
    let h = harness().await;
    h.queue.inject_poison("not json at all");
    // Well formed, but naming a candidate the election does not have.
    let mut stranger = record(&h.election, "viewer-x", 0, h.clock.now());
    stranger.vote.candidate_id = CandidateId::generate();
    h.queue.inject(DeliveryContent::Votes(vec![stranger]));
    assert!(h.queue.publish(&votes(&h, 50)).await.iter().all(Result::is_ok));
    for _ in 0..6 {
        drain(&h).await.unwrap();
        h.clock.advance(ChronoDuration::seconds(31));
    }
    drain(&h).await.unwrap();
    assert_eq!(snapshot(&h).await.persisted, 50, "the good messages flowed");
    let stats = h.queue.stats().await.unwrap();
    assert_eq!(stats.pending_messages(), 0);
    assert_eq!(
        stats.dead_letter_messages, 2,
        "both poison messages dead-lettered"
    );
    let poison = h.metrics.sum(|e| match e {
        MetricEvent::PoisonMessages { count } => Some(*count),
        _ => None,
    });
    assert_eq!(poison, 2 * 5, "counted at each of the five deliveries");
}

#[tokio::test]
async fn database_down_acknowledges_nothing_and_the_backlog_drains_when_it_returns() {
    let h = harness().await;
    assert!(h.queue.publish(&votes(&h, 100)).await.iter().all(Result::is_ok));
    h.db.set_available(false);
    for _ in 0..3 {
        assert!(matches!(
            h.service.run_once().await,
            Err(ProcessError::Catalog(_) | ProcessError::Store(_))
        ));
        h.clock.advance(ChronoDuration::seconds(31));
    }
    assert_eq!(
        h.queue.stats().await.unwrap().pending_messages(),
        4,
        "nothing was deleted"
    );
    h.db.set_available(true);
    drain(&h).await.unwrap();
    assert_eq!(snapshot(&h).await.persisted, 100);
    assert_eq!(h.queue.stats().await.unwrap().pending_messages(), 0);
    assert_eq!(
        h.queue.stats().await.unwrap().dead_letter_messages,
        0,
        "an outage shorter than five deliveries dead-letters nothing"
    );
}

#[tokio::test]
async fn a_store_outage_during_persist_acknowledges_nothing() {
    // The catalog answers (elections are remembered) but the store fails at persist time.
    let h = harness().await;
    assert!(h.queue.publish(&votes(&h, 10)).await.iter().all(Result::is_ok));
    h.drop_acks.store(true, Ordering::SeqCst);
    drain(&h).await.unwrap();
    h.drop_acks.store(false, Ordering::SeqCst);
    h.clock.advance(ChronoDuration::seconds(31));
    h.db.set_available(false);
    assert!(matches!(h.service.run_once().await, Err(ProcessError::Store(_))));
    assert_eq!(h.queue.stats().await.unwrap().pending_messages(), 1);
    h.db.set_available(true);
    h.clock.advance(ChronoDuration::seconds(31));
    drain(&h).await.unwrap();
    assert_eq!(snapshot(&h).await.persisted, 10);
    assert_eq!(h.queue.stats().await.unwrap().pending_messages(), 0);
}
