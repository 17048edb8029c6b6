//! The vote queue: publishing accepted votes, consuming them for the vote
//! store, and inspecting depth for reconciliation.
//!
//! Delivery is at least once. A consumer MUST acknowledge (delete) a message
//! only after everything it carries is durably stored; a message that is
//! never acknowledged comes back after its visibility timeout and, after too
//! many deliveries, moves to the dead-letter queue.

use std::future::Future;
use std::time::Duration;

use livevote_domain::{ElectionId, Timestamp, VoteRecord};

/// Why a queue operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The queue asked us to slow down; retry after a backoff.
    #[error("queue throttled the request: {0}")]
    Throttled(String),
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The queue refused this entry for a reason a retry will not fix.
    #[error("queue rejected the entry: {0}")]
    Rejected(String),
    #[error("queue error: {0}")]
    Unknown(String),
}

/// Publishes votes.
pub trait VoteQueue: Send + Sync + 'static {
    /// Publishes a batch of votes, packing many into each message. Returns
    /// one outcome per input vote, same order and length. Adapters MUST answer
    /// `Ok` for a vote only if the queue acknowledged the message carrying it,
    /// and MUST map a partially failed batch back to exactly the votes of the
    /// failed messages.
    fn publish(&self, votes: &[VoteRecord]) -> impl Future<Output = Vec<Result<(), QueueError>>> + Send;
}

/// An opaque handle for acknowledging or extending one received message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryTag(pub String);

/// Why a message cannot be processed. Poison is never acknowledged: it is
/// counted, logged, and left to reach the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoisonReason {
    /// Not the message format at all (bad JSON, wrong shape, invalid ids).
    Undecodable(String),
    /// A message format version this build does not know.
    UnknownVersion(u64),
    /// Well formed, but names an election or candidate that does not exist.
    UnknownReference(String),
}

impl std::fmt::Display for PoisonReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoisonReason::Undecodable(why) => write!(f, "undecodable message: {why}"),
            PoisonReason::UnknownVersion(v) => write!(f, "unknown message version {v}"),
            PoisonReason::UnknownReference(why) => write!(f, "unknown reference: {why}"),
        }
    }
}

/// What a received message holds.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryContent {
    Votes(Vec<VoteRecord>),
    Poison(PoisonReason),
}

/// One received message.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub tag: DeliveryTag,
    /// The queue's id of the message (stable across redeliveries), for logs.
    pub message_id: String,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
    /// When the message was first sent, if the queue says.
    pub sent_at: Option<Timestamp>,
    pub content: DeliveryContent,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckReport {
    /// Tags whose messages could not be deleted; they will be redelivered,
    /// which idempotent processing makes harmless.
    pub failed: Vec<DeliveryTag>,
}

/// Consumes votes.
pub trait VoteSource: Send + Sync + 'static {
    /// Receives up to `max_messages` messages, waiting up to `wait` for the
    /// first (long polling). Each received message is hidden from other
    /// consumers for the queue's visibility timeout. Adapters MUST decode
    /// messages into the domain and report anything undecodable as
    /// [`DeliveryContent::Poison`], never drop it.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] / [`QueueError::Throttled`].
    fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, QueueError>> + Send;

    /// Deletes messages. Call only after their votes are durably stored.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`]: nothing can be assumed deleted.
    fn ack(&self, tags: &[DeliveryTag]) -> impl Future<Output = Result<AckReport, QueueError>> + Send;

    /// Keeps messages hidden for `by` from now, for a batch that runs long.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    fn extend_visibility(
        &self,
        tags: &[DeliveryTag],
        by: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Queue depths for auditors. Counts are approximate in SQS and exact in the fakes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages waiting to be received.
    pub visible: u64,
    /// Messages received and not yet deleted.
    pub in_flight: u64,
    /// Age of the oldest message in the main queue.
    pub oldest_age: Option<Duration>,
    /// Messages in the dead-letter queue.
    pub dead_letter_messages: u64,
}

impl QueueStats {
    /// `Q` of reconciliation: messages not yet through the pipeline.
    pub fn pending_messages(&self) -> u64 {
        self.visible + self.in_flight
    }
}

/// Inspects the queue and its dead-letter queue.
pub trait QueueInspector: Send + Sync + 'static {
    /// # Errors
    /// [`QueueError::Unavailable`].
    fn stats(&self) -> impl Future<Output = Result<QueueStats, QueueError>> + Send;

    /// Votes held in the dead-letter queue, per election. Adapters MUST look
    /// at the messages without consuming them.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    fn dead_lettered_votes(&self) -> impl Future<Output = Result<Vec<(ElectionId, u64)>, QueueError>> + Send;
}
