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

/// One message of the dead-letter queue, as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The queue's id of the message.
    pub message_id: String,
    /// Receives so far, as the queue reports them.
    pub receive_count: u32,
    /// When the message was first sent, if the queue says.
    pub sent_at: Option<Timestamp>,
    /// Votes it carries per election; empty when it does not decode.
    pub votes_per_election: Vec<(ElectionId, u64)>,
    /// Why it cannot be processed, when the message itself says so (it does
    /// not decode, or has a version this build does not know). `None` for a
    /// well-formed message: it reached the dead-letter queue because it was
    /// received too often without being stored (e.g. an unknown election).
    pub poison: Option<PoisonReason>,
    /// The first characters of its body, for a person to recognise it.
    pub head: String,
}

impl DeadLetter {
    /// Most characters of a body kept in [`DeadLetter::head`].
    pub const HEAD_CHARS: usize = 80;

    /// The first [`DeadLetter::HEAD_CHARS`] characters of `body`, control
    /// characters shown as `?` so the head prints on one line.
    pub fn head_of(body: &str) -> String {
        body.chars()
            .take(Self::HEAD_CHARS)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }

    /// Whether the message names an election (it decodes into votes).
    pub fn is_attributed(&self) -> bool {
        !self.votes_per_election.is_empty()
    }
}

/// What the dead-letter queue holds for reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterSummary {
    /// Messages in the dead-letter queue (the queue's own count).
    pub messages: u64,
    /// Votes held per election, from the messages that decode.
    pub votes_per_election: Vec<(ElectionId, u64)>,
    /// Messages that cannot be attributed to an election: they do not
    /// decode, or the look at the queue could not see them (another reader
    /// held them at the time). Any of them may hold any election's votes.
    pub unattributed_messages: u64,
}

impl DeadLetterSummary {
    /// Sums what one look saw, against the queue's own count taken before
    /// it: messages counted but not seen are unattributed.
    pub fn from_look(messages: u64, seen: &[DeadLetter]) -> Self {
        let mut per: std::collections::BTreeMap<ElectionId, u64> = std::collections::BTreeMap::new();
        let mut undecoded = 0u64;
        for letter in seen {
            if !letter.is_attributed() {
                undecoded += 1;
            }
            for (election, votes) in &letter.votes_per_election {
                *per.entry(*election).or_default() += votes;
            }
        }
        let unseen = messages.saturating_sub(seen.len() as u64);
        Self {
            messages: messages.max(seen.len() as u64),
            votes_per_election: per.into_iter().collect(),
            unattributed_messages: undecoded + unseen,
        }
    }

    /// Dead-lettered votes of one election.
    pub fn votes_of(&self, election: ElectionId) -> u64 {
        self.votes_per_election
            .iter()
            .filter(|(e, _)| *e == election)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Inspects the queue and its dead-letter queue.
pub trait QueueInspector: Send + Sync + 'static {
    /// # Errors
    /// [`QueueError::Unavailable`].
    fn stats(&self) -> impl Future<Output = Result<QueueStats, QueueError>> + Send;

    /// Every message of the dead-letter queue the adapter can see now, each
    /// decoded as far as it goes. Adapters MUST look at the messages without
    /// consuming them, and MUST return undecodable messages too.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    fn peek_dead_letters(&self) -> impl Future<Output = Result<Vec<DeadLetter>, QueueError>> + Send;

    /// The dead-letter queue for reconciliation: the queue's count first,
    /// then a look at the messages, so a message the look misses is counted
    /// as unattributed rather than not at all.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    fn dead_letter_summary(&self) -> impl Future<Output = Result<DeadLetterSummary, QueueError>> + Send {
        async move {
            let stats = self.stats().await?;
            self.summarize_dead_letters(&stats).await
        }
    }

    /// As [`QueueInspector::dead_letter_summary`], with the counts `stats`
    /// just read by the caller (one call to the queue fewer).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`].
    fn summarize_dead_letters(
        &self,
        stats: &QueueStats,
    ) -> impl Future<Output = Result<DeadLetterSummary, QueueError>> + Send {
        let messages = stats.dead_letter_messages;
        async move {
            if messages == 0 {
                return Ok(DeadLetterSummary::default());
            }
            let seen = self.peek_dead_letters().await?;
            Ok(DeadLetterSummary::from_look(messages, &seen))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(votes: &[(ElectionId, u64)]) -> DeadLetter {
        DeadLetter {
            message_id: "m".into(),
            receive_count: 5,
            sent_at: None,
            votes_per_election: votes.to_vec(),
            poison: votes
                .is_empty()
                .then(|| PoisonReason::Undecodable("not json".into())),
            head: DeadLetter::head_of("{"),
        }
    }

    #[test]
    fn undecodable_and_unseen_messages_are_unattributed() {
        let (a, b) = (ElectionId::generate(), ElectionId::generate());
        let seen = [letter(&[(a, 3)]), letter(&[(a, 1), (b, 2)]), letter(&[])];
        let s = DeadLetterSummary::from_look(5, &seen);
        assert_eq!((s.messages, s.unattributed_messages), (5, 3));
        assert_eq!((s.votes_of(a), s.votes_of(b)), (4, 2));
        assert_eq!(s.votes_of(ElectionId::generate()), 0);
        // A message that arrived after the count was taken is still seen.
        let s = DeadLetterSummary::from_look(1, &seen);
        assert_eq!((s.messages, s.unattributed_messages), (3, 1));
    }

    #[test]
    fn heads_are_short_and_on_one_line() {
        let head = DeadLetter::head_of(&format!("a\nb{}", "x".repeat(500)));
        assert_eq!(head.chars().count(), DeadLetter::HEAD_CHARS);
        assert!(head.starts_with("a?b"));
    }
}
