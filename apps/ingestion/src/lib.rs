//! Ingestion: accepting votes.
//!
//! [`CastVoteService`] runs steps 2-8 of ARCHITECTURE.md's flow of one vote for one request: election from
//! the in-memory [`ElectionCache`], the domain's `accept`, the optional human
//! check, then hand-off to the [`VoteBatcher`], the pipeline that claims,
//! publishes and confirms (or releases) a whole batch of votes at a time. A
//! vote is answered as accepted only after the queue acknowledged it.
//!
//! [`http`] is the HTTP edge (routes, errors, limits, OpenAPI), [`app`] wires
//! configuration and adapters into a running service, and `main.rs` is the
//! `livevote-ingestion` binary.

pub mod app;
pub mod cache;
pub mod clockguard;
pub mod config;
pub mod faults;
pub mod http;
pub mod publisher;
pub mod ratelimit;
pub mod service;
pub mod wiring;

pub use cache::{CacheConfig, ElectionCache};
pub use publisher::{Casting, PublishError, PublisherConfig, Settled, VoteBatcher};
pub use service::{CastConfig, CastReceipt, CastVote, CastVoteError, CastVoteService, MyVote};
