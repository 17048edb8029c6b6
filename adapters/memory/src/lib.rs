//! In-process adapters for every livevote port.
//!
//! This is a production crate only because the embedded mode
//! (`livevote demo --embedded`) runs the three services on it; otherwise it
//! serves unit and service tests (test-only support lives in
//! `livevote-testkit`). The adapters
//! behave like the real services where the invariants depend on it: the
//! queue has visibility timeouts, redelivery, a maximum receive count and a
//! dead-letter queue; the dedup store has pending and accepted claims that
//! expire; the database enforces one vote per (election, voter). Each can be
//! switched "down" to exercise failure paths. Nothing here survives the
//! process: never use these where votes must be kept.
//!
//! Every adapter is a cheap `Clone` handle over shared state, so one instance
//! can serve several services, like a connection pool would.

mod auth;
mod bus;
mod database;
mod dedup;
mod human;
mod metrics;
mod queue;

pub use auth::StaticTokens;
pub use bus::{MemoryBus, MemorySubscription};
pub use database::MemoryDatabase;
pub use dedup::{DedupConfig, MemoryDedup};
pub use human::FakeHumanCheck;
pub use metrics::{NoMetrics, RecordingMetrics};
pub use queue::{MemoryQueue, QueueConfig};
