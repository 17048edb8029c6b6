//! Counting: per-candidate tallies, percentages that always add up, and the
//! shard a voter's counters live on.

use std::fmt;
use std::num::NonZeroU16;

use crate::election::Election;
use crate::ids::{CandidateId, VoterId};

/// Votes for one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateCount {
    pub candidate_id: CandidateId,
    pub votes: u64,
}

/// A share of the total with a fixed number of decimals, kept as an integer
/// number of units (`10^-decimals` percent) so that sums are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percentage {
    units: u64,
    decimals: u8,
}

impl Percentage {
    /// Integer units of `10^-decimals` percent (333 with one decimal is 33.3 %).
    pub fn units(&self) -> u64 {
        self.units
    }

    pub fn decimals(&self) -> u8 {
        self.decimals
    }

    /// The value in percent, for JSON. Summing these floats may show rounding
    /// noise; sum [`Percentage::units`] for an exact check.
    pub fn as_f64(&self) -> f64 {
        self.units as f64 / 10f64.powi(i32::from(self.decimals))
    }
}

impl fmt::Display for Percentage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u64.pow(u32::from(self.decimals));
        let whole = self.units / scale;
        if self.decimals == 0 {
            write!(f, "{whole}")
        } else {
            let frac = self.units % scale;
            write!(f, "{whole}.{frac:0width$}", width = usize::from(self.decimals))
        }
    }
}

/// The counts of one election, one entry per candidate in the election's
/// order (candidates without votes count zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    counts: Vec<CandidateCount>,
    total: u64,
}

impl Tally {
    /// Lines up `counts` with the election's candidates. Counts for ids that
    /// are not candidates of this election are not part of its tally and are
    /// left out; candidates missing from `counts` have zero.
    pub fn for_election(election: &Election, counts: &[CandidateCount]) -> Self {
        Self::for_candidates(election.candidates().iter().map(|c| c.id()), counts)
    }

    /// As [`Tally::for_election`], for a bare list of candidate ids.
    pub fn for_candidates(
        candidates: impl IntoIterator<Item = CandidateId>,
        counts: &[CandidateCount],
    ) -> Self {
        let counts: Vec<CandidateCount> = candidates
            .into_iter()
            .map(|candidate_id| CandidateCount {
                candidate_id,
                votes: counts
                    .iter()
                    .filter(|c| c.candidate_id == candidate_id)
                    .map(|c| c.votes)
                    .sum(),
            })
            .collect();
        let total = counts.iter().map(|c| c.votes).sum();
        Self { counts, total }
    }

    pub fn counts(&self) -> &[CandidateCount] {
        &self.counts
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn votes_for(&self, candidate: CandidateId) -> u64 {
        self.counts
            .iter()
            .find(|c| c.candidate_id == candidate)
            .map_or(0, |c| c.votes)
    }

    /// Each candidate's share with `decimals` decimals (at most 4), rounded by
    /// the largest remainder method so that the shares add up to exactly 100
    /// whenever any vote was cast (all zero otherwise). Ties in remainder go to
    /// the candidate with more votes, then to the one listed first, so the
    /// result is deterministic.
    pub fn percentages(&self, decimals: u8) -> Vec<Percentage> {
        let decimals = decimals.min(4);
        let whole = 100 * 10u64.pow(u32::from(decimals));
        if self.total == 0 {
            return vec![Percentage { units: 0, decimals }; self.counts.len()];
        }
        let total = u128::from(self.total);
        let mut units: Vec<u64> = Vec::with_capacity(self.counts.len());
        let mut remainders: Vec<(u128, u64, usize)> = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            let exact = u128::from(c.votes) * u128::from(whole);
            // exact / total <= whole, so it fits in u64.
            units.push((exact / total) as u64);
            remainders.push((exact % total, c.votes, i));
        }
        let assigned: u64 = units.iter().sum();
        let mut leftover = whole - assigned;
        // Largest remainder first; then more votes; then list order.
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        for (_, _, i) in remainders {
            if leftover == 0 {
                break;
            }
            units[i] += 1;
            leftover -= 1;
        }
        units
            .into_iter()
            .map(|units| Percentage { units, decimals })
            .collect()
    }
}

/// Which of an election's counter shards a voter's dedup key and tally bump
/// live on. Stable across processes and releases: FNV-1a (64-bit) of the
/// voter id's bytes, modulo the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TallyShard(u16);

impl TallyShard {
    /// Shards per election unless configured otherwise.
    pub const DEFAULT_COUNT: NonZeroU16 = NonZeroU16::new(64).unwrap();

    pub fn of(voter: &VoterId, shards: NonZeroU16) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let hash = voter
            .as_str()
            .bytes()
            .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
        Self((hash % u64::from(shards.get())) as u16)
    }

    pub fn index(&self) -> u16 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<CandidateId> {
        (0..n).map(|_| CandidateId::generate()).collect()
    }

    fn tally(votes: &[u64]) -> Tally {
        let ids = ids(votes.len());
        let counts: Vec<CandidateCount> = ids
            .iter()
            .zip(votes)
            .map(|(&candidate_id, &votes)| CandidateCount { candidate_id, votes })
            .collect();
        Tally::for_candidates(ids, &counts)
    }

    fn units(t: &Tally, decimals: u8) -> Vec<u64> {
        t.percentages(decimals).iter().map(Percentage::units).collect()
    }

    #[test]
    fn thirds_add_up_to_one_hundred() {
        let t = tally(&[1, 1, 1]);
        assert_eq!(
            units(&t, 1),
            vec![334, 333, 333],
            "the tie goes to the first listed"
        );
        assert_eq!(units(&t, 0), vec![34, 33, 33]);
        let shown: Vec<String> = t.percentages(1).iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["33.4", "33.3", "33.3"]);
    }

    #[test]
    fn largest_remainder_not_largest_count() {
        // 2/7 = 28.571 (rem .571), 5/7 = 71.428 (rem .428): the extra unit goes to the first.
        let t = tally(&[2, 5]);
        assert_eq!(units(&t, 0), vec![29, 71]);
        assert_eq!(units(&t, 2), vec![2857, 7143]);
    }

    #[test]
    fn no_votes_is_all_zero() {
        let t = tally(&[0, 0, 0]);
        assert_eq!(t.total(), 0);
        assert_eq!(units(&t, 1), vec![0, 0, 0]);
    }

    #[test]
    fn counts_line_up_with_the_candidates() {
        let candidates = ids(3);
        let stranger = CandidateId::generate();
        let counts = [
            CandidateCount {
                candidate_id: candidates[2],
                votes: 5,
            },
            CandidateCount {
                candidate_id: stranger,
                votes: 9,
            },
            CandidateCount {
                candidate_id: candidates[2],
                votes: 1,
            },
        ];
        let t = Tally::for_candidates(candidates.clone(), &counts);
        assert_eq!(
            t.counts().iter().map(|c| c.votes).collect::<Vec<_>>(),
            vec![0, 0, 6]
        );
        assert_eq!(
            t.total(),
            6,
            "counts for other elections' candidates are not ours"
        );
        assert_eq!(t.votes_for(candidates[2]), 6);
        assert_eq!(t.votes_for(stranger), 0);
    }

    #[test]
    fn display_pads_decimals() {
        let p = Percentage {
            units: 5,
            decimals: 2,
        };
        assert_eq!(p.to_string(), "0.05");
        assert!((p.as_f64() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        let v = VoterId::parse("auth0|abc").unwrap();
        let n = TallyShard::DEFAULT_COUNT;
        assert_eq!(TallyShard::of(&v, n), TallyShard::of(&v, n));
        // Pinned: changing the hash would split a running election's keys.
        assert_eq!(
            TallyShard::of(&v, n).index(),
            61,
            "FNV-1a 64 of the bytes, mod 64"
        );
        let one = NonZeroU16::new(1).unwrap();
        assert_eq!(TallyShard::of(&v, one).index(), 0);
    }

    proptest! {
        #[test]
        fn percentages_always_sum_to_exactly_one_hundred(votes in prop::collection::vec(0u64..1_000_000_000, 2..=100), decimals in 0u8..=4) {
            let t = tally(&votes);
            let shares = units(&t, decimals);
            let whole = 100 * 10u64.pow(u32::from(decimals));
            let sum: u64 = shares.iter().sum();
            if t.total() == 0 {
                prop_assert_eq!(sum, 0);
            } else {
                prop_assert_eq!(sum, whole);
            }
            // Each share is its exact value rounded down or up by at most one unit.
            for (share, &v) in shares.iter().zip(&votes) {
                if t.total() > 0 {
                    let exact = u128::from(v) * u128::from(whole);
                    let floor = (exact / u128::from(t.total())) as u64;
                    prop_assert!(*share == floor || *share == floor + 1);
                }
            }
            // Never a smaller share for more votes.
            for i in 0..votes.len() {
                for j in 0..votes.len() {
                    if votes[i] > votes[j] {
                        prop_assert!(shares[i] >= shares[j]);
                    }
                }
            }
        }

        #[test]
        fn shard_is_below_the_count(voter in "[a-z|0-9]{1,64}", n in 1u16..1024) {
            let v = VoterId::parse(voter).unwrap();
            let n = NonZeroU16::new(n).unwrap();
            prop_assert!(TallyShard::of(&v, n).index() < n.get());
        }
    }
}
