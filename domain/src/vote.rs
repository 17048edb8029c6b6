//! Whether a vote counts, and the records a counted vote travels as.

use std::fmt;

use crate::Timestamp;
use crate::election::{Election, ElectionStatus};
use crate::ids::{CandidateId, CorrelationId, ElectionId, VoteId, VoterId};
use crate::policy::{VotePolicy, VoteSlot};

/// A vote the rules admitted: it names a candidate of an election that was
/// open at `accepted_at`. Not yet a vote anyone was told is accepted: that
/// takes the queue's acknowledgement (the 202); until then it is a ballot in
/// hand, and it travels as one through the queue into the store. `accepted_at`, not processing time, decides whether a
/// vote counts (ARCHITECTURE.md, invariant 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot {
    pub vote_id: VoteId,
    pub election_id: ElectionId,
    pub candidate_id: CandidateId,
    pub voter_id: VoterId,
    pub accepted_at: Timestamp,
    /// Which of the voter's votes this is under the election's policy:
    /// [`VoteSlot::FIRST`] until the dedup store gives the slot (always, in
    /// a `single` election).
    pub slot: VoteSlot,
}

/// An accepted vote with the correlation id of the request that cast it: the
/// unit that goes through the queue into the vote store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRecord {
    pub vote: Ballot,
    pub correlation_id: CorrelationId,
}

/// Why the rules refuse a vote. "No such election" is the caller's to say: it
/// never reaches the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The election is not taking votes (DRAFT or CANCELLED).
    NotActive { status: ElectionStatus },
    /// Voting has not started yet.
    NotStarted { starts_at: Timestamp },
    /// Voting has ended (closed on time or early).
    Ended { ended_at: Timestamp },
    /// The candidate is not one of this election's.
    UnknownCandidate { candidate_id: CandidateId },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotActive { status } => write!(f, "election is {status}, not taking votes"),
            Rejection::NotStarted { starts_at } => {
                write!(f, "voting opens at {}", starts_at.to_rfc3339())
            }
            Rejection::Ended { ended_at } => write!(f, "voting closed at {}", ended_at.to_rfc3339()),
            Rejection::UnknownCandidate { candidate_id } => {
                write!(f, "candidate {candidate_id} is not part of this election")
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// Decides whether `voter` may vote for `candidate` in `election` at `now`.
///
/// A vote counts iff the effective status is ACTIVE and `start <= now < end`.
/// Status is judged before the candidate, so a closed election answers
/// "closed" whatever the body names. The caller mints `vote_id` (a fresh
/// time-ordered id per attempt): the rules read no clock.
///
/// # Errors
/// The [`Rejection`] that applies.
pub fn accept(
    election: &Election,
    vote_id: VoteId,
    voter: VoterId,
    candidate: CandidateId,
    now: Timestamp,
) -> Result<Ballot, Rejection> {
    let window = election.window();
    match election.effective_status(now) {
        ElectionStatus::Active => {}
        ElectionStatus::Closed => {
            return Err(Rejection::Ended {
                ended_at: window.end(),
            });
        }
        ElectionStatus::Scheduled => {
            return Err(Rejection::NotStarted {
                starts_at: window.start(),
            });
        }
        status @ (ElectionStatus::Draft | ElectionStatus::Cancelled) => {
            return Err(Rejection::NotActive { status });
        }
    }
    // An ACTIVE election whose start is still ahead of this clock (a skewed
    // host) is not open here yet.
    if !window.has_started(now) {
        return Err(Rejection::NotStarted {
            starts_at: window.start(),
        });
    }
    if election.candidate(candidate).is_none() {
        return Err(Rejection::UnknownCandidate {
            candidate_id: candidate,
        });
    }
    Ok(Ballot {
        vote_id,
        election_id: election.id(),
        candidate_id: candidate,
        voter_id: voter,
        accepted_at: now,
        slot: VoteSlot::FIRST,
    })
}

/// A queued vote whose election or candidate the catalog does not know, or
/// whose slot its election's policy does not give: it can never be stored
/// and goes to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokenReference {
    UnknownElection {
        election_id: ElectionId,
    },
    UnknownCandidate {
        candidate_id: CandidateId,
        election_id: ElectionId,
    },
    SlotNotAdmitted {
        slot: VoteSlot,
        policy: VotePolicy,
        election_id: ElectionId,
    },
}

impl fmt::Display for BrokenReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenReference::UnknownElection { election_id } => {
                write!(f, "election {election_id} does not exist")
            }
            BrokenReference::UnknownCandidate {
                candidate_id,
                election_id,
            } => write!(
                f,
                "candidate {candidate_id} is not part of election {election_id}"
            ),
            BrokenReference::SlotNotAdmitted {
                slot,
                policy,
                election_id,
            } => write!(
                f,
                "slot {}{} is not one the policy {policy} of election {election_id} gives",
                slot.number,
                slot.per_candidate.map(|k| format!("/{k}")).unwrap_or_default()
            ),
        }
    }
}

impl std::error::Error for BrokenReference {}

/// Whether `vote`'s references hold: `election` is the one it names, as the
/// catalog has it (`None`: unknown), and lists the vote's candidate.
///
/// # Errors
/// The [`BrokenReference`].
pub fn check_references(election: Option<&Election>, vote: &Ballot) -> Result<(), BrokenReference> {
    let Some(election) = election.filter(|e| e.id() == vote.election_id) else {
        return Err(BrokenReference::UnknownElection {
            election_id: vote.election_id,
        });
    };
    if election.candidate(vote.candidate_id).is_none() {
        return Err(BrokenReference::UnknownCandidate {
            candidate_id: vote.candidate_id,
            election_id: vote.election_id,
        });
    }
    if !election.policy().admits(vote.slot) {
        return Err(BrokenReference::SlotNotAdmitted {
            slot: vote.slot,
            policy: election.policy(),
            election_id: vote.election_id,
        });
    }
    Ok(())
}

/// What an arriving vote is, given the vote the store already holds for its
/// voter in its election (ARCHITECTURE.md, invariants 1 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Nothing held: this is the voter's vote, to be stored and counted.
    First,
    /// This very vote (same id) is held: a redelivery, counted once already.
    Redelivery,
    /// Another vote of the voter is held: a second vote, dropped and kept for auditors.
    SecondVote { existing: VoteId },
}

/// Classifies `vote` against `held`, the id of the vote stored for the same
/// (election, voter), or of this very vote if it is stored.
pub fn arrival(vote: VoteId, held: Option<VoteId>) -> Arrival {
    match held {
        None => Arrival::First,
        Some(existing) if existing == vote => Arrival::Redelivery,
        Some(existing) => Arrival::SecondVote { existing },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::ElectionParts;
    use crate::election::tests::{at, election};
    use chrono::Duration;
    use proptest::prelude::*;

    fn voter() -> VoterId {
        VoterId::parse("auth0|viewer-1").unwrap()
    }

    #[test]
    fn accepts_a_known_candidate_inside_the_window() {
        let mut e = election(3, 0, 100);
        e.schedule(at(-10)).unwrap();
        let c = e.candidates()[1].id();
        let v = accept(&e, VoteId::generate(), voter(), c, at(0)).unwrap();
        assert_eq!(v.election_id, e.id());
        assert_eq!(v.candidate_id, c);
        assert_eq!(v.voter_id, voter());
        assert_eq!(v.accepted_at, at(0));
        let id = VoteId::generate();
        assert_eq!(
            accept(&e, id, voter(), c, at(0)).unwrap().vote_id,
            id,
            "the caller's id"
        );
    }

    #[test]
    fn arrivals_are_first_redelivery_or_second_vote() {
        let (a, b) = (VoteId::generate(), VoteId::generate());
        assert_eq!(arrival(a, None), Arrival::First);
        assert_eq!(arrival(a, Some(a)), Arrival::Redelivery);
        assert_eq!(arrival(a, Some(b)), Arrival::SecondVote { existing: b });
    }

    #[test]
    fn references_hold_only_for_a_known_election_and_one_of_its_candidates() {
        let mut e = election(2, 0, 100);
        e.schedule(at(-10)).unwrap();
        let c = e.candidates()[0].id();
        let v = accept(&e, VoteId::generate(), voter(), c, at(0)).unwrap();
        assert_eq!(check_references(Some(&e), &v), Ok(()));
        assert_eq!(
            check_references(None, &v),
            Err(BrokenReference::UnknownElection { election_id: e.id() })
        );
        let stranger = Ballot {
            candidate_id: CandidateId::generate(),
            ..v.clone()
        };
        let err = check_references(Some(&e), &stranger).unwrap_err();
        assert!(err.to_string().contains("is not part of election"), "{err}");
        let other = election(2, 0, 100);
        assert!(matches!(
            check_references(Some(&other), &v),
            Err(BrokenReference::UnknownElection { .. })
        ));
    }

    #[test]
    fn typed_rejections() {
        let mut e = election(2, 10, 20);
        let c = e.candidates()[0].id();
        assert_eq!(
            accept(&e, VoteId::generate(), voter(), c, at(15)),
            Err(Rejection::NotActive {
                status: ElectionStatus::Draft
            })
        );
        e.schedule(at(0)).unwrap();
        assert_eq!(
            accept(&e, VoteId::generate(), voter(), c, at(5)),
            Err(Rejection::NotStarted { starts_at: at(10) })
        );
        assert_eq!(
            accept(&e, VoteId::generate(), voter(), c, at(20)),
            Err(Rejection::Ended { ended_at: at(20) })
        );
        let stranger = CandidateId::generate();
        assert_eq!(
            accept(&e, VoteId::generate(), voter(), stranger, at(15)),
            Err(Rejection::UnknownCandidate {
                candidate_id: stranger
            })
        );
        // A closed election says closed even for an unknown candidate.
        assert_eq!(
            accept(&e, VoteId::generate(), voter(), stranger, at(25)),
            Err(Rejection::Ended { ended_at: at(20) })
        );
        e.cancel(at(12), 0, None).unwrap();
        assert_eq!(
            accept(&e, VoteId::generate(), voter(), c, at(15)),
            Err(Rejection::NotActive {
                status: ElectionStatus::Cancelled
            })
        );
    }

    #[test]
    fn early_close_is_the_watermark() {
        let mut e = election(2, 0, 100);
        e.schedule(at(-1)).unwrap();
        let c = e.candidates()[0].id();
        let close = at(50);
        let just_before = close - Duration::milliseconds(1);
        // Judged at the instant it was accepted: just before the close counts.
        let before_close = e.clone();
        assert!(accept(&before_close, VoteId::generate(), voter(), c, just_before).is_ok());
        e.close(close).unwrap();
        assert!(
            e.window().contains(just_before),
            "a vote accepted before the close stays inside the window: accepted_at decides"
        );
        assert_eq!(
            accept(&e, VoteId::generate(), voter(), c, close),
            Err(Rejection::Ended { ended_at: close })
        );
    }

    #[test]
    fn active_election_ahead_of_a_skewed_clock_is_not_open() {
        let e = election(2, 0, 100);
        let parts = ElectionParts {
            status: ElectionStatus::Active,
            ..e.to_parts()
        };
        let e = crate::Election::restore(parts).unwrap();
        let c = e.candidates()[0].id();
        assert_eq!(
            accept(&e, VoteId::generate(), voter(), c, at(-5)),
            Err(Rejection::NotStarted { starts_at: at(0) })
        );
    }

    proptest! {
        /// A vote is accepted exactly when the effective status is ACTIVE, `t`
        /// is inside the window and the candidate belongs to the election.
        #[test]
        fn accepted_iff_active_in_window_and_known(start in -50i64..50, len in 1i64..100, t in -200i64..200, known in any::<bool>(), open in any::<bool>()) {
            let mut e = election(2, start, start + len);
            if open {
                e.schedule(at(-1000)).unwrap();
            }
            let candidate = if known { e.candidates()[0].id() } else { CandidateId::generate() };
            let result = accept(&e, VoteId::generate(), voter(), candidate, at(t));
            let should = open && e.window().contains(at(t)) && known;
            prop_assert_eq!(result.is_ok(), should);
            if let Ok(v) = result {
                prop_assert_eq!(v.accepted_at, at(t));
            }
        }
    }
}
