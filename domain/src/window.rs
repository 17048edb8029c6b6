//! The voting window: the half-open interval `[start, end)` in which votes count.

use std::fmt;

use crate::Timestamp;

/// Why a window is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowError {
    /// The end is at or before the start.
    EndNotAfterStart { start: Timestamp, end: Timestamp },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::EndNotAfterStart { start, end } => write!(
                f,
                "voting window end {} must be after its start {}",
                end.to_rfc3339(),
                start.to_rfc3339()
            ),
        }
    }
}

impl std::error::Error for WindowError {}

/// `[start, end)` with `start < end`. A vote at `start` counts; a vote at `end`
/// does not. After an early close, `end` is the close watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VotingWindow {
    start: Timestamp,
    end: Timestamp,
}

impl VotingWindow {
    /// # Errors
    /// [`WindowError::EndNotAfterStart`] unless `start < end`.
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, WindowError> {
        if start < end {
            Ok(Self { start, end })
        } else {
            Err(WindowError::EndNotAfterStart { start, end })
        }
    }

    pub fn start(&self) -> Timestamp {
        self.start
    }

    pub fn end(&self) -> Timestamp {
        self.end
    }

    /// Whether `t` falls inside `[start, end)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    pub fn has_started(&self, t: Timestamp) -> bool {
        t >= self.start
    }

    pub fn has_ended(&self, t: Timestamp) -> bool {
        t >= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use proptest::prelude::*;

    fn at(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn end_must_follow_start() {
        assert!(VotingWindow::new(at(0), at(1)).is_ok());
        assert!(VotingWindow::new(at(1), at(1)).is_err());
        assert!(VotingWindow::new(at(2), at(1)).is_err());
    }

    #[test]
    fn window_is_half_open() {
        let w = VotingWindow::new(at(0), at(10)).unwrap();
        assert!(!w.contains(at(0) - Duration::microseconds(1)));
        assert!(w.contains(at(0)));
        assert!(w.contains(at(10) - Duration::microseconds(1)));
        assert!(!w.contains(at(10)));
    }

    proptest! {
        #[test]
        fn contains_agrees_with_started_and_not_ended(s in -1000i64..1000, len in 1i64..1000, t in -3000i64..3000) {
            let w = VotingWindow::new(at(s), at(s + len)).unwrap();
            prop_assert_eq!(w.contains(at(t)), w.has_started(at(t)) && !w.has_ended(at(t)));
            prop_assert!(w.start() < w.end());
        }
    }
}
