//! Ports: what the livevote services need from the world, in domain words.
//!
//! Every trait here is implemented by one adapter crate per technology
//! (`adapters/<tech>`) and by the in-memory fakes (`adapters/memory`). No
//! adapter type appears in a signature. Async methods return `impl Future +
//! Send`, so services stay generic (no boxing on the vote path) and can be
//! spawned on a multi-threaded runtime.
//!
//! Errors: each port has one error enum. `Unavailable` means the dependency
//! could not be reached or timed out: the caller may retry later and nothing
//! was changed that the caller relies on. `Unknown` is anything else.

pub mod admin;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod dedup;
pub mod human;
pub mod metrics;
pub mod queue;
pub mod store;

pub use admin::{AdminAction, AdminError, AuditEntry, ElectionAdmin, Page, PageRequest};
pub use auth::{Permission, Principal, TokenError, TokenVerifier};
pub use catalog::{
    CatalogError, ChangeKind, ElectionAnnouncer, ElectionCatalog, ElectionChange, ElectionChangeFeed,
    ElectionChanges, ElectionCopies,
};
pub use clock::{Clock, ReferenceClock, ReferenceClockError};
pub use dedup::{
    Claim, ClaimOutcome, ClaimState, ConfirmOutcome, DedupError, ExistingClaim, LiveTallies, VoteDedup,
};
pub use human::{HumanCheck, HumanCheckError, HumanVerdict};
pub use metrics::{MetricEvent, Metrics, RejectReason};
pub use queue::{
    AckReport, DeadLetter, DeadLetterSummary, Delivery, DeliveryContent, DeliveryTag, PoisonReason,
    QueueError, QueueInspector, QueueStats, VoteQueue, VoteSource,
};
pub use store::{
    HourlyCount, PersistOutcome, PersistReport, StoreCounts, StoreError, StoredVote, VoteActivity, VoteStore,
};
