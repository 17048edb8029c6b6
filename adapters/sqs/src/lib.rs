//! SQS adapter (aws-sdk-sqs): the vote queue (ARCHITECTURE.md).
//!
//! - Publish packs many votes into one message (the versioned JSON contract,
//!   see [`message`]; attributes `schemaVersion`, `correlationId` of the first
//!   vote, `votes`), sends up to ten messages per `SendMessageBatch`, retries
//!   throttled and server-failed entries with jittered exponential backoff,
//!   and answers `Ok` for a vote only if the entry carrying it succeeded.
//! - Receive long-polls, decodes into the domain and reports anything else
//!   (bad JSON, invalid ids, unknown version) as poison; delete and
//!   visibility changes go in batches of ten.
//! - Inspection: approximate depths of the main and dead-letter queues, and
//!   every dead-lettered message decoded as far as it goes (election and
//!   votes, or why it does not decode, and its first bytes), peeked with a
//!   short visibility timeout, then made visible again.
//! - [`SqsQueue::replay_dead_letters`] moves dead letters back, with progress
//!   (inspection and replay live in `queue/dead_letters.rs`, apart from the
//!   hot path in `queue/mod.rs`).
//! - [`setup::create_queues`] creates a main queue and its dead-letter queue
//!   with a redrive policy, for local runs and tests.

pub mod message;
mod queue;
pub mod setup;

pub use queue::{ReplayProgress, SqsConfig, SqsQueue};
pub use setup::{QueueSettings, client, create_queues, find_queues, local_client, open_queue};
