//! Time, as a port: services never read the system clock themselves, so tests
//! (and the clock-skew fault suite) can set the time.

use livevote_domain::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync + 'static {
    /// The current instant in UTC. Adapters MUST NOT block.
    fn now(&self) -> Timestamp;
}

/// The shared clock a host's own [`Clock`] is checked against (ingestion
/// uses the Redis server's): a host whose clock has drifted must not stamp
/// votes, as the stamp decides whether a vote came before the close.
pub trait ReferenceClock: Send + Sync + 'static {
    /// The reference's current instant.
    ///
    /// # Errors
    /// [`ReferenceClockError`] when the reference cannot be read.
    fn reference_now(&self) -> impl Future<Output = Result<Timestamp, ReferenceClockError>> + Send;
}

/// The reference clock could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reference clock unavailable: {0}")]
pub struct ReferenceClockError(pub String);
