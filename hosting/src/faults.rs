//! Crash points for the fault suite (`scripts/faults.sh`), shared by the
//! services. A service's own `failpoints` feature turns this crate's on;
//! without it [`crash_point!`](crate::crash_point) expands to nothing and no
//! fault can be armed. Points are armed through the `FAILPOINTS` variable,
//! in the `fail` crate's syntax, e.g. `ingestion-after-claim=200*off->return`:
//! let 200 votes through, kill the process at the 201st.

/// Kills the process at once (no shutdown, no flush) when the named point is
/// armed; expands to nothing unless the calling crate has a `failpoints`
/// feature turned on.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::faults::crash_if_armed($name);
    };
}

#[cfg(feature = "failpoints")]
pub fn crash_if_armed(name: &str) {
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
