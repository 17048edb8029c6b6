//! The clock guard: a vote's `acceptedAt` comes from this host's clock and
//! decides whether the vote came before the close (ARCHITECTURE.md, invariant 5),
//! so a host whose clock has drifted must stop stamping votes. Every few
//! seconds the guard reads a reference clock (the Redis server's `TIME`)
//! and compares it with the host's [`Clock`]; beyond the allowed skew it
//! marks the host untrusted: votes are answered 503 and readiness fails, so
//! a load balancer takes the host out until its clock is right again.
//!
//! The comparison allows for the round trip: the reference was read some
//! time between the two local readings around the call, so only the part
//! of the difference that the round trip cannot explain counts as skew.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use livevote_ports::{Clock, ReferenceClock, ReferenceClockError};

#[derive(Debug)]
pub struct ClockGuard {
    /// The most skew tolerated; zero turns the guard off.
    max_skew: Duration,
    trusted: AtomicBool,
    /// Last measured offset of this host from the reference, ms (positive: ahead).
    offset_ms: AtomicI64,
}

impl ClockGuard {
    pub fn new(max_skew: Duration) -> Self {
        Self {
            max_skew,
            trusted: AtomicBool::new(true),
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Whether votes may be stamped with this host's clock.
    pub fn trusted(&self) -> bool {
        self.trusted.load(Ordering::Relaxed)
    }

    /// The last measured offset from the reference, ms (positive: this host is ahead).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Reads the reference once and updates the verdict. An unreadable
    /// reference leaves the last verdict as it was (Redis down already
    /// refuses votes on its own).
    ///
    /// # Errors
    /// The reference's error.
    pub async fn check<R: ReferenceClock, C: Clock>(
        &self,
        reference: &R,
        clock: &C,
    ) -> Result<bool, ReferenceClockError> {
        if self.max_skew.is_zero() {
            return Ok(true);
        }
        let before = clock.now();
        let remote = reference.reference_now().await?;
        let after = clock.now();
        let half_trip = (after - before) / 2;
        let offset = (before + half_trip) - remote;
        let unexplained = (offset.abs() - half_trip).max(chrono::Duration::zero());
        let trusted = unexplained.to_std().unwrap_or(Duration::MAX) <= self.max_skew;
        self.offset_ms.store(offset.num_milliseconds(), Ordering::Relaxed);
        if trusted != self.trusted.swap(trusted, Ordering::Relaxed) {
            if trusted {
                tracing::info!(
                    offset_ms = offset.num_milliseconds(),
                    "clock back within the allowed skew; accepting votes"
                );
            } else {
                tracing::error!(
                    offset_ms = offset.num_milliseconds(),
                    max_skew_ms = self.max_skew.as_millis() as u64,
                    "this host's clock is off the reference (Redis TIME); refusing votes until it is right"
                );
            }
        }
        Ok(trusted)
    }

    /// Checks every `every` until the task is aborted.
    pub fn spawn<R: ReferenceClock, C: Clock>(
        self: &Arc<Self>,
        reference: R,
        clock: C,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let guard = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = guard.check(&reference, &clock).await {
                    tracing::warn!(error = %e, "clock check skipped");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Delta;
    use livevote_hosting::{OffsetClock, SystemClock};
    use livevote_testkit::ManualClock;

    /// A reference that answers with the system clock plus an offset, after a delay.
    struct Reference {
        offset: Delta,
        delay: Duration,
    }

    impl ReferenceClock for Reference {
        async fn reference_now(&self) -> Result<livevote_domain::Timestamp, ReferenceClockError> {
            tokio::time::sleep(self.delay).await;
            Ok(SystemClock.now() + self.offset)
        }
    }

    struct Down;

    impl ReferenceClock for Down {
        async fn reference_now(&self) -> Result<livevote_domain::Timestamp, ReferenceClockError> {
            Err(ReferenceClockError("connection refused".into()))
        }
    }

    const QUICK: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_clock_minutes_off_is_untrusted_and_trusted_again_once_right() {
        let guard = ClockGuard::new(Duration::from_secs(1));
        let right = Reference {
            offset: Delta::zero(),
            delay: QUICK,
        };
        assert!(guard.check(&right, &SystemClock).await.unwrap());
        for skew in [Delta::minutes(5), Delta::minutes(-5)] {
            assert!(
                !guard.check(&right, &OffsetClock::new(skew)).await.unwrap(),
                "{skew}"
            );
            assert!(!guard.trusted());
            let ms = guard.offset_ms();
            assert!((ms - skew.num_milliseconds()).abs() < 500, "{ms} for {skew}");
            assert!(guard.check(&right, &SystemClock).await.unwrap());
            assert!(guard.trusted());
        }
    }

    #[tokio::test]
    async fn a_slow_round_trip_is_not_mistaken_for_skew() {
        // 1.5 s spent in the call, the clocks agree: the trip explains the difference.
        let guard = ClockGuard::new(Duration::from_secs(1));
        let slow = Reference {
            offset: Delta::zero(),
            delay: Duration::from_millis(1500),
        };
        assert!(guard.check(&slow, &SystemClock).await.unwrap());
        // 2 s of real skew over a quick trip is more than the 1 s allowed.
        let skewed = Reference {
            offset: Delta::seconds(2),
            delay: QUICK,
        };
        assert!(!guard.check(&skewed, &SystemClock).await.unwrap());
    }

    #[tokio::test]
    async fn an_unreadable_reference_keeps_the_verdict_and_zero_turns_the_guard_off() {
        let guard = ClockGuard::new(Duration::from_secs(1));
        let stuck = ManualClock::new(SystemClock.now() - Delta::hours(1));
        let right = Reference {
            offset: Delta::zero(),
            delay: QUICK,
        };
        assert!(!guard.check(&right, &stuck).await.unwrap());
        assert!(guard.check(&Down, &SystemClock).await.is_err());
        assert!(!guard.trusted(), "an unreadable reference changes nothing");
        let off = ClockGuard::new(Duration::ZERO);
        assert!(off.check(&Down, &stuck).await.unwrap());
        assert!(off.trusted());
    }
}
