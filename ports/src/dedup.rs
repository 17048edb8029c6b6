//! The fast path of "one vote per viewer", and the live accepted tallies.
//!
//! A vote's life in the dedup store (ARCHITECTURE.md, steps 5-7 of a vote):
//! `claim` records a short-lived *pending* claim for (election, voter) if there
//! is none; after the queue acknowledged the vote, `confirm` turns the claim
//! into *accepted* (long-lived) and bumps the live tally in the same atomic
//! step; if publishing failed, `release` removes the claim so the voter can try
//! again. `confirm` and `release` act only on a claim that is still this vote's
//! (same vote id): a claim that expired and was taken by another attempt is
//! never confirmed or released by the first.
//!
//! The vote store's unique constraint is the final arbiter; losing this store
//! weakens the early 409 but never lets a second vote be counted.
//!
//! Under a `multi` or `changeable` policy (ARCHITECTURE.md, "Vote policies")
//! a claim is for one slot of the voter: `claim` gives the vote the lowest
//! free slot within the policy's limits (`multi`) or the next change number
//! (`changeable`), or answers that the limit is reached; `confirm` and
//! `release` act on that slot only. Confirming a `changeable` vote moves the
//! voter's live count to its candidate when it is the voter's newest
//! confirmed change, and counts it as replaced otherwise.

use std::future::Future;

use livevote_domain::{
    Ballot, CandidateCount, CandidateId, ElectionId, IdempotencyKey, Timestamp, VoteId, VoteLimitReached,
    VotePolicy, VoteSlot, VoterId,
};

/// Why the dedup store or the live tallies failed.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("dedup store unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// A claim on a voter's one vote in an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The vote; its `slot` is the one `claim` gave (before: [`VoteSlot::FIRST`]).
    pub vote: Ballot,
    /// The client's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The election's vote policy.
    pub policy: VotePolicy,
}

/// Where an existing claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// Claimed, not yet confirmed: its publish may still succeed or fail.
    Reserved,
    /// Confirmed: the queue acknowledged it and the voter was (or is being) answered 202.
    Accepted,
}

/// A claim that already exists for a voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingClaim {
    pub vote_id: VoteId,
    pub accepted_at: Timestamp,
    pub state: ClaimState,
    /// The idempotency key recorded with the claim, if any.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The candidate the claim's vote is for; `None` for a claim recorded
    /// without it (written by a version that did not keep it).
    pub candidate_id: Option<CandidateId>,
    /// The slot the claim holds.
    pub slot: VoteSlot,
}

impl ExistingClaim {
    /// Whether a request carrying `key` is a retry of the request that made this claim.
    pub fn is_retry_of(&self, key: Option<&IdempotencyKey>) -> bool {
        matches!((key, &self.idempotency_key), (Some(a), Some(b)) if a == b)
    }

    /// Whether a retry (same idempotency key) asks for the same vote as the
    /// request that made this claim: an idempotency key is bound to its
    /// request, so the same key for another candidate is refused, never
    /// answered with the original vote. A claim that did not record its
    /// candidate cannot tell, and is taken as the same request.
    pub fn is_same_vote(&self, candidate: CandidateId) -> bool {
        self.candidate_id.is_none_or(|c| c == candidate)
    }
}

/// The result of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This vote now holds the voter's claim on this slot, pending.
    Claimed(VoteSlot),
    /// The voter already holds a claim (`single`), or the claim of the same
    /// idempotency key (any policy); nothing was changed.
    Held(ExistingClaim),
    /// `multi`: every vote the policy gives (or every vote for the
    /// candidate) is held; nothing was changed.
    LimitReached(VoteLimitReached),
}

/// The result of a confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Reserved -> accepted, and the live tally was bumped, atomically.
    Confirmed,
    /// The claim is no longer this vote's (it expired, or another attempt took
    /// it): nothing was changed and the tally was not bumped.
    NotHeld,
}

/// Claim / confirm / release / look up. All operations on one (election,
/// voter) are atomic with respect to each other.
pub trait VoteDedup: Send + Sync + 'static {
    /// Claims the voter's vote for `claim.vote.vote_id` if no claim exists.
    /// The pending claim expires by itself after a short time (30 s by
    /// default), so a crash never locks a voter out for long.
    ///
    /// # Errors
    /// [`DedupError::Unavailable`]; on error the caller MUST assume nothing was claimed.
    fn claim(&self, claim: &Claim) -> impl Future<Output = Result<ClaimOutcome, DedupError>> + Send;

    /// [`VoteDedup::claim`] for many claims at once (the votes of one batch),
    /// one answer per claim in order; two claims of one voter in a batch are
    /// decided in order (the first wins). Each claim is still its own atomic
    /// step; adapters SHOULD send them in as few round trips as the store
    /// allows. The default claims them one by one.
    fn claim_many(
        &self,
        claims: &[Claim],
    ) -> impl Future<Output = Vec<Result<ClaimOutcome, DedupError>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(claims.len());
            for claim in claims {
                answers.push(self.claim(claim).await);
            }
            answers
        }
    }

    /// If the claim is still this vote's and pending: makes it accepted
    /// (kept 48 h by default) and adds one to the live tally of its candidate,
    /// in one atomic step. Confirming an already accepted claim of the same
    /// vote changes nothing and answers `Confirmed`.
    ///
    /// # Errors
    /// [`DedupError::Unavailable`]; the tally may then be short by this vote,
    /// which reconciliation shows as a surplus, never as a loss.
    fn confirm(&self, claim: &Claim) -> impl Future<Output = Result<ConfirmOutcome, DedupError>> + Send;

    /// [`VoteDedup::confirm`] for many claims at once (the votes of one
    /// publish call), one answer per claim in order. Each claim is still its
    /// own atomic step; adapters SHOULD send them in as few round trips as
    /// the store allows. The default confirms them one by one.
    fn confirm_many(
        &self,
        claims: &[Claim],
    ) -> impl Future<Output = Vec<Result<ConfirmOutcome, DedupError>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(claims.len());
            for claim in claims {
                answers.push(self.confirm(claim).await);
            }
            answers
        }
    }

    /// Deletes the claim if it is still this vote's and pending; returns whether it did.
    ///
    /// # Errors
    /// [`DedupError::Unavailable`]; the pending claim then expires by itself.
    fn release(&self, claim: &Claim) -> impl Future<Output = Result<bool, DedupError>> + Send;

    /// The voter's current claim in an election, if any.
    ///
    /// # Errors
    /// [`DedupError::Unavailable`].
    fn lookup(
        &self,
        election: ElectionId,
        voter: &VoterId,
    ) -> impl Future<Output = Result<Option<ExistingClaim>, DedupError>> + Send;
}

/// Live accepted tallies: the `A` of reconciliation, per candidate.
pub trait LiveTallies: Send + Sync + 'static {
    /// Accepted votes per candidate (only candidates with a count).
    ///
    /// # Errors
    /// [`DedupError::Unavailable`].
    fn accepted_counts(
        &self,
        election: ElectionId,
    ) -> impl Future<Output = Result<Vec<CandidateCount>, DedupError>> + Send;

    /// `changeable`: confirmed votes that are not (or no longer) their
    /// voter's current vote. Accepted votes = the tallies' total + this.
    ///
    /// # Errors
    /// [`DedupError::Unavailable`].
    fn replaced_votes(&self, election: ElectionId) -> impl Future<Output = Result<u64, DedupError>> + Send;

    /// `changeable`: replaces the count of replaced votes (rebuild after
    /// data loss, from the vote store: stored votes less current votes).
    ///
    /// # Errors
    /// [`DedupError::Unavailable`].
    fn replace_replaced(
        &self,
        election: ElectionId,
        replaced: u64,
    ) -> impl Future<Output = Result<(), DedupError>> + Send;

    /// Replaces an election's live tallies with `counts` (rebuild after data
    /// loss, from the vote store). Adapters MUST make the replacement atomic
    /// for readers.
    ///
    /// # Errors
    /// [`DedupError::Unavailable`].
    fn replace_counts(
        &self,
        election: ElectionId,
        counts: &[CandidateCount],
    ) -> impl Future<Output = Result<(), DedupError>> + Send;
}
