//! Ingestion: accepting votes.
//!
//! [`CastVoteService`] runs DESIGN.md steps 3-9 for one request: election from
//! the in-memory [`ElectionCache`], the domain's `accept`, the optional human
//! check, the dedup claim, hand-off to the micro-batching [`VoteBatcher`], then
//! confirm (or release on failure). A vote is answered as accepted only after
//! the queue acknowledged it.

pub mod cache;
pub mod publisher;
pub mod service;

pub use cache::{CacheConfig, ElectionCache};
pub use publisher::{PublishError, PublisherConfig, VoteBatcher};
pub use service::{CastConfig, CastReceipt, CastVote, CastVoteError, CastVoteService, MyVote};
