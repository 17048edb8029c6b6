//! Time, as a port: services never read the system clock themselves, so tests
//! (and the clock-skew fault suite) can set the time.

use livevote_domain::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync + 'static {
    /// The current instant in UTC. Adapters MUST NOT block.
    fn now(&self) -> Timestamp;
}
