//! Fault injection for the fault suite (`scripts/faults.sh`), compiled in
//! only with the `failpoints` feature; without it [`crash_point!`] expands
//! to nothing and no fault can be armed.
//!
//! Armed through the `FAILPOINTS` variable (the `fail` crate's syntax), e.g.
//! `FAILPOINTS='ingestion-after-claim=200*off->return'` lets 200 votes
//! through that point and kills the process at the 201st. Points:
//! - `ingestion-after-claim`: the claim is taken, nothing is queued yet;
//! - `ingestion-after-publish`: the queue acknowledged, the claim is not confirmed;
//! - `ingestion-after-confirm`: confirmed, the 202 not yet written.

/// Kills the process at once (no shutdown, no flush) when the point is armed.
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::faults::crash_if_armed($name);
    };
}
pub(crate) use crash_point;

#[cfg(feature = "failpoints")]
pub(crate) fn crash_if_armed(name: &str) {
    if fail::eval(name, |_| ()).is_some() {
        eprintln!("failpoint {name} fired: aborting the process");
        std::process::abort();
    }
}

/// Arms the points named in `FAILPOINTS` for the life of the returned guard.
#[cfg(feature = "failpoints")]
pub fn arm_from_env() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

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
