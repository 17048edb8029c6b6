//! The micro-batching publisher (ARCHITECTURE.md, step 6 of a vote).
//!
//! Requests hand their vote to a bounded buffer and wait for the queue's
//! answer. One task drains the buffer into batches of up to `max_batch` votes,
//! waiting at most `linger` for a batch to fill, and sends up to
//! `max_in_flight` batches at once. Nothing here is unbounded: when the buffer
//! is full the request is refused at once ([`PublishError::Overloaded`], a 503
//! with `Retry-After`) instead of queueing in memory.
//!
//! A request that waits too long ([`VoteBatcher::publish_within`]) takes
//! its vote back if no publish call has picked it up yet, so it is then
//! certainly not queued; once a call carries it, the outcome is the queue's
//! to tell and the caller is told to keep waiting ([`Publishing::Sending`]).
//!
//! Shutdown: once every [`VoteBatcher`] handle is dropped, the task publishes
//! what is still buffered, waits for the batches in flight, and ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use livevote_domain::VoteRecord;
use livevote_ports::{MetricEvent, Metrics, QueueError, VoteQueue};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Publisher settings.
#[derive(Debug, Clone, Copy)]
pub struct PublisherConfig {
    /// Votes the buffer holds before requests are refused.
    pub buffer: usize,
    /// Most votes in one publish call.
    pub max_batch: usize,
    /// Longest a vote waits for its batch to fill.
    pub linger: Duration,
    /// Publish calls running at once.
    pub max_in_flight: usize,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            buffer: 20_000,
            max_batch: 500,
            linger: Duration::from_millis(2),
            max_in_flight: 32,
        }
    }
}

/// Why a vote was not published.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The buffer is full: shed load.
    #[error("vote buffer is full")]
    Overloaded,
    /// The publisher is shutting down.
    #[error("publisher is shutting down")]
    Closed,
    /// The queue did not acknowledge the vote.
    #[error(transparent)]
    Queue(QueueError),
    /// No publish call picked the vote up in time; it was taken back, never sent.
    #[error("the queue did not take the vote within {0:?}")]
    TimedOut(Duration),
}

/// A buffered vote's state: waiting in the buffer, taken back by its
/// requester, or carried by a publish call.
const QUEUED: u8 = 0;
const WITHDRAWN: u8 = 1;
const SENDING: u8 = 2;

/// A vote waiting in the publish buffer, with the sender its answer goes to.
struct Buffered {
    record: VoteRecord,
    done: oneshot::Sender<Result<(), QueueError>>,
    state: Arc<AtomicU8>,
}

/// How a bounded publish ended.
#[derive(Debug)]
pub enum Publishing {
    /// Settled: acknowledged by the queue, or certainly not queued.
    Done(Result<(), PublishError>),
    /// A publish call carries the vote and has not answered within the limit:
    /// it may yet be queued. [`PublishWait::outcome`] waits for the answer.
    Sending(PublishWait),
}

type Answer = oneshot::Receiver<Result<(), QueueError>>;

/// The queue's answer for a vote whose publish call is still running.
#[derive(Debug)]
pub struct PublishWait(Answer);

impl PublishWait {
    /// # Errors
    /// As [`VoteBatcher::publish`].
    pub async fn outcome(self) -> Result<(), PublishError> {
        match self.0.await {
            Ok(result) => result.map_err(PublishError::Queue),
            Err(_) => Err(PublishError::Closed),
        }
    }
}

/// A handle for publishing votes through the shared batcher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VoteBatcher {
    tx: mpsc::Sender<Buffered>,
}

impl std::fmt::Debug for Buffered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffered")
            .field("vote_id", &self.record.vote.vote_id)
            .finish()
    }
}

impl VoteBatcher {
    /// Starts the batching task on the current runtime.
    pub fn start<Q: VoteQueue, M: Metrics + Clone>(
        queue: Q,
        config: PublisherConfig,
        metrics: M,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let task = tokio::spawn(run(Arc::new(queue), rx, config, metrics));
        (Self { tx }, task)
    }

    /// Publishes one vote and waits for the queue's answer.
    ///
    /// # Errors
    /// [`PublishError::Overloaded`] at once when the buffer is full; otherwise
    /// the queue's failure for this vote.
    pub async fn publish(&self, record: VoteRecord) -> Result<(), PublishError> {
        let (answer, _) = self.enqueue(record)?;
        PublishWait(answer).outcome().await
    }

    /// Publishes one vote, waiting at most `limit`. Past it, a vote still in
    /// the buffer is taken back ([`PublishError::TimedOut`]: certainly not
    /// queued); one a publish call carries is [`Publishing::Sending`].
    pub async fn publish_within(&self, record: VoteRecord, limit: Duration) -> Publishing {
        let (mut answer, state) = match self.enqueue(record) {
            Ok(queued) => queued,
            Err(e) => return Publishing::Done(Err(e)),
        };
        match tokio::time::timeout(limit, &mut answer).await {
            Ok(Ok(result)) => Publishing::Done(result.map_err(PublishError::Queue)),
            Ok(Err(_)) => Publishing::Done(Err(PublishError::Closed)),
            Err(_) => match state.compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => Publishing::Done(Err(PublishError::TimedOut(limit))),
                Err(_) => Publishing::Sending(PublishWait(answer)),
            },
        }
    }

    fn enqueue(&self, record: VoteRecord) -> Result<(Answer, Arc<AtomicU8>), PublishError> {
        let (done, answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        self.tx
            .try_send(Buffered {
                record,
                done,
                state: state.clone(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PublishError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => PublishError::Closed,
            })?;
        Ok((answer, state))
    }

    /// Votes waiting in the buffer, for metrics.
    pub fn buffered(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

async fn run<Q: VoteQueue, M: Metrics + Clone>(
    queue: Arc<Q>,
    mut rx: mpsc::Receiver<Buffered>,
    config: PublisherConfig,
    metrics: M,
) {
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let max_batch = config.max_batch.max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::with_capacity(max_batch);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.len() < max_batch {
            // Take what is already there without waiting, then linger for more.
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(p)) => batch.push(p),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let queue = queue.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // Votes their requesters took back while waiting stay out of the call.
            batch.retain(|p| {
                p.state
                    .compare_exchange(QUEUED, SENDING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            });
            if batch.is_empty() {
                return;
            }
            let started = tokio::time::Instant::now();
            let records: Vec<VoteRecord> = batch.iter().map(|p| p.record.clone()).collect();
            let mut outcomes = queue.publish(&records).await;
            if outcomes.len() != batch.len() {
                // An adapter broke its contract; never report a vote published on a guess.
                tracing::error!(
                    expected = batch.len(),
                    got = outcomes.len(),
                    "queue returned a wrong number of outcomes"
                );
                outcomes = batch
                    .iter()
                    .map(|_| Err(QueueError::Unknown("outcome count mismatch".into())))
                    .collect();
            }
            let failed = outcomes.iter().filter(|o| o.is_err()).count();
            metrics.record(MetricEvent::PublishBatch {
                votes: batch.len(),
                failed,
                latency: started.elapsed(),
            });
            if failed > 0 {
                tracing::warn!(votes = batch.len(), failed, "queue refused part of a batch");
            }
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                // The requester may have gone away; the vote's fate is still settled by the caller's task.
                let _ = pending.done.send(outcome);
            }
        });
    }
    // Every handle is gone and the buffer is drained: wait for batches in flight.
    let _all = slots
        .acquire_many(config.max_in_flight.max(1) as u32)
        .await
        .expect("semaphore is never closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use livevote_domain::{Ballot, CandidateId, CorrelationId, ElectionId, VoteId, VoterId};
    use livevote_hosting::SystemClock;
    use livevote_memory::{MemoryQueue, NoMetrics, QueueConfig, RecordingMetrics};
    use livevote_ports::{QueueInspector, VoteSource};

    fn record(i: usize) -> VoteRecord {
        VoteRecord {
            vote: Ballot {
                vote_id: VoteId::generate(),
                election_id: ElectionId::generate(),
                candidate_id: CandidateId::generate(),
                voter_id: VoterId::parse(format!("v{i}")).unwrap(),
                accepted_at: Utc::now(),
            },
            correlation_id: CorrelationId::generate(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_votes_share_batches() {
        let queue = MemoryQueue::new(
            SystemClock,
            QueueConfig {
                votes_per_message: 50,
                ..QueueConfig::default()
            },
        );
        let metrics = RecordingMetrics::new();
        let config = PublisherConfig {
            linger: Duration::from_millis(20),
            ..PublisherConfig::default()
        };
        let (batcher, task) = VoteBatcher::start(queue.clone(), config, metrics.clone());
        let mut tasks = Vec::new();
        for i in 0..400 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move { b.publish(record(i)).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let batches = metrics.sum(|e| matches!(e, MetricEvent::PublishBatch { .. }).then_some(1));
        assert!(
            batches < 400,
            "{batches} publish calls for 400 votes: votes were batched"
        );
        let published = metrics.sum(|e| match e {
            MetricEvent::PublishBatch { votes, .. } => Some(*votes as u64),
            _ => None,
        });
        assert_eq!(published, 400);
        assert_eq!(queue.stats().await.unwrap().visible, queue.published_messages());
        drop(batcher);
        task.await.unwrap();
    }

    /// A queue that never answers, to fill the buffer.
    #[derive(Debug, Clone)]
    struct Stuck;
    impl VoteQueue for Stuck {
        async fn publish(&self, _votes: &[VoteRecord]) -> Vec<Result<(), QueueError>> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_full_buffer_sheds_load_at_once() {
        let config = PublisherConfig {
            buffer: 4,
            max_batch: 1,
            linger: Duration::ZERO,
            max_in_flight: 1,
        };
        let (batcher, _task) = VoteBatcher::start(Stuck, config, NoMetrics);
        let mut waiting = Vec::new();
        // One in flight, one held by the batching loop waiting for a slot, four buffered.
        for i in 0..6 {
            let b = batcher.clone();
            waiting.push(tokio::spawn(async move { b.publish(record(i)).await }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = std::time::Instant::now();
        let refused = batcher.publish(record(99)).await;
        assert!(matches!(refused, Err(PublishError::Overloaded)), "{refused:?}");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "refused without waiting"
        );
        assert_eq!(batcher.buffered(), 4);
    }

    #[tokio::test]
    async fn failed_messages_fail_exactly_their_votes() {
        let queue = MemoryQueue::new(
            SystemClock,
            QueueConfig {
                votes_per_message: 2,
                ..QueueConfig::default()
            },
        );
        queue.fail_next_messages(1);
        let config = PublisherConfig {
            linger: Duration::from_millis(50),
            ..PublisherConfig::default()
        };
        let (batcher, _task) = VoteBatcher::start(queue.clone(), config, NoMetrics);
        let mut tasks = Vec::new();
        for i in 0..6 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move { b.publish(record(i)).await.is_ok() }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 4, "one message of two votes failed");
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn shutdown_publishes_what_is_buffered() {
        let queue = MemoryQueue::new(SystemClock, QueueConfig::default());
        let config = PublisherConfig {
            linger: Duration::from_millis(200),
            ..PublisherConfig::default()
        };
        let (batcher, task) = VoteBatcher::start(queue.clone(), config, NoMetrics);
        let b = batcher.clone();
        let waiter = tokio::spawn(async move { b.publish(record(0)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(batcher);
        waiter.await.unwrap().unwrap();
        task.await.unwrap();
        assert_eq!(queue.published_messages(), 1);
    }
}
