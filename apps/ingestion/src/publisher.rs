//! The vote pipeline (ARCHITECTURE.md, steps 5-7 of a vote): votes that
//! the rules admitted are claimed, published and confirmed in batches.
//!
//! Requests hand their vote to a bounded buffer and wait for the answer.
//! One task drains the buffer into batches of up to `max_batch` votes,
//! waiting at most `linger` for a batch to fill, and runs up to
//! `max_in_flight` batches at once. Each batch, in its own task:
//!
//! 1. claims its votes with one dedup call (Redis: one pipeline); a voter
//!    who already holds a claim is answered at once with it (409, or the
//!    replay of an idempotent retry);
//! 2. publishes the claimed votes with one queue call;
//! 3. confirms the claims of the votes the queue acknowledged with one dedup
//!    call (Redis: one script per slot) and releases those it refused;
//!
//! and only then answers each request. One batch costs three round trips
//! whatever its size, and because the batch's task, not the request,
//! settles the claims, a client that goes away mid-way leaves no claim
//! pending, and no task is spawned per vote.
//!
//! Nothing here is unbounded: when the buffer is full the request is
//! refused at once ([`PublishError::Overloaded`], a 503 with `Retry-After`)
//! instead of queueing in memory.
//!
//! A request that waits too long ([`VoteBatcher::cast_within`]) takes its
//! vote back if no batch has picked it up yet, so it is then certainly
//! neither claimed nor queued; once a batch carries it, the outcome is the
//! batch's to tell and the request is told so ([`Casting::InFlight`]); the
//! vote is settled all the same.
//!
//! Shutdown: once every [`VoteBatcher`] handle is dropped, the task runs
//! what is still buffered, waits for the batches in flight, and ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use livevote_domain::{CorrelationId, ElectionId, VoteLimitReached, VoteRecord, VoteSlot};
use livevote_ports::{
    Claim, ClaimOutcome, ConfirmOutcome, DedupError, ExistingClaim, MetricEvent, Metrics, QueueError,
    VoteDedup, VoteQueue,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::faults::crash_point;

/// Pipeline settings.
#[derive(Debug, Clone, Copy)]
pub struct PublisherConfig {
    /// Votes the buffer holds before requests are refused.
    pub buffer: usize,
    /// Most votes in one batch.
    pub max_batch: usize,
    /// Longest a vote waits for its batch to fill.
    pub linger: Duration,
    /// Batches running at once.
    pub max_in_flight: usize,
    /// Longest wait for one dedup call of a batch (claim, confirm, release).
    /// A claim past it fails the batch's votes (503, nothing queued); a
    /// confirm past it is retried in the background, the votes answered as
    /// accepted.
    pub dedup_timeout: Duration,
    /// How long a confirm that failed after the queue took the votes is
    /// retried in the background (keep it under the pending claim's life, 30 s).
    pub confirm_retry_for: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            buffer: 20_000,
            max_batch: 500,
            linger: Duration::from_millis(2),
            max_in_flight: 32,
            dedup_timeout: Duration::from_millis(1500),
            confirm_retry_for: Duration::from_secs(25),
        }
    }
}

/// How a vote the pipeline took ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Claimed, acknowledged by the queue, confirmed (or its confirm handed
    /// to the background retry): answer 202. The slot the vote took.
    Accepted(VoteSlot),
    /// The voter already holds a claim; nothing was changed.
    Held(ExistingClaim),
    /// `multi`: the voter's votes (or votes for the candidate) are used up.
    LimitReached(VoteLimitReached),
}

/// Why a vote was not accepted by the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The buffer is full: shed load. Nothing was claimed.
    #[error("vote buffer is full")]
    Overloaded,
    /// The pipeline is shutting down; the vote was not taken.
    #[error("publisher is shutting down")]
    Closed,
    /// The pipeline went away while carrying the vote: it may be queued.
    #[error("the publisher stopped while carrying the vote")]
    Abandoned,
    /// The claim could not be made (the dedup store is down): nothing queued.
    #[error(transparent)]
    Dedup(DedupError),
    /// The queue did not acknowledge the vote (its claim was released).
    #[error(transparent)]
    Queue(QueueError),
    /// No batch picked the vote up in time; it was taken back, never claimed.
    #[error("the queue did not take the vote within {0:?}")]
    TimedOut(Duration),
}

/// A buffered vote's state: waiting in the buffer, taken back by its
/// requester, or carried by a batch.
const QUEUED: u8 = 0;
const WITHDRAWN: u8 = 1;
const TAKEN: u8 = 2;

type Outcome = Result<Settled, PublishError>;
type Answer = oneshot::Receiver<Outcome>;

/// A vote waiting in the buffer, with the sender its answer goes to.
struct Buffered {
    claim: Claim,
    correlation_id: CorrelationId,
    done: oneshot::Sender<Outcome>,
    state: Arc<AtomicU8>,
}

/// A vote of a batch after its claim, without the claim itself (the
/// claims travel as a slice of their own, as the ports take them).
struct Riding {
    correlation_id: CorrelationId,
    done: oneshot::Sender<Outcome>,
}

/// How a bounded cast ended.
#[derive(Debug)]
pub enum Casting {
    /// Settled: accepted, held by an earlier claim, or certainly not queued.
    Done(Outcome),
    /// A batch carries the vote and has not answered within the limit: it
    /// may yet be queued. The vote is settled whether or not anyone waits.
    InFlight,
}

/// A handle for casting votes through the shared pipeline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VoteBatcher {
    tx: mpsc::Sender<Buffered>,
}

impl std::fmt::Debug for Buffered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffered")
            .field("vote_id", &self.claim.vote.vote_id)
            .finish()
    }
}

impl VoteBatcher {
    /// Starts the batching task on the current runtime: claims are made and
    /// settled in `dedup`, votes go to `queue`.
    pub fn start<Q, D, M>(queue: Q, dedup: D, config: PublisherConfig, metrics: M) -> (Self, JoinHandle<()>)
    where
        Q: VoteQueue,
        D: VoteDedup + Clone,
        M: Metrics + Clone,
    {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let settle = Arc::new(Settle {
            queue,
            dedup,
            metrics,
            config,
        });
        let task = tokio::spawn(run(settle, rx));
        (Self { tx }, task)
    }

    /// Claims, publishes and confirms one vote; waits for the answer.
    ///
    /// # Errors
    /// [`PublishError::Overloaded`] at once when the buffer is full;
    /// otherwise why the vote was not accepted.
    pub async fn cast(&self, claim: Claim, correlation_id: CorrelationId) -> Outcome {
        let (answer, _) = self.enqueue(claim, correlation_id)?;
        answer.await.unwrap_or(Err(PublishError::Abandoned))
    }

    /// As [`VoteBatcher::cast`], waiting at most `limit`. Past it, a vote
    /// still in the buffer is taken back ([`PublishError::TimedOut`]:
    /// certainly neither claimed nor queued); one a batch carries is
    /// [`Casting::InFlight`].
    pub async fn cast_within(&self, claim: Claim, correlation_id: CorrelationId, limit: Duration) -> Casting {
        let (mut answer, state) = match self.enqueue(claim, correlation_id) {
            Ok(queued) => queued,
            Err(e) => return Casting::Done(Err(e)),
        };
        match tokio::time::timeout(limit, &mut answer).await {
            Ok(Ok(outcome)) => Casting::Done(outcome),
            Ok(Err(_)) => Casting::Done(Err(PublishError::Abandoned)),
            Err(_) => match state.compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => Casting::Done(Err(PublishError::TimedOut(limit))),
                Err(_) => Casting::InFlight,
            },
        }
    }

    fn enqueue(
        &self,
        claim: Claim,
        correlation_id: CorrelationId,
    ) -> Result<(Answer, Arc<AtomicU8>), PublishError> {
        let (done, answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        self.tx
            .try_send(Buffered {
                claim,
                correlation_id,
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

/// What a batch's task needs: where claims are made and votes go.
struct Settle<Q, D, M> {
    queue: Q,
    dedup: D,
    metrics: M,
    config: PublisherConfig,
}

async fn run<Q, D, M>(settle: Arc<Settle<Q, D, M>>, mut rx: mpsc::Receiver<Buffered>)
where
    Q: VoteQueue,
    D: VoteDedup + Clone,
    M: Metrics + Clone,
{
    let config = settle.config;
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
                    if config.linger.is_zero() {
                        break;
                    }
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
        // Votes queued while this batch waited for a slot ride along.
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let settle = settle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            settle.batch(batch).await;
        });
    }
    // Every handle is gone and the buffer is drained: wait for batches in flight.
    let _all = slots
        .acquire_many(config.max_in_flight.max(1) as u32)
        .await
        .expect("semaphore is never closed");
}

/// A dedup call bounded by `limit`, one answer per claim: a call that does
/// not answer in time, or answers the wrong number, fails every claim.
async fn bounded<T>(
    limit: Duration,
    n: usize,
    call: impl Future<Output = Vec<Result<T, DedupError>>>,
) -> Vec<Result<T, DedupError>> {
    let error = |why: String| {
        (0..n)
            .map(|_| Err(DedupError::Unavailable(anyhow::anyhow!("{why}"))))
            .collect()
    };
    match tokio::time::timeout(limit, call).await {
        Ok(answers) if answers.len() == n => answers,
        Ok(answers) => {
            tracing::error!(
                expected = n,
                got = answers.len(),
                "dedup store answered a wrong number of claims"
            );
            error(format!("{} answers for {n} claims", answers.len()))
        }
        Err(_) => error(format!("no answer within {} ms", limit.as_millis())),
    }
}

impl<Q, D, M> Settle<Q, D, M>
where
    Q: VoteQueue,
    D: VoteDedup + Clone,
    M: Metrics + Clone,
{
    /// Claims, publishes and confirms one batch, answering each request.
    async fn batch(&self, batch: Vec<Buffered>) {
        // Votes their requesters took back while waiting stay out.
        let mut claims = Vec::with_capacity(batch.len());
        let mut riding = Vec::with_capacity(batch.len());
        for b in batch {
            if b.state
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                claims.push(b.claim);
                riding.push(Riding {
                    correlation_id: b.correlation_id,
                    done: b.done,
                });
            }
        }
        if claims.is_empty() {
            return;
        }
        // Step 1: the claims. Only the votes that now hold their voter's claim go on.
        let answers = bounded(
            self.config.dedup_timeout,
            claims.len(),
            self.dedup.claim_many(&claims),
        )
        .await;
        let mut claimed = Vec::with_capacity(claims.len());
        let mut claimed_riding = Vec::with_capacity(claims.len());
        for ((mut claim, ride), answer) in claims.into_iter().zip(riding).zip(answers) {
            match answer {
                Ok(ClaimOutcome::Claimed(slot)) => {
                    crash_point!("ingestion-after-claim");
                    claim.vote.slot = slot;
                    claimed.push(claim);
                    claimed_riding.push(ride);
                }
                Ok(ClaimOutcome::Held(existing)) => {
                    ride.done.send(Ok(Settled::Held(existing))).ok();
                }
                Ok(ClaimOutcome::LimitReached(limit)) => {
                    ride.done.send(Ok(Settled::LimitReached(limit))).ok();
                }
                Err(e) => {
                    ride.done.send(Err(PublishError::Dedup(e))).ok();
                }
            }
        }
        if claimed.is_empty() {
            return;
        }
        // Step 2: one queue call for the claimed votes.
        let started = tokio::time::Instant::now();
        let records: Vec<VoteRecord> = claimed
            .iter()
            .zip(&claimed_riding)
            .map(|(c, r)| VoteRecord {
                vote: c.vote.clone(),
                correlation_id: r.correlation_id.clone(),
            })
            .collect();
        let mut outcomes = self.queue.publish(&records).await;
        drop(records);
        if outcomes.len() != claimed.len() {
            // An adapter broke its contract; never report a vote published on a guess.
            tracing::error!(
                expected = claimed.len(),
                got = outcomes.len(),
                "queue returned a wrong number of outcomes"
            );
            outcomes = claimed
                .iter()
                .map(|_| Err(QueueError::Unknown("outcome count mismatch".into())))
                .collect();
        }
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        self.metrics.record(MetricEvent::PublishBatch {
            votes: claimed.len(),
            failed,
            latency: started.elapsed(),
        });
        if failed > 0 {
            tracing::warn!(votes = claimed.len(), failed, "queue refused part of a batch");
        }
        // Step 3: settle each claim, then answer.
        let mut queued = Vec::with_capacity(claimed.len());
        let mut queued_riding = Vec::with_capacity(claimed.len());
        for ((claim, ride), outcome) in claimed.into_iter().zip(claimed_riding).zip(outcomes) {
            match outcome {
                Ok(()) => {
                    crash_point!("ingestion-after-publish");
                    queued.push(claim);
                    queued_riding.push(ride);
                }
                Err(e) => {
                    // Not acknowledged: give the claim back so the voter can try again.
                    release(&self.dedup, &claim, self.config.dedup_timeout, &self.metrics).await;
                    ride.done.send(Err(PublishError::Queue(e))).ok();
                }
            }
        }
        // The queue has these: from here on each is durable and answered 202.
        let slots: Vec<VoteSlot> = queued.iter().map(|c| c.vote.slot).collect();
        self.confirm(queued).await;
        for (ride, slot) in queued_riding.into_iter().zip(slots) {
            crash_point!("ingestion-after-confirm");
            // The requester may have gone away; the claim is settled all the same.
            ride.done.send(Ok(Settled::Accepted(slot))).ok();
        }
    }

    /// Confirms the claims of votes the queue acknowledged: one call for the
    /// batch, bounded by `dedup_timeout`. A missed confirm still answers 202:
    /// the vote is persisted all the same and reconciliation shows it as
    /// surplus, never as loss. Confirms that failed are retried in the
    /// background while the pending claims live, so a Redis that comes back
    /// soon still gets the claims and the live tally right.
    async fn confirm(&self, claims: Vec<Claim>) {
        if claims.is_empty() {
            return;
        }
        let answers = bounded(
            self.config.dedup_timeout,
            claims.len(),
            self.dedup.confirm_many(&claims),
        )
        .await;
        let mut accepted: HashMap<ElectionId, u64> = HashMap::new();
        let mut retry = Vec::new();
        for (claim, answer) in claims.into_iter().zip(answers) {
            match answer {
                Ok(ConfirmOutcome::Confirmed) => *accepted.entry(claim.vote.election_id).or_default() += 1,
                Ok(ConfirmOutcome::NotHeld) => self.metrics.record(MetricEvent::ConfirmMissed),
                Err(e) => {
                    tracing::warn!(vote_id = %claim.vote.vote_id, error = %e, "confirm failed after the queue acknowledged the vote; retrying");
                    retry.push(claim);
                }
            }
        }
        for (election, count) in accepted {
            self.metrics
                .record(MetricEvent::VotesAccepted { election, count });
        }
        if !retry.is_empty() {
            let (dedup, metrics, config) = (self.dedup.clone(), self.metrics.clone(), self.config);
            tokio::spawn(async move { confirm_later(dedup, metrics, config, retry).await });
        }
    }
}

/// Retries failed confirms every 500 ms for `confirm_retry_for` (less than
/// the pending claim's life), the ones still failing together each time; a
/// confirm that never lands is a missed confirm: the vote counts once
/// stored, and reconciliation shows the live tally's shortfall as a surplus,
/// never as a loss.
async fn confirm_later<D: VoteDedup, M: Metrics>(
    dedup: D,
    metrics: M,
    config: PublisherConfig,
    mut claims: Vec<Claim>,
) {
    use backon::BackoffBuilder;
    let every = Duration::from_millis(500);
    let tries = (config.confirm_retry_for.as_millis() / every.as_millis()).max(1) as usize;
    let delays = backon::ConstantBuilder::default()
        .with_delay(every)
        .with_max_times(tries)
        .build();
    for delay in delays {
        if claims.is_empty() {
            return;
        }
        tokio::time::sleep(delay).await;
        let Ok(answers) = tokio::time::timeout(config.dedup_timeout, dedup.confirm_many(&claims)).await
        else {
            continue;
        };
        if answers.len() != claims.len() {
            continue;
        }
        let mut still = Vec::new();
        for (claim, answer) in claims.into_iter().zip(answers) {
            match answer {
                Ok(ConfirmOutcome::Confirmed) => {
                    tracing::info!(vote_id = %claim.vote.vote_id, "confirm landed on retry");
                    metrics.record(MetricEvent::VotesAccepted {
                        election: claim.vote.election_id,
                        count: 1,
                    });
                }
                Ok(ConfirmOutcome::NotHeld) => {
                    tracing::warn!(vote_id = %claim.vote.vote_id, "confirm missed: the claim is no longer this vote's");
                    metrics.record(MetricEvent::ConfirmMissed);
                }
                Err(_) => still.push(claim),
            }
        }
        claims = still;
    }
    for claim in claims {
        tracing::warn!(vote_id = %claim.vote.vote_id, "confirm missed: the live tally stays short of this stored vote");
        metrics.record(MetricEvent::ConfirmMissed);
    }
}

/// Gives back the claim of a vote that was not queued, so the voter can try
/// again; a release that fails leaves the pending claim to expire.
async fn release<D: VoteDedup, M: Metrics>(dedup: &D, claim: &Claim, limit: Duration, metrics: &M) {
    match tokio::time::timeout(limit, dedup.release(claim)).await {
        Ok(Ok(_)) => metrics.record(MetricEvent::ClaimReleased),
        Ok(Err(e)) => {
            tracing::warn!(vote_id = %claim.vote.vote_id, error = %e, "could not release claim; it will expire");
        }
        Err(_) => {
            tracing::warn!(vote_id = %claim.vote.vote_id, "claim release got no answer; it will expire");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use livevote_domain::{Ballot, CandidateId, ElectionId, VoteId, VoterId};
    use livevote_hosting::SystemClock;
    use livevote_memory::{DedupConfig, MemoryDedup, MemoryQueue, NoMetrics, QueueConfig, RecordingMetrics};
    use livevote_ports::{ClaimOutcome, ClaimState, LiveTallies, QueueInspector, VoteSource};

    fn claim(election: ElectionId, candidate: CandidateId, i: usize) -> Claim {
        Claim {
            vote: Ballot {
                vote_id: VoteId::generate(),
                election_id: election,
                candidate_id: candidate,
                voter_id: VoterId::parse(format!("v{i}")).unwrap(),
                accepted_at: Utc::now(),
                slot: livevote_domain::VoteSlot::FIRST,
            },
            idempotency_key: None,
            policy: livevote_domain::VotePolicy::Single,
        }
    }

    /// An empty dedup store and a vote for each of `n` viewers.
    fn votes(n: usize) -> (MemoryDedup, Vec<Claim>) {
        let dedup = MemoryDedup::new(SystemClock, DedupConfig::default());
        let (e, c) = (ElectionId::generate(), CandidateId::generate());
        (dedup, (0..n).map(|i| claim(e, c, i)).collect())
    }

    async fn state(dedup: &MemoryDedup, c: &Claim) -> Option<ClaimState> {
        dedup
            .lookup(c.vote.election_id, &c.vote.voter_id)
            .await
            .unwrap()
            .map(|e| e.state)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_votes_share_batches_and_each_batch_confirms_its_claims() {
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
        let (dedup, claims) = votes(400);
        let (batcher, task) = VoteBatcher::start(queue.clone(), dedup.clone(), config, metrics.clone());
        let mut tasks = Vec::new();
        for c in claims.clone() {
            let b = batcher.clone();
            tasks.push(tokio::spawn(
                async move { b.cast(c, CorrelationId::generate()).await },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Settled::Accepted(VoteSlot::FIRST));
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
        // Answered only after the confirm: every claim is accepted, the tally counts each vote once.
        for c in &claims {
            assert_eq!(state(&dedup, c).await, Some(ClaimState::Accepted));
        }
        let counts = dedup.accepted_counts(claims[0].vote.election_id).await.unwrap();
        assert_eq!(counts.iter().map(|c| c.votes).sum::<u64>(), 400);
        let accepted = metrics.sum(|e| match e {
            MetricEvent::VotesAccepted { count, .. } => Some(*count),
            _ => None,
        });
        assert_eq!(accepted, 400);
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
            ..PublisherConfig::default()
        };
        let (dedup, claims) = votes(7);
        let (batcher, _task) = VoteBatcher::start(Stuck, dedup, config, NoMetrics);
        let mut waiting = Vec::new();
        // One in flight, one held by the batching loop waiting for a slot, four buffered.
        for c in claims[..6].iter().cloned() {
            let b = batcher.clone();
            waiting.push(tokio::spawn(
                async move { b.cast(c, CorrelationId::generate()).await },
            ));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = std::time::Instant::now();
        let refused = batcher.cast(claims[6].clone(), CorrelationId::generate()).await;
        assert!(matches!(refused, Err(PublishError::Overloaded)), "{refused:?}");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "refused without waiting"
        );
        assert_eq!(batcher.buffered(), 4);
    }

    #[tokio::test]
    async fn failed_messages_fail_exactly_their_votes_and_give_their_claims_back() {
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
        let (dedup, claims) = votes(6);
        let (batcher, _task) = VoteBatcher::start(queue.clone(), dedup.clone(), config, NoMetrics);
        let mut tasks = Vec::new();
        for c in claims.clone() {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move {
                (b.cast(c.clone(), CorrelationId::generate()).await.is_ok(), c)
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let (published, c) = t.await.unwrap();
            ok += usize::from(published);
            let expected = published.then_some(ClaimState::Accepted);
            assert_eq!(
                state(&dedup, &c).await,
                expected,
                "accepted when queued, released when not"
            );
        }
        assert_eq!(ok, 4, "one message of two votes failed");
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 2);
    }

    /// A store whose confirms fail while it is marked unavailable, and whose
    /// claims are always this vote's (made beforehand).
    #[derive(Clone)]
    struct Unconfirming(MemoryDedup);
    impl VoteDedup for Unconfirming {
        async fn claim(&self, _: &Claim) -> Result<ClaimOutcome, DedupError> {
            Ok(ClaimOutcome::Claimed(VoteSlot::FIRST))
        }
        async fn confirm(&self, claim: &Claim) -> Result<ConfirmOutcome, DedupError> {
            self.0.confirm(claim).await
        }
        async fn release(&self, claim: &Claim) -> Result<bool, DedupError> {
            self.0.release(claim).await
        }
        async fn lookup(
            &self,
            election: ElectionId,
            voter: &VoterId,
        ) -> Result<Option<livevote_ports::ExistingClaim>, DedupError> {
            self.0.lookup(election, voter).await
        }
    }

    #[tokio::test]
    async fn a_confirm_the_store_cannot_take_now_is_retried_and_the_vote_still_answered() {
        let queue = MemoryQueue::new(SystemClock, QueueConfig::default());
        let (dedup, claims) = votes(3);
        let metrics = RecordingMetrics::new();
        let config = PublisherConfig {
            dedup_timeout: Duration::from_millis(100),
            ..PublisherConfig::default()
        };
        // The store takes the claims, then goes away before the confirms.
        for c in &claims {
            assert_eq!(
                dedup.claim(c).await.unwrap(),
                ClaimOutcome::Claimed(VoteSlot::FIRST)
            );
        }
        dedup.set_available(false);
        let own = claims.clone();
        let (batcher, _task) = VoteBatcher::start(
            queue.clone(),
            Unconfirming(dedup.clone()),
            config,
            metrics.clone(),
        );
        let (a, b, c) = tokio::join!(
            batcher.cast(own[0].clone(), CorrelationId::generate()),
            batcher.cast(own[1].clone(), CorrelationId::generate()),
            batcher.cast(own[2].clone(), CorrelationId::generate()),
        );
        for answer in [a, b, c] {
            assert_eq!(
                answer.expect("queued votes are answered as accepted when the confirm fails"),
                Settled::Accepted(VoteSlot::FIRST)
            );
        }
        dedup.set_available(true);
        for _ in 0..50 {
            if metrics.sum(|e| match e {
                MetricEvent::VotesAccepted { count, .. } => Some(*count),
                _ => None,
            }) == 3
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for c in &claims {
            assert_eq!(
                state(&dedup, c).await,
                Some(ClaimState::Accepted),
                "confirmed on retry"
            );
        }
    }

    #[tokio::test]
    async fn shutdown_publishes_what_is_buffered() {
        let queue = MemoryQueue::new(SystemClock, QueueConfig::default());
        let config = PublisherConfig {
            linger: Duration::from_millis(200),
            ..PublisherConfig::default()
        };
        let (dedup, claims) = votes(1);
        let (batcher, task) = VoteBatcher::start(queue.clone(), dedup, config, NoMetrics);
        let b = batcher.clone();
        let c = claims[0].clone();
        let waiter = tokio::spawn(async move { b.cast(c, CorrelationId::generate()).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(batcher);
        waiter.await.unwrap().unwrap();
        task.await.unwrap();
        assert_eq!(queue.published_messages(), 1);
    }
}
