//! The production clocks: the host's, and the host's with a fixed offset
//! (fault builds only set a non-zero one).

use chrono::{Duration, SubsecRound, Utc};
use livevote_domain::Timestamp;
use livevote_ports::Clock;

/// The host's clock, at microsecond precision: the precision PostgreSQL
/// keeps, so an instant reads back from every store exactly as it was taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now().trunc_subsecs(6)
    }
}

/// The host's clock read with a fixed offset: how the fault suite makes one
/// ingestion host's clock run minutes ahead or behind the others.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: Duration,
}

impl OffsetClock {
    pub fn new(offset: Duration) -> Self {
        Self { offset }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        SystemClock.now() + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_keeps_microseconds() {
        let t = SystemClock.now();
        assert_eq!(t.timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn offset_clock_runs_ahead_or_behind_the_system_clock_by_its_offset() {
        let ahead = OffsetClock::new(Duration::minutes(5)).now() - SystemClock.now();
        assert!(
            (Duration::seconds(299)..=Duration::seconds(301)).contains(&ahead),
            "{ahead}"
        );
        let behind = SystemClock.now() - OffsetClock::new(Duration::minutes(-5)).now();
        assert!(
            (Duration::seconds(299)..=Duration::seconds(301)).contains(&behind),
            "{behind}"
        );
    }
}
