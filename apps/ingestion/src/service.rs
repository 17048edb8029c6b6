//! The cast-vote use case: steps 2-8 of ARCHITECTURE.md's flow of one vote, for one request.
//!
//! Order matters for integrity:
//! 1. the election (cache) and the rules (`accept`) refuse what cannot count;
//! 2. the human check runs before anything is claimed, and fails closed;
//! 3. the dedup claim answers "already voted" early (the database's unique
//!    constraint remains the final arbiter);
//! 4. the vote is handed to the batcher; only the queue's acknowledgement
//!    makes it accepted (invariant 2). On failure the claim is released so
//!    the voter can try again;
//! 5. confirm turns the claim into "accepted" and bumps the live tally.
//!
//! Steps 4-5 run in their own task: if the client disconnects mid-way, the
//! vote's fate is still settled (confirmed or released) rather than left as
//! a pending claim that blocks the voter until it expires.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;

use livevote_domain::{
    CandidateId, CorrelationId, ElectionId, IdempotencyKey, Rejection, Timestamp, VoteId, VoteRecord,
    VoterId, accept,
};
use livevote_ports::{
    CatalogError, Claim, ClaimOutcome, ClaimState, Clock, ConfirmOutcome, DedupError, ElectionCatalog,
    HumanCheck, HumanVerdict, MetricEvent, Metrics, RejectReason, VoteDedup,
};

use crate::cache::ElectionCache;
use crate::faults::crash_point;
use crate::publisher::{PublishError, Publishing, VoteBatcher};

/// A request to cast a vote, parsed at the edge.
#[derive(Debug, Clone)]
pub struct CastVote {
    /// From the verified token's `sub`, never from the body.
    pub voter: VoterId,
    pub election_id: ElectionId,
    pub candidate_id: CandidateId,
    pub captcha_token: Option<String>,
    pub idempotency_key: Option<IdempotencyKey>,
    pub correlation_id: CorrelationId,
    pub remote_ip: Option<IpAddr>,
}

/// An accepted vote, as answered with 202.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastReceipt {
    pub vote_id: VoteId,
    pub accepted_at: Timestamp,
    /// A retry with the same idempotency key, answered with the original vote.
    pub replayed: bool,
}

/// Why a vote was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CastVoteError {
    #[error("election {0} not found")]
    ElectionNotFound(ElectionId),
    #[error("{0}")]
    Rejected(Rejection),
    #[error("this election requires a captcha token")]
    CaptchaRequired,
    #[error("captcha verification failed")]
    CaptchaFailed,
    /// The voter already voted (or a vote of theirs is being accepted right now).
    #[error("voter already voted in this election")]
    AlreadyVoted { vote_id: VoteId, accepted_at: Timestamp },
    /// Too many votes in flight: shed load, the client retries later.
    #[error("ingestion is overloaded")]
    Overloaded,
    /// The queue has not answered for a vote it may still take: the vote
    /// is neither accepted nor refused yet. Its claim is settled once the
    /// queue answers; a retry with the same idempotency key then learns the outcome.
    #[error("vote {vote_id} is still being queued")]
    QueueUnanswered { vote_id: VoteId },
    /// A dependency (queue, dedup store, catalog, human check) is down or slow.
    #[error("{what} unavailable")]
    Unavailable {
        what: &'static str,
        #[source]
        source: anyhow::Error,
    },
}

impl CastVoteError {
    /// The metric label of this refusal.
    pub fn reason(&self) -> RejectReason {
        match self {
            CastVoteError::ElectionNotFound(_) => RejectReason::ElectionNotFound,
            CastVoteError::Rejected(Rejection::NotActive { .. }) => RejectReason::NotActive,
            CastVoteError::Rejected(Rejection::NotStarted { .. }) => RejectReason::NotStarted,
            CastVoteError::Rejected(Rejection::Ended { .. }) => RejectReason::Closed,
            CastVoteError::Rejected(Rejection::UnknownCandidate { .. }) => RejectReason::UnknownCandidate,
            CastVoteError::CaptchaRequired | CastVoteError::CaptchaFailed => RejectReason::CaptchaFailed,
            CastVoteError::AlreadyVoted { .. } => RejectReason::Duplicate,
            CastVoteError::Overloaded => RejectReason::Overloaded,
            CastVoteError::Unavailable { .. } | CastVoteError::QueueUnanswered { .. } => {
                RejectReason::Unavailable
            }
        }
    }

    fn dedup(e: DedupError) -> Self {
        CastVoteError::Unavailable {
            what: "dedup store",
            source: anyhow::Error::new(e),
        }
    }

    fn catalog(e: CatalogError) -> Self {
        CastVoteError::Unavailable {
            what: "election catalog",
            source: anyhow::Error::new(e),
        }
    }
}

/// The caller's vote in an election, as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyVote {
    pub vote_id: VoteId,
    pub accepted_at: Timestamp,
}

/// How the claim step ended.
enum Claimed {
    /// A new claim: the vote goes on to the queue.
    Fresh(Claim, VoteRecord),
    /// A retry of an accepted vote (same idempotency key): its original receipt.
    Replay(CastReceipt),
}

/// Cast-vote settings.
#[derive(Debug, Clone, Copy)]
pub struct CastConfig {
    /// How long a retry (same idempotency key) waits for the original
    /// attempt, still pending, to settle before answering 503.
    pub replay_wait: Duration,
    /// Longest wait for one dedup call (claim, confirm, release); a Redis
    /// that does not answer must not hold the request until its timeout.
    pub dedup_timeout: Duration,
    /// How long a confirm that failed after the queue took the vote is
    /// retried in the background (keep it under the pending claim's life, 30 s).
    pub confirm_retry_for: Duration,
    /// Longest a vote takes to be answered (keep it under the request
    /// timeout): past it, a vote not yet handed to the queue is refused, one
    /// handed over is answered VOTE_PENDING.
    pub answer_within: Duration,
    /// Longest wait for the queue's acknowledgement before answering: a vote
    /// still buffered is taken back (503 UNAVAILABLE), one already being sent
    /// is answered 503 VOTE_PENDING and settled in the background.
    pub publish_timeout: Duration,
}

impl Default for CastConfig {
    fn default() -> Self {
        Self {
            replay_wait: Duration::from_secs(2),
            dedup_timeout: Duration::from_millis(1500),
            answer_within: Duration::from_secs(8),
            confirm_retry_for: Duration::from_secs(25),
            publish_timeout: Duration::from_secs(5),
        }
    }
}

struct Inner<Catalog, Claims, Humans, Time, Meter> {
    elections: Arc<ElectionCache<Catalog>>,
    dedup: Claims,
    batcher: VoteBatcher,
    human: Humans,
    clock: Time,
    metrics: Meter,
    config: CastConfig,
}

/// Accepts votes. Cheap to clone; clones share everything.
pub struct CastVoteService<Catalog, Claims, Humans, Time, Meter> {
    inner: Arc<Inner<Catalog, Claims, Humans, Time, Meter>>,
}

impl<Catalog, Claims, Humans, Time, Meter> Clone for CastVoteService<Catalog, Claims, Humans, Time, Meter> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<Catalog, Claims, Humans, Time, Meter> std::fmt::Debug
    for CastVoteService<Catalog, Claims, Humans, Time, Meter>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CastVoteService").finish_non_exhaustive()
    }
}

impl<Catalog, Claims, Humans, Time, Meter> CastVoteService<Catalog, Claims, Humans, Time, Meter>
where
    Catalog: ElectionCatalog,
    Claims: VoteDedup + Clone,
    Humans: HumanCheck,
    Time: Clock,
    Meter: Metrics + Clone,
{
    pub fn new(
        elections: Arc<ElectionCache<Catalog>>,
        dedup: Claims,
        batcher: VoteBatcher,
        human: Humans,
        clock: Time,
        metrics: Meter,
        config: CastConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                elections,
                dedup,
                batcher,
                human,
                clock,
                metrics,
                config,
            }),
        }
    }

    /// The election cache, for the change-feed follower and readiness.
    pub fn elections(&self) -> &Arc<ElectionCache<Catalog>> {
        &self.inner.elections
    }

    /// Casts one vote.
    ///
    /// # Errors
    /// [`CastVoteError`]: nothing is claimed or queued for any refusal, and a
    /// failed publish gives the claim back.
    pub async fn cast(&self, cmd: CastVote) -> Result<CastReceipt, CastVoteError> {
        let result = self.cast_inner(cmd).await;
        let metrics = &self.inner.metrics;
        match &result {
            Ok(r) if r.replayed => metrics.record(MetricEvent::VoteReplayed),
            Ok(_) => {}
            Err(e) => metrics.record(MetricEvent::VoteRejected { reason: e.reason() }),
        }
        result
    }

    /// Steps 3-9 within `answer_within`: before the vote is handed to the
    /// queue, running out of time refuses it (503, nothing queued); after,
    /// the answer is 202 or, when the queue has not answered yet, VOTE_PENDING
    /// (never a plain 503 for a vote that may be stored).
    async fn cast_inner(&self, cmd: CastVote) -> Result<CastReceipt, CastVoteError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.answer_within;
        let (claim, record) = match tokio::time::timeout_at(deadline, self.claim_step(cmd)).await {
            Ok(Ok(Claimed::Fresh(claim, record))) => (claim, record),
            Ok(Ok(Claimed::Replay(receipt))) => return Ok(receipt),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(CastVoteError::Unavailable {
                    what: "vote path",
                    source: anyhow::anyhow!(
                        "no claim within {} ms",
                        self.inner.config.answer_within.as_millis()
                    ),
                });
            }
        };
        // Steps 7-8 in their own task, so a vanished client cannot leave them
        // half done. When the queue is slow to answer for a vote it may still
        // take, the task says so at once and goes on to settle the claim.
        let vote_id = claim.vote.vote_id;
        let service = self.clone();
        let (unsure_tx, unsure) = tokio::sync::oneshot::channel();
        let mut tail = tokio::spawn(async move {
            service
                .publish_and_confirm(claim, record, deadline, unsure_tx)
                .await
        });
        tokio::select! {
            joined = &mut tail => match joined {
                Ok(result) => result,
                Err(join) => Err(CastVoteError::Unavailable {
                    what: "vote task",
                    source: anyhow::Error::new(join),
                }),
            },
            Ok(()) = unsure => Err(CastVoteError::QueueUnanswered { vote_id }),
            () = tokio::time::sleep_until(deadline) => Err(CastVoteError::QueueUnanswered { vote_id }),
        }
    }

    /// Steps 3-6: the election, the rules, the human check and the claim.
    async fn claim_step(&self, cmd: CastVote) -> Result<Claimed, CastVoteError> {
        let inner = &self.inner;
        // Step 3: the election.
        let election = tokio::time::timeout(inner.config.dedup_timeout, inner.elections.get(cmd.election_id))
            .await
            .map_err(|_| CastVoteError::Unavailable {
                what: "election catalog",
                source: anyhow::anyhow!("no answer within {} ms", inner.config.dedup_timeout.as_millis()),
            })?
            .map_err(CastVoteError::catalog)?
            .ok_or(CastVoteError::ElectionNotFound(cmd.election_id))?;
        // Step 4: the rules.
        let now = inner.clock.now();
        let vote = accept(
            &election,
            VoteId::generate(),
            cmd.voter.clone(),
            cmd.candidate_id,
            now,
        )
        .map_err(CastVoteError::Rejected)?;
        // Step 5: human check, before anything is claimed; fail closed.
        if election.captcha_required() {
            let token = cmd
                .captcha_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or(CastVoteError::CaptchaRequired)?;
            match inner.human.verify(token, cmd.remote_ip).await {
                Ok(HumanVerdict::Human) => {}
                Ok(HumanVerdict::NotHuman) => return Err(CastVoteError::CaptchaFailed),
                Err(e) => {
                    return Err(CastVoteError::Unavailable {
                        what: "captcha verifier",
                        source: anyhow::Error::new(e),
                    });
                }
            }
        }
        let claim = Claim {
            vote,
            idempotency_key: cmd.idempotency_key.clone(),
        };
        let record = VoteRecord {
            vote: claim.vote.clone(),
            correlation_id: cmd.correlation_id.clone(),
        };
        // Step 6: the claim. A retry of a pending attempt waits for it to settle.
        let deadline = tokio::time::Instant::now() + inner.config.replay_wait;
        loop {
            match bounded(inner.config.dedup_timeout, inner.dedup.claim(&claim))
                .await
                .map_err(CastVoteError::dedup)?
            {
                ClaimOutcome::Claimed => break,
                ClaimOutcome::Held(existing) if existing.is_retry_of(cmd.idempotency_key.as_ref()) => {
                    if existing.state == ClaimState::Accepted {
                        return Ok(Claimed::Replay(CastReceipt {
                            vote_id: existing.vote_id,
                            accepted_at: existing.accepted_at,
                            replayed: true,
                        }));
                    }
                    // The original is still being published: never answer 202 for it before the queue has.
                    if tokio::time::Instant::now() >= deadline {
                        return Err(CastVoteError::Unavailable {
                            what: "vote still in progress",
                            source: anyhow::anyhow!(
                                "the original request with this idempotency key has not settled"
                            ),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ClaimOutcome::Held(existing) => {
                    return Err(CastVoteError::AlreadyVoted {
                        vote_id: existing.vote_id,
                        accepted_at: existing.accepted_at,
                    });
                }
            }
        }
        crash_point!("ingestion-after-claim");
        Ok(Claimed::Fresh(claim, record))
    }

    async fn publish_and_confirm(
        &self,
        claim: Claim,
        record: VoteRecord,
        deadline: tokio::time::Instant,
        unsure: tokio::sync::oneshot::Sender<()>,
    ) -> Result<CastReceipt, CastVoteError> {
        let inner = &self.inner;
        let vote_id = claim.vote.vote_id;
        // Leave time for the confirm before the request must be answered.
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(inner.config.dedup_timeout);
        let limit = inner
            .config
            .publish_timeout
            .min(left)
            .max(Duration::from_millis(10));
        let published = match inner.batcher.publish_within(record, limit).await {
            Publishing::Done(result) => result,
            Publishing::Sending(wait) => {
                tracing::warn!(%vote_id, "the queue is slow to acknowledge; answering VOTE_PENDING and settling later");
                // The request may already be gone; the claim is settled all the same.
                unsure.send(()).ok();
                wait.outcome().await
            }
        };
        if let Err(e) = published {
            // Not acknowledged: give the claim back so the voter can try again.
            match bounded(inner.config.dedup_timeout, inner.dedup.release(&claim)).await {
                Ok(_) => inner.metrics.record(MetricEvent::ClaimReleased),
                Err(release_error) => {
                    tracing::warn!(%vote_id, error = %release_error, "could not release claim; it will expire");
                }
            }
            return Err(match e {
                PublishError::Overloaded => CastVoteError::Overloaded,
                PublishError::Closed => CastVoteError::Unavailable {
                    what: "vote publisher",
                    source: anyhow::anyhow!("shutting down"),
                },
                PublishError::Queue(q) => CastVoteError::Unavailable {
                    what: "vote queue",
                    source: anyhow::Error::new(q),
                },
                e @ PublishError::TimedOut(_) => CastVoteError::Unavailable {
                    what: "vote queue",
                    source: anyhow::Error::new(e),
                },
            });
        }
        crash_point!("ingestion-after-publish");
        // The queue has it: from here on the vote is durable and is answered 202.
        // A missed confirm still answers 202: the vote is persisted all the
        // same and reconciliation shows it as surplus, never as loss.
        let election = claim.vote.election_id;
        match bounded(inner.config.dedup_timeout, inner.dedup.confirm(&claim)).await {
            Ok(ConfirmOutcome::Confirmed) => inner
                .metrics
                .record(MetricEvent::VotesAccepted { election, count: 1 }),
            Ok(ConfirmOutcome::NotHeld) => inner.metrics.record(MetricEvent::ConfirmMissed),
            Err(e) => {
                // The vote is queued and answered 202 all the same; the confirm is
                // retried in the background while the pending claim lives, so a
                // Redis that comes back soon still gets the claim and the live tally right.
                tracing::warn!(%vote_id, error = %e, "confirm failed after the queue acknowledged the vote; retrying");
                let (service, claim) = (self.clone(), claim.clone());
                tokio::spawn(async move { service.confirm_later(claim).await });
            }
        }
        crash_point!("ingestion-after-confirm");
        Ok(CastReceipt {
            vote_id,
            accepted_at: claim.vote.accepted_at,
            replayed: false,
        })
    }

    /// Retries a failed confirm every 500 ms for `confirm_retry_for` (less
    /// than the pending claim's life); a confirm that never lands is a missed
    /// confirm: the vote counts once stored, and reconciliation shows the
    /// live tally's shortfall as a surplus, never as a loss.
    async fn confirm_later(&self, claim: Claim) {
        let inner = &self.inner;
        let election = claim.vote.election_id;
        let every = Duration::from_millis(500);
        let tries = (inner.config.confirm_retry_for.as_millis() / every.as_millis()).max(1) as usize;
        tokio::time::sleep(every).await;
        let confirmed = (|| bounded(inner.config.dedup_timeout, inner.dedup.confirm(&claim)))
            .retry(
                backon::ConstantBuilder::default()
                    .with_delay(every)
                    .with_max_times(tries - 1),
            )
            .await;
        if let Ok(ConfirmOutcome::Confirmed) = confirmed {
            tracing::info!(vote_id = %claim.vote.vote_id, "confirm landed on retry");
            inner
                .metrics
                .record(MetricEvent::VotesAccepted { election, count: 1 });
            return;
        }
        tracing::warn!(vote_id = %claim.vote.vote_id, "confirm missed: the live tally stays short of this stored vote");
        inner.metrics.record(MetricEvent::ConfirmMissed);
    }

    /// The caller's accepted vote in an election, if any. A pending claim is
    /// not a vote yet.
    ///
    /// # Errors
    /// [`CastVoteError::Unavailable`] when the dedup store is down.
    pub async fn my_vote(
        &self,
        election: ElectionId,
        voter: &VoterId,
    ) -> Result<Option<MyVote>, CastVoteError> {
        let found = self
            .inner
            .dedup
            .lookup(election, voter)
            .await
            .map_err(CastVoteError::dedup)?;
        Ok(found.filter(|c| c.state == ClaimState::Accepted).map(|c| MyVote {
            vote_id: c.vote_id,
            accepted_at: c.accepted_at,
        }))
    }
}

/// A dedup call bounded by `limit`; a call that does not answer in time is an
/// unavailable store (the command may still run later: a claim then expires).
async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, DedupError>>,
) -> Result<T, DedupError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(DedupError::Unavailable(anyhow::anyhow!(
            "no answer within {} ms",
            limit.as_millis()
        ))),
    }
}
