//! How many votes a viewer has in an election: the election's vote policy.
//!
//! - `single`: one vote per viewer (the default).
//! - `multi`: up to `max_votes` votes per viewer, optionally at most
//!   `max_per_candidate` of them for one candidate.
//! - `changeable`: one current vote per viewer; a new vote while the lines are
//!   open replaces the previous one.
//!
//! Every ballot carries a [`VoteSlot`]: which of the voter's votes it is. The
//! store keeps a slot unique per voter (and the per-candidate slot unique per
//! voter and candidate), and only admits slots the policy allows
//! ([`VotePolicy::admits`]), so however the fast path fails, the store never
//! holds more votes for a viewer than the policy gives. Under `changeable`
//! the slot number is the change's sequence: the voter's current vote is the
//! one with the highest number, whatever order the votes are stored in.

use std::fmt;

use crate::ids::CandidateId;

/// The most votes a `multi` policy may give one viewer.
pub const MAX_VOTES_LIMIT: u16 = 100;

/// An election's vote policy. Set when the election is created and editable
/// only until voting starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum VotePolicy {
    /// One vote per viewer.
    #[default]
    Single,
    /// Several votes per viewer, within [`MultiLimits`].
    Multi(MultiLimits),
    /// One current vote per viewer, replaced by each new one.
    Changeable,
}

/// The limits of a `multi` policy, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MultiLimits {
    max_votes: u16,
    max_per_candidate: Option<u16>,
}

/// Why a policy is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    /// `maxVotes` outside `1..=100`.
    MaxVotes { got: i64 },
    /// `maxPerCandidate` outside `1..=maxVotes`.
    MaxPerCandidate { got: i64, max_votes: u16 },
    /// `maxVotes` or `maxPerCandidate` given for a policy other than `multi`.
    LimitsNeedMulti,
    /// A policy name that is none of `single`, `multi`, `changeable`.
    Unknown,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::MaxVotes { got } => {
                write!(f, "maxVotes must be between 1 and {MAX_VOTES_LIMIT}, got {got}")
            }
            PolicyError::MaxPerCandidate { got, max_votes } => write!(
                f,
                "maxPerCandidate must be between 1 and maxVotes ({max_votes}), got {got}"
            ),
            PolicyError::LimitsNeedMulti => {
                f.write_str("maxVotes and maxPerCandidate apply only to the multi policy")
            }
            PolicyError::Unknown => f.write_str("policy must be one of single, multi, changeable"),
        }
    }
}

impl std::error::Error for PolicyError {}

impl MultiLimits {
    /// # Errors
    /// [`PolicyError::MaxVotes`] or [`PolicyError::MaxPerCandidate`].
    pub fn new(max_votes: i64, max_per_candidate: Option<i64>) -> Result<Self, PolicyError> {
        let max = u16::try_from(max_votes)
            .ok()
            .filter(|m| (1..=MAX_VOTES_LIMIT).contains(m))
            .ok_or(PolicyError::MaxVotes { got: max_votes })?;
        let per_candidate = match max_per_candidate {
            None => None,
            Some(k) => Some(u16::try_from(k).ok().filter(|k| (1..=max).contains(k)).ok_or(
                PolicyError::MaxPerCandidate {
                    got: k,
                    max_votes: max,
                },
            )?),
        };
        Ok(Self {
            max_votes: max,
            max_per_candidate: per_candidate,
        })
    }

    pub fn max_votes(&self) -> u16 {
        self.max_votes
    }

    pub fn max_per_candidate(&self) -> Option<u16> {
        self.max_per_candidate
    }
}

impl VotePolicy {
    /// The policy named `name` with its limits, as an API or a store row gives them.
    ///
    /// # Errors
    /// [`PolicyError`]: an unknown name, limits out of range, or limits for
    /// a policy other than `multi`.
    pub fn from_parts(
        name: &str,
        max_votes: Option<i64>,
        max_per_candidate: Option<i64>,
    ) -> Result<Self, PolicyError> {
        match name {
            "single" | "changeable" if max_votes.is_some() || max_per_candidate.is_some() => {
                Err(PolicyError::LimitsNeedMulti)
            }
            "single" => Ok(VotePolicy::Single),
            "changeable" => Ok(VotePolicy::Changeable),
            "multi" => Ok(VotePolicy::Multi(MultiLimits::new(
                max_votes.ok_or(PolicyError::MaxVotes { got: 0 })?,
                max_per_candidate,
            )?)),
            _ => Err(PolicyError::Unknown),
        }
    }

    /// The stable lower-case name used in APIs, stores and messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            VotePolicy::Single => "single",
            VotePolicy::Multi(_) => "multi",
            VotePolicy::Changeable => "changeable",
        }
    }

    /// `maxVotes` of a `multi` policy.
    pub fn max_votes(&self) -> Option<u16> {
        match self {
            VotePolicy::Multi(l) => Some(l.max_votes),
            _ => None,
        }
    }

    /// `maxPerCandidate` of a `multi` policy, if it has one.
    pub fn max_per_candidate(&self) -> Option<u16> {
        match self {
            VotePolicy::Multi(l) => l.max_per_candidate,
            _ => None,
        }
    }

    /// Whether a ballot in `slot` may be stored under this policy: the
    /// store's range check. Uniqueness of the slot is the store's other half.
    pub fn admits(&self, slot: VoteSlot) -> bool {
        match self {
            VotePolicy::Single => slot == VoteSlot::FIRST,
            VotePolicy::Changeable => slot.number >= 1 && slot.per_candidate.is_none(),
            VotePolicy::Multi(l) => {
                let number_ok = slot.number >= 1 && slot.number <= u32::from(l.max_votes);
                let per_candidate_ok = match (l.max_per_candidate, slot.per_candidate) {
                    (None, None) => true,
                    (Some(k), Some(n)) => n >= 1 && n <= k,
                    _ => false,
                };
                number_ok && per_candidate_ok
            }
        }
    }

    /// Whether a viewer's later votes replace the earlier ones.
    pub fn replaces(&self) -> bool {
        matches!(self, VotePolicy::Changeable)
    }
}

impl fmt::Display for VotePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VotePolicy::Multi(l) => match l.max_per_candidate {
                Some(k) => write!(f, "multi (up to {}, at most {k} per candidate)", l.max_votes),
                None => write!(f, "multi (up to {})", l.max_votes),
            },
            other => f.write_str(other.as_str()),
        }
    }
}

/// Which of a voter's votes a ballot is. `number` is unique per voter and
/// election (under `changeable`, the change's sequence); `per_candidate` is
/// unique per voter, election and candidate, and is set only under a `multi`
/// policy with `maxPerCandidate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VoteSlot {
    pub number: u32,
    pub per_candidate: Option<u16>,
}

impl VoteSlot {
    /// The only slot of a `single` election, and the first of the others.
    pub const FIRST: VoteSlot = VoteSlot {
        number: 1,
        per_candidate: None,
    };

    /// A `changeable` election's change number `seq`.
    pub fn sequence(seq: u32) -> Self {
        VoteSlot {
            number: seq,
            per_candidate: None,
        }
    }
}

impl Default for VoteSlot {
    fn default() -> Self {
        VoteSlot::FIRST
    }
}

/// A `multi` voter who has used every vote the policy gives (or every vote
/// for one candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteLimitReached {
    /// Votes the viewer holds (or holds for the candidate, with `per_candidate`).
    pub used: u16,
    /// The limit that was reached.
    pub max: u16,
    /// Whether the per-candidate limit was the one reached.
    pub per_candidate: bool,
}

impl fmt::Display for VoteLimitReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.per_candidate {
            write!(f, "{} of {} votes for this candidate used", self.used, self.max)
        } else {
            write!(f, "{} of {} votes used", self.used, self.max)
        }
    }
}

/// The slot the next vote of a `multi` voter for `candidate` takes, given the
/// slots the voter already holds (`held`: each slot with its candidate): the
/// lowest free number in `1..=maxVotes`, and with `maxPerCandidate` the
/// lowest free per-candidate number for that candidate.
///
/// # Errors
/// [`VoteLimitReached`] when no number (or no per-candidate number) is free.
pub fn next_multi_slot(
    limits: MultiLimits,
    held: &[(VoteSlot, CandidateId)],
    candidate: CandidateId,
) -> Result<VoteSlot, VoteLimitReached> {
    let used = u16::try_from(held.len()).unwrap_or(u16::MAX);
    let number = (1..=u32::from(limits.max_votes))
        .find(|n| !held.iter().any(|(s, _)| s.number == *n))
        .ok_or(VoteLimitReached {
            used,
            max: limits.max_votes,
            per_candidate: false,
        })?;
    let per_candidate = match limits.max_per_candidate {
        None => None,
        Some(k) => {
            let mine: Vec<u16> = held
                .iter()
                .filter(|(_, c)| *c == candidate)
                .filter_map(|(s, _)| s.per_candidate)
                .collect();
            let free = (1..=k).find(|n| !mine.contains(n)).ok_or(VoteLimitReached {
                used: u16::try_from(mine.len()).unwrap_or(u16::MAX),
                max: k,
                per_candidate: true,
            })?;
            Some(free)
        }
    };
    Ok(VoteSlot {
        number,
        per_candidate,
    })
}

/// Of a `changeable` voter's stored votes, the index of the current one:
/// the highest sequence. `None` for no votes.
pub fn current_vote<T>(votes: &[(VoteSlot, T)]) -> Option<usize> {
    votes
        .iter()
        .enumerate()
        .max_by_key(|(_, (slot, _))| slot.number)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn multi(max: i64, per: Option<i64>) -> MultiLimits {
        MultiLimits::new(max, per).unwrap()
    }

    #[test]
    fn names_and_limits_round_trip() {
        for (name, max, per) in [
            ("single", None, None),
            ("changeable", None, None),
            ("multi", Some(5), None),
            ("multi", Some(20), Some(3)),
        ] {
            let p = VotePolicy::from_parts(name, max, per).unwrap();
            assert_eq!(p.as_str(), name);
            assert_eq!(p.max_votes().map(i64::from), max);
            assert_eq!(p.max_per_candidate().map(i64::from), per);
        }
        assert_eq!(VotePolicy::default(), VotePolicy::Single);
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        assert_eq!(MultiLimits::new(0, None), Err(PolicyError::MaxVotes { got: 0 }));
        assert_eq!(
            MultiLimits::new(101, None),
            Err(PolicyError::MaxVotes { got: 101 })
        );
        assert_eq!(MultiLimits::new(-1, None), Err(PolicyError::MaxVotes { got: -1 }));
        assert_eq!(
            MultiLimits::new(5, Some(6)),
            Err(PolicyError::MaxPerCandidate { got: 6, max_votes: 5 })
        );
        assert_eq!(
            MultiLimits::new(5, Some(0)),
            Err(PolicyError::MaxPerCandidate { got: 0, max_votes: 5 })
        );
        assert!(MultiLimits::new(100, Some(100)).is_ok());
        assert_eq!(
            VotePolicy::from_parts("single", Some(3), None),
            Err(PolicyError::LimitsNeedMulti)
        );
        assert_eq!(
            VotePolicy::from_parts("changeable", None, Some(1)),
            Err(PolicyError::LimitsNeedMulti)
        );
        assert_eq!(
            VotePolicy::from_parts("multi", None, None),
            Err(PolicyError::MaxVotes { got: 0 })
        );
        assert_eq!(
            VotePolicy::from_parts("Multi", Some(2), None),
            Err(PolicyError::Unknown)
        );
    }

    #[test]
    fn admits_only_slots_the_policy_gives() {
        let slot = |number, per_candidate| VoteSlot {
            number,
            per_candidate,
        };
        assert!(VotePolicy::Single.admits(VoteSlot::FIRST));
        assert!(!VotePolicy::Single.admits(slot(2, None)));
        assert!(!VotePolicy::Single.admits(slot(1, Some(1))));
        let five = VotePolicy::Multi(multi(5, None));
        assert!(five.admits(slot(5, None)));
        assert!(!five.admits(slot(6, None)));
        assert!(!five.admits(slot(0, None)));
        assert!(!five.admits(slot(1, Some(1))));
        let per_two = VotePolicy::Multi(multi(5, Some(2)));
        assert!(per_two.admits(slot(3, Some(2))));
        assert!(!per_two.admits(slot(3, Some(3))));
        assert!(!per_two.admits(slot(3, None)));
        assert!(VotePolicy::Changeable.admits(slot(7_000, None)));
        assert!(!VotePolicy::Changeable.admits(slot(0, None)));
    }

    #[test]
    fn the_vote_past_the_limit_is_refused_with_what_was_used() {
        let a = CandidateId::generate();
        let b = CandidateId::generate();
        let limits = multi(3, Some(2));
        let mut held = Vec::new();
        for candidate in [a, a] {
            let slot = next_multi_slot(limits, &held, candidate).unwrap();
            held.push((slot, candidate));
        }
        assert_eq!(
            next_multi_slot(limits, &held, a),
            Err(VoteLimitReached {
                used: 2,
                max: 2,
                per_candidate: true
            })
        );
        let slot = next_multi_slot(limits, &held, b).unwrap();
        assert_eq!(
            slot,
            VoteSlot {
                number: 3,
                per_candidate: Some(1)
            }
        );
        held.push((slot, b));
        assert_eq!(
            next_multi_slot(limits, &held, b),
            Err(VoteLimitReached {
                used: 3,
                max: 3,
                per_candidate: false
            })
        );
        assert_eq!(
            VoteLimitReached {
                used: 3,
                max: 3,
                per_candidate: false
            }
            .to_string(),
            "3 of 3 votes used"
        );
    }

    #[test]
    fn a_freed_slot_is_taken_again() {
        let a = CandidateId::generate();
        let limits = multi(3, None);
        let held = vec![
            (
                VoteSlot {
                    number: 1,
                    per_candidate: None,
                },
                a,
            ),
            (
                VoteSlot {
                    number: 3,
                    per_candidate: None,
                },
                a,
            ),
        ];
        assert_eq!(next_multi_slot(limits, &held, a).unwrap().number, 2);
    }

    proptest! {
        /// Whatever the requests, a multi voter never holds more than maxVotes
        /// slots, nor more than maxPerCandidate for one candidate; slots are
        /// unique and admitted by the policy; and a request is refused only
        /// when a limit is really reached.
        #[test]
        fn multi_slots_never_exceed_the_limits(
            max in 1i64..=12,
            per in proptest::option::of(1i64..=12),
            picks in proptest::collection::vec(0usize..4, 0..40),
        ) {
            let per = per.map(|p| p.min(max));
            let limits = multi(max, per);
            let policy = VotePolicy::Multi(limits);
            let candidates: Vec<CandidateId> = (0..4).map(|_| CandidateId::generate()).collect();
            let mut held: Vec<(VoteSlot, CandidateId)> = Vec::new();
            for pick in picks {
                let c = candidates[pick];
                match next_multi_slot(limits, &held, c) {
                    Ok(slot) => {
                        prop_assert!(policy.admits(slot));
                        prop_assert!(!held.iter().any(|(s, _)| s.number == slot.number));
                        held.push((slot, c));
                    }
                    Err(limit) => {
                        let for_c = held.iter().filter(|(_, h)| *h == c).count();
                        if limit.per_candidate {
                            prop_assert_eq!(Some(for_c as i64), per);
                        } else {
                            prop_assert_eq!(held.len() as i64, max);
                        }
                    }
                }
                prop_assert!(held.len() as i64 <= max);
                if let Some(k) = per {
                    for c in &candidates {
                        prop_assert!(held.iter().filter(|(_, h)| h == c).count() as i64 <= k);
                    }
                }
            }
        }

        /// The current vote of a changeable voter is the highest sequence,
        /// whatever order the votes arrive in.
        #[test]
        fn the_current_vote_does_not_depend_on_order(
            seqs in proptest::collection::hash_set(1u32..10_000, 1..30),
            rotate in 0usize..30,
        ) {
            let mut votes: Vec<(VoteSlot, u32)> = seqs.iter().map(|s| (VoteSlot::sequence(*s), *s)).collect();
            let highest = *seqs.iter().max().unwrap();
            let n = votes.len();
            votes.rotate_left(rotate % n);
            let i = current_vote(&votes).unwrap();
            prop_assert_eq!(votes[i].1, highest);
            votes.reverse();
            let i = current_vote(&votes).unwrap();
            prop_assert_eq!(votes[i].1, highest);
        }
    }
}
