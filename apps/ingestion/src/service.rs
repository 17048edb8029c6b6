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
//! Steps 4-5 run in the publish batch's task ([`crate::publisher`]), not in
//! the request's: if the client disconnects mid-way, the vote's fate is
//! still settled (confirmed or released) rather than left as a pending claim
//! that blocks the voter until it expires.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use livevote_domain::{
    CandidateId, CorrelationId, ElectionId, IdempotencyKey, Rejection, Timestamp, VoteId, VoteLimitReached,
    VotePolicy, VoteSlot, VoterId, accept,
};
use livevote_ports::{
    CatalogError, Claim, ClaimState, Clock, DedupError, ElectionCatalog, HumanCheck, HumanVerdict,
    MetricEvent, Metrics, RejectReason, VoteDedup,
};

use crate::cache::ElectionCache;
use crate::publisher::{Casting, PublishError, Settled, VoteBatcher};

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
    /// The election's policy and the slot the vote took under it.
    pub policy: VotePolicy,
    pub slot: VoteSlot,
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
    /// The idempotency key was first used for another vote (another
    /// candidate) in this election; nothing was changed.
    #[error("idempotency key {key} was used for another vote ({vote_id})")]
    IdempotencyKeyReused { key: IdempotencyKey, vote_id: VoteId },
    /// `multi`: the voter has used every vote the policy gives (or every
    /// vote for this candidate); nothing was changed.
    #[error("{0}")]
    VoteLimitReached(VoteLimitReached),
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
            CastVoteError::IdempotencyKeyReused { .. } => RejectReason::IdempotencyKeyReused,
            CastVoteError::VoteLimitReached(_) => RejectReason::VoteLimitReached,
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

/// Cast-vote settings.
#[derive(Debug, Clone, Copy)]
pub struct CastConfig {
    /// How long a retry (same idempotency key) waits for the original
    /// attempt, still pending, to settle before answering 503.
    pub replay_wait: Duration,
    /// Longest wait for the election catalog; a store that does not answer
    /// must not hold the request until its timeout. Also the time left for
    /// the confirm when the queue's answer is waited for. (The claim and
    /// confirm calls themselves are bounded by `PublisherConfig::dedup_timeout`.)
    pub dedup_timeout: Duration,
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
    /// pipeline, running out of time refuses it (503, nothing claimed or
    /// queued); after, the answer is 202, 409 or, when the pipeline has not
    /// answered yet, VOTE_PENDING (never a plain 503 for a vote that may be
    /// stored).
    async fn cast_inner(&self, cmd: CastVote) -> Result<CastReceipt, CastVoteError> {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + inner.config.answer_within;
        let (correlation_id, key) = (cmd.correlation_id.clone(), cmd.idempotency_key.clone());
        let claim = match tokio::time::timeout_at(deadline, self.admit(cmd)).await {
            Ok(admitted) => admitted?,
            Err(_) => {
                return Err(CastVoteError::Unavailable {
                    what: "vote path",
                    source: anyhow::anyhow!(
                        "not admitted within {} ms",
                        inner.config.answer_within.as_millis()
                    ),
                });
            }
        };
        let (vote_id, accepted_at, policy) = (claim.vote.vote_id, claim.vote.accepted_at, claim.policy);
        // Steps 6-8 in the pipeline. A retry of a pending attempt (same
        // idempotency key) waits for that attempt to settle, then replays it.
        let replay_until = tokio::time::Instant::now() + inner.config.replay_wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let limit = inner
                .config
                .publish_timeout
                .min(left.saturating_sub(inner.config.dedup_timeout))
                .max(Duration::from_millis(10));
            let outcome = match inner
                .batcher
                .cast_within(claim.clone(), correlation_id.clone(), limit)
                .await
            {
                Casting::Done(outcome) => outcome,
                Casting::InFlight => {
                    tracing::warn!(%vote_id, "the pipeline is slow to answer; answering VOTE_PENDING and settling later");
                    return Err(CastVoteError::QueueUnanswered { vote_id });
                }
            };
            let existing = match outcome {
                Ok(Settled::Accepted(slot)) => {
                    return Ok(CastReceipt {
                        vote_id,
                        accepted_at,
                        replayed: false,
                        policy,
                        slot,
                    });
                }
                Ok(Settled::Held(existing)) => existing,
                Ok(Settled::LimitReached(limit)) => return Err(CastVoteError::VoteLimitReached(limit)),
                Err(e) => return Err(refused(e, vote_id)),
            };
            let Some(key) = key.as_ref().filter(|k| existing.is_retry_of(Some(k))) else {
                return Err(CastVoteError::AlreadyVoted {
                    vote_id: existing.vote_id,
                    accepted_at: existing.accepted_at,
                });
            };
            // The key is bound to its first request: the same key for another
            // candidate is a client bug, refused rather than answered with a
            // vote the viewer did not ask for.
            if !existing.is_same_vote(claim.vote.candidate_id) {
                return Err(CastVoteError::IdempotencyKeyReused {
                    key: key.clone(),
                    vote_id: existing.vote_id,
                });
            }
            if existing.state == ClaimState::Accepted {
                return Ok(CastReceipt {
                    vote_id: existing.vote_id,
                    accepted_at: existing.accepted_at,
                    replayed: true,
                    policy,
                    slot: existing.slot,
                });
            }
            // The original is still being published: never answer 202 for it before the queue has.
            if tokio::time::Instant::now() >= replay_until {
                return Err(CastVoteError::Unavailable {
                    what: "vote still in progress",
                    source: anyhow::anyhow!("the original request with this idempotency key has not settled"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Steps 3-5: the election, the rules and the human check. Nothing is
    /// claimed or changed here.
    async fn admit(&self, cmd: CastVote) -> Result<Claim, CastVoteError> {
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
        let vote = accept(&election, VoteId::generate(), cmd.voter, cmd.candidate_id, now)
            .map_err(CastVoteError::Rejected)?;
        // Step 5: human check, before anything is claimed; fail closed.
        if election.captcha_required() {
            let token = cmd
                .captcha_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or(CastVoteError::CaptchaRequired)?;
            // Boxed: a rare step whose HTTP client future would otherwise
            // grow every vote's future.
            match Box::pin(inner.human.verify(token, cmd.remote_ip)).await {
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
        Ok(Claim {
            vote,
            idempotency_key: cmd.idempotency_key,
            policy: election.policy(),
        })
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

/// The answer for a vote the pipeline did not accept.
fn refused(e: PublishError, vote_id: VoteId) -> CastVoteError {
    match e {
        PublishError::Overloaded => CastVoteError::Overloaded,
        PublishError::Closed => CastVoteError::Unavailable {
            what: "vote publisher",
            source: anyhow::anyhow!("shutting down"),
        },
        // It may be queued: the answer is "not known yet", as for a slow queue.
        PublishError::Abandoned => CastVoteError::QueueUnanswered { vote_id },
        PublishError::Dedup(d) => CastVoteError::dedup(d),
        PublishError::Queue(q) => CastVoteError::Unavailable {
            what: "vote queue",
            source: anyhow::Error::new(q),
        },
        e @ PublishError::TimedOut(_) => CastVoteError::Unavailable {
            what: "vote queue",
            source: anyhow::Error::new(e),
        },
    }
}
