//! Fault injection for the fault suite (`scripts/faults.sh`), compiled in
//! only with the `failpoints` feature (see `livevote_hosting::faults`).
//! Crash points of ingestion:
//! - `ingestion-after-claim`: the claim is taken, nothing is queued yet;
//! - `ingestion-after-publish`: the queue acknowledged, the claim is not confirmed;
//! - `ingestion-after-confirm`: confirmed, the 202 not yet written.

pub(crate) use livevote_hosting::crash_point;

/// The test clock offset of a fault build (`LIVEVOTE_FAULT_CLOCK_OFFSET_SECS`,
/// the skew of this host's clock); zero in every other build.
pub fn clock_offset() -> chrono::Duration {
    #[cfg(feature = "failpoints")]
    if let Some(secs) = std::env::var("LIVEVOTE_FAULT_CLOCK_OFFSET_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        return chrono::Duration::seconds(secs);
    }
    chrono::Duration::zero()
}
