//! The vote store: the durable record of votes and the final arbiter of
//! "one vote per viewer per election".

use std::future::Future;

use livevote_domain::{CandidateCount, ElectionId, Timestamp, VoteId, VoteRecord, VoterId};

/// Why the vote store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Some votes name an election or candidate the store does not know.
    /// Nothing of the batch was written.
    #[error("votes name unknown elections or candidates: {0:?}")]
    UnknownReference(Vec<VoteId>),
    #[error("vote store unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// What happened to one vote of a persisted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistOutcome {
    /// Stored now, and counted in the persisted tally.
    Inserted,
    /// This very vote (same vote id) was stored before: a redelivery. Not
    /// counted again and not a conflict.
    AlreadyPersisted,
    /// The voter already has another vote in this election: this one was
    /// dropped by the unique constraint and recorded for auditors.
    Conflict { existing: VoteId },
}

/// The outcome of each vote of a batch, in input order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersistReport {
    pub outcomes: Vec<PersistOutcome>,
}

impl PersistReport {
    pub fn inserted(&self) -> usize {
        self.count(|o| matches!(o, PersistOutcome::Inserted))
    }
    pub fn already_persisted(&self) -> usize {
        self.count(|o| matches!(o, PersistOutcome::AlreadyPersisted))
    }
    pub fn conflicts(&self) -> usize {
        self.count(|o| matches!(o, PersistOutcome::Conflict { .. }))
    }
    fn count(&self, f: impl Fn(&PersistOutcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }
}

/// A stored vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVote {
    pub record: VoteRecord,
    pub persisted_at: Timestamp,
}

/// The store's side of reconciliation, for one election.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// `P`: votes stored.
    pub persisted: u64,
    /// `D`: distinct votes dropped because their voter already had one.
    pub duplicates: u64,
    /// Redelivered copies of already stored votes seen (informational; not part of the verdict).
    pub redeliveries: u64,
}

/// Votes stored for one election whose `accepted_at` falls in one UTC hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlyCount {
    /// The start of the hour (UTC, minutes and below zero).
    pub hour: Timestamp,
    pub votes: u64,
}

/// When an election's stored votes were accepted: first, last, and the
/// busiest UTC minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoteActivity {
    pub first_vote_at: Option<Timestamp>,
    pub last_vote_at: Option<Timestamp>,
    /// The start of the minute with the most votes (the earliest on a tie) and its count.
    pub peak_minute: Option<(Timestamp, u64)>,
}

/// Stores votes.
pub trait VoteStore: Send + Sync + 'static {
    /// Stores a batch in ONE transaction: each vote is inserted unless its id
    /// is already stored (redelivery) or its voter already has a vote in the
    /// election (conflict, recorded for auditors and counted in `D` once per
    /// vote id); persisted tallies grow by exactly the inserted votes.
    /// Redelivering a batch any number of times changes nothing. The commit
    /// is durable before this returns `Ok`. Within one batch, the first vote
    /// of a voter wins.
    ///
    /// # Errors
    /// [`StoreError::UnknownReference`] (nothing written),
    /// [`StoreError::Unavailable`] (nothing written; retry later).
    fn persist_batch(
        &self,
        votes: &[VoteRecord],
    ) -> impl Future<Output = Result<PersistReport, StoreError>> + Send;

    /// Persisted votes per candidate (only candidates with a count).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn persisted_tallies(
        &self,
        election: ElectionId,
    ) -> impl Future<Output = Result<Vec<CandidateCount>, StoreError>> + Send;

    /// A stored vote by id.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn find_vote(&self, id: VoteId) -> impl Future<Output = Result<Option<StoredVote>, StoreError>> + Send;

    /// A viewer's stored votes in an election (every slot or change), in
    /// slot order: what a `multi` or `changeable` receipt is told from.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn votes_of_voter(
        &self,
        election: ElectionId,
        voter: &VoterId,
    ) -> impl Future<Output = Result<Vec<StoredVote>, StoreError>> + Send;

    /// The store's reconciliation counters for an election.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn counts(&self, election: ElectionId) -> impl Future<Output = Result<StoreCounts, StoreError>> + Send;

    /// Stored votes per UTC hour of acceptance, oldest hour first, hours
    /// without votes left out (the audience curve of a show, for auditors).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn hourly_counts(
        &self,
        election: ElectionId,
    ) -> impl Future<Output = Result<Vec<HourlyCount>, StoreError>> + Send;

    /// First and last acceptance time and the peak minute of the stored votes.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn activity(&self, election: ElectionId)
    -> impl Future<Output = Result<VoteActivity, StoreError>> + Send;
}
