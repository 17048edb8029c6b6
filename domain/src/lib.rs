//! The rules of livevote, free of I/O and of any runtime.
//!
//! Everything here is valid by construction: a value of a type in this crate has
//! passed its checks, so code that holds one never re-validates it. Time always
//! comes in as an argument (`now`), never from a clock, and so do new ids (a
//! vote's id, an election's, the source of its candidates' ids), so every rule
//! is a pure function that tests can drive to any instant. The `generate()`
//! constructors of the id types are for the callers, which own the clock and
//! the random numbers; no rule calls them.

pub mod election;
pub mod ids;
pub mod policy;
pub mod reconcile;
pub mod tally;
pub mod text;
pub mod vote;
pub mod window;

/// An instant, in UTC. Votes, windows and audit entries all use it.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

pub use election::{
    Candidate, CandidateDraft, Election, ElectionEdit, ElectionError, ElectionStatus, NewElection,
    ResultsVisibility,
};
pub use ids::{ActorId, CandidateId, CorrelationId, ElectionId, IdError, IdempotencyKey, VoteId, VoterId};
pub use policy::{
    MAX_VOTES_LIMIT, MultiLimits, PolicyError, VoteLimitReached, VotePolicy, VoteSlot, current_vote,
    next_multi_slot,
};
pub use reconcile::{ReconciliationCounts, Verdict};
pub use tally::{CandidateCount, Percentage, Tally, TallyShard};
pub use text::{CancelReason, CandidateName, Description, Party, TextError, Title};
pub use vote::{Arrival, Ballot, BrokenReference, Rejection, VoteRecord, accept, arrival, check_references};
pub use window::{VotingWindow, WindowError};
