//! Processor: from the vote queue into the vote store, exactly once in effect.
//!
//! [`PersistService`] takes one batch of received messages, sets poison apart
//! (never acknowledged: it is left to reach the dead-letter queue), persists
//! the votes of every good message in one store transaction, and only after
//! that commit acknowledges exactly those messages. Redelivery of any message
//! changes nothing, because the store is idempotent per vote id.

pub mod service;

pub use service::{BatchSummary, PersistConfig, PersistService, ProcessError};
