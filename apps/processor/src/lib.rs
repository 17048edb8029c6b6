//! Processor: from the vote queue into the vote store, exactly once in effect.
//!
//! [`PersistService`] takes one batch of received messages, sets poison apart
//! (never acknowledged: it is left to reach the dead-letter queue), persists
//! the votes of every good message in one store transaction, and only after
//! that commit acknowledges exactly those messages. Redelivery of any message
//! changes nothing, because the store is idempotent per vote id.
//!
//! [`runner`] drives it: concurrent receivers, one batcher, visibility
//! heartbeats, backoff while the database is down, and a stop that commits
//! the batch in hand. [`app`] wires it to PostgreSQL and SQS; `main.rs` is
//! the `livevote-processor` binary. `design.md` states the delivery semantics.

pub mod app;
pub mod config;
pub mod faults;
pub mod runner;
pub mod service;

pub use runner::{RunReport, RunnerConfig, run};
pub use service::{BatchSummary, PersistConfig, PersistService, ProcessError};
