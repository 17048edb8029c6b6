//! Reconciliation: did every accepted vote reach the vote store?
//!
//! ARCHITECTURE.md, invariant 3. Per election: accepted `A` (answered 202), persisted
//! `P`, duplicates dropped by the one-vote-per-voter constraint `D`,
//! dead-lettered `L`, still in the queue `Q`. Under every vote policy these
//! count votes, not viewers: a `multi` viewer's five votes are five in each;
//! under `changeable`, `A` counts every accepted change (the live tallies,
//! which hold each viewer's current vote, plus the changes replaced since)
//! and `P` every stored change. Once `Q = 0`, `A <= P + D + L`
//! must hold. A shortfall is votes lost; a surplus is votes that reached the
//! queue but whose 202 never reached the viewer (a crash between the queue's
//! acknowledgement and the confirm), which is shown apart and is not a loss.
//!
//! Dead letters that cannot be attributed to an election (they do not decode)
//! may hold any election's votes: while one is in the dead-letter queue no
//! election's results are final.

use std::fmt;

use crate::ElectionStatus;

/// The five counters of one election.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconciliationCounts {
    /// `A`: votes answered 202.
    pub accepted: u64,
    /// `P`: votes in the vote store.
    pub persisted: u64,
    /// `D`: votes the store dropped because their voter already had one.
    pub duplicates: u64,
    /// `L`: votes held in the dead-letter queue.
    pub dead_lettered: u64,
    /// `Q`: messages still in the queue (visible or in flight).
    pub in_flight: u64,
    /// Messages in the dead-letter queue that name no election (or could not
    /// be looked at): not in `L`, and they block every election's final.
    pub unattributed_dead_letters: u64,
}

/// What the counters say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Messages are still in the queue: no verdict yet.
    Draining { in_flight: u64 },
    /// `A = P + D + L`.
    Balanced,
    /// `A > P + D + L`: this many accepted votes are missing. Raises an alarm.
    Lost(u64),
    /// `A < P + D + L`: this many votes got in without their 202 being counted.
    Surplus(u64),
}

impl Verdict {
    /// The stable lower-case name used in APIs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Draining { .. } => "pending",
            Verdict::Balanced => "balanced",
            Verdict::Lost(_) => "lost",
            Verdict::Surplus(_) => "surplus",
        }
    }

    /// Whether this verdict means accepted votes are missing.
    pub fn is_loss(&self) -> bool {
        matches!(self, Verdict::Lost(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Draining { in_flight } => write!(f, "pending ({in_flight} messages in the queue)"),
            Verdict::Balanced => f.write_str("balanced"),
            Verdict::Lost(n) => write!(f, "lost {n}"),
            Verdict::Surplus(n) => write!(f, "surplus {n}"),
        }
    }
}

impl ReconciliationCounts {
    /// `P + D + L`: every vote the pipeline has an outcome for.
    pub fn accounted(&self) -> u64 {
        self.persisted
            .saturating_add(self.duplicates)
            .saturating_add(self.dead_lettered)
    }

    /// The verdict of invariant 3.
    pub fn verdict(&self) -> Verdict {
        if self.in_flight > 0 {
            return Verdict::Draining {
                in_flight: self.in_flight,
            };
        }
        let accounted = self.accounted();
        match self.accepted.cmp(&accounted) {
            std::cmp::Ordering::Equal => Verdict::Balanced,
            std::cmp::Ordering::Greater => Verdict::Lost(self.accepted - accounted),
            std::cmp::Ordering::Less => Verdict::Surplus(accounted - self.accepted),
        }
    }

    /// Whether persisted counts may be published as final: the election is
    /// closed, the queue is drained, nothing is lost, and the dead-letter
    /// queue holds none of its votes and nothing unattributed (a
    /// dead-lettered vote is accounted for but not yet counted). A surplus
    /// does not block: those votes are in the store and count.
    pub fn allows_final(&self, status: ElectionStatus) -> bool {
        status == ElectionStatus::Closed
            && self.dead_lettered == 0
            && self.unattributed_dead_letters == 0
            && matches!(self.verdict(), Verdict::Balanced | Verdict::Surplus(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(a: u64, p: u64, d: u64, l: u64, q: u64) -> ReconciliationCounts {
        ReconciliationCounts {
            accepted: a,
            persisted: p,
            duplicates: d,
            dead_lettered: l,
            in_flight: q,
            unattributed_dead_letters: 0,
        }
    }

    const CLOSED: ElectionStatus = ElectionStatus::Closed;

    #[test]
    fn verdicts() {
        assert_eq!(counts(10, 10, 0, 0, 0).verdict(), Verdict::Balanced);
        assert_eq!(counts(10, 8, 1, 1, 0).verdict(), Verdict::Balanced);
        assert_eq!(counts(10, 7, 1, 1, 0).verdict(), Verdict::Lost(1));
        assert_eq!(counts(10, 11, 0, 0, 0).verdict(), Verdict::Surplus(1));
        assert_eq!(
            counts(10, 0, 0, 0, 3).verdict(),
            Verdict::Draining { in_flight: 3 }
        );
        assert_eq!(counts(0, 0, 0, 0, 0).verdict(), Verdict::Balanced);
        assert_eq!(Verdict::Lost(3).to_string(), "lost 3");
    }

    #[test]
    fn final_needs_a_closed_election_a_drained_queue_no_loss_and_an_empty_dlq() {
        assert!(counts(10, 10, 0, 0, 0).allows_final(CLOSED));
        assert!(counts(10, 11, 0, 0, 0).allows_final(CLOSED));
        assert!(
            !counts(10, 9, 0, 1, 0).allows_final(CLOSED),
            "a dead-lettered vote is not counted yet"
        );
        assert!(!counts(10, 9, 0, 0, 0).allows_final(CLOSED));
        assert!(!counts(10, 10, 0, 0, 1).allows_final(CLOSED));
        let unattributed = ReconciliationCounts {
            unattributed_dead_letters: 1,
            ..counts(10, 10, 0, 0, 0)
        };
        assert_eq!(unattributed.verdict(), Verdict::Balanced);
        assert!(
            !unattributed.allows_final(CLOSED),
            "an undecodable dead letter may hold this election's votes"
        );
        for open in [
            ElectionStatus::Draft,
            ElectionStatus::Scheduled,
            ElectionStatus::Active,
            ElectionStatus::Cancelled,
        ] {
            assert!(!counts(10, 10, 0, 0, 0).allows_final(open), "{open}");
        }
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let c = counts(u64::MAX, u64::MAX, 1, 1, 0);
        assert_eq!(c.accounted(), u64::MAX);
        assert_eq!(c.verdict(), Verdict::Balanced);
    }

    proptest! {
        #[test]
        fn verdict_matches_invariant_3(a in 0u64..1_000_000, p in 0u64..1_000_000, d in 0u64..1000, l in 0u64..1000, q in 0u64..3) {
            let c = counts(a, p, d, l, q);
            let v = c.verdict();
            if q > 0 {
                prop_assert_eq!(v, Verdict::Draining { in_flight: q });
                prop_assert!(!c.allows_final(CLOSED));
            } else {
                match v {
                    Verdict::Balanced => prop_assert_eq!(a, p + d + l),
                    Verdict::Lost(n) => { prop_assert!(n > 0); prop_assert_eq!(a, p + d + l + n); }
                    Verdict::Surplus(n) => { prop_assert!(n > 0); prop_assert_eq!(a + n, p + d + l); }
                    Verdict::Draining { .. } => prop_assert!(false, "pending with an empty queue"),
                }
                prop_assert_eq!(v.is_loss(), a > p + d + l);
            }
        }
    }
}
