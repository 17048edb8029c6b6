//! How long a vote takes from its 202 to the public results: the results
//! API and the SSE stream publish per-candidate counts, not vote ids, so a
//! vote is taken as visible once a reader sees its candidate's count reach
//! the number of 202s that candidate had when the vote's 202 arrived.
//!
//! That is exact for what a viewer or a graphic sees: the ingestion service
//! bumps the live tally before it answers 202, so once the shown count has
//! caught up with the 202s the client had, every one of them is in it. A
//! count may also get there early, from votes confirmed whose 202 had not
//! reached the client yet; the figure then errs short by at most that
//! in-flight window, never long. A count already there when the 202 arrives
//! is recorded as zero.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where a reader saw the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `GET /api/v1/results/{id}`.
    Api = 0,
    /// `GET /api/v1/results/{id}/stream`.
    Stream = 1,
}

/// The 202s not yet seen by each source, and what each last showed.
#[derive(Debug, Default)]
pub struct Visibility {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// 202s per candidate id so far.
    accepted: HashMap<String, u64>,
    /// Per source and candidate: (the candidate's 202 count at this 202, when), oldest first.
    waiting: [HashMap<String, VecDeque<(u64, Instant)>>; 2],
    /// Per source and candidate: the highest count shown so far.
    shown: [HashMap<String, u64>; 2],
}

impl Visibility {
    /// A 202 for `candidate` at `at`. Returns, per source, a zero latency
    /// where that source already shows it.
    pub fn accepted(&self, candidate: &str, at: Instant) -> Vec<(Source, Duration)> {
        let mut inner = lock(&self.inner);
        let n = {
            let count = inner.accepted.entry(candidate.to_owned()).or_default();
            *count += 1;
            *count
        };
        let mut seen = Vec::new();
        for source in [Source::Api, Source::Stream] {
            let i = source as usize;
            if inner.shown[i].get(candidate).copied().unwrap_or(0) >= n {
                seen.push((source, Duration::ZERO));
            } else {
                inner.waiting[i]
                    .entry(candidate.to_owned())
                    .or_default()
                    .push_back((n, at));
            }
        }
        seen
    }

    /// A results document (`totals[].candidateId`, `totals[].votes`) read
    /// from `source` at `at`: the latencies of the 202s it now covers.
    pub fn observed(&self, source: Source, document: &Value, at: Instant) -> Vec<Duration> {
        let Some(totals) = document["totals"].as_array() else {
            return Vec::new();
        };
        let i = source as usize;
        let mut inner = lock(&self.inner);
        let mut covered = Vec::new();
        for total in totals {
            let (Some(candidate), Some(votes)) = (total["candidateId"].as_str(), total["votes"].as_u64())
            else {
                continue;
            };
            let shown = inner.shown[i].entry(candidate.to_owned()).or_default();
            *shown = (*shown).max(votes);
            if let Some(queue) = inner.waiting[i].get_mut(candidate) {
                while queue.front().is_some_and(|&(n, _)| n <= votes) {
                    let (_, accepted_at) = queue.pop_front().expect("front checked");
                    covered.push(at.saturating_duration_since(accepted_at));
                }
            }
        }
        covered
    }

    /// 202s a source has not shown yet.
    pub fn unseen(&self, source: Source) -> usize {
        lock(&self.inner).waiting[source as usize]
            .values()
            .map(VecDeque::len)
            .sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(a: u64, b: u64) -> Value {
        json!({"totals": [{"candidateId": "a", "votes": a}, {"candidateId": "b", "votes": b}]})
    }

    #[test]
    fn a_vote_is_seen_when_its_candidates_count_reaches_the_202s_it_had() {
        let v = Visibility::default();
        let t0 = Instant::now();
        assert!(v.accepted("a", t0).is_empty());
        assert!(v.accepted("a", t0 + Duration::from_millis(10)).is_empty());
        assert!(v.accepted("b", t0 + Duration::from_millis(20)).is_empty());
        // One vote for a shown: only the first 202 of a is covered.
        let seen = v.observed(Source::Api, &doc(1, 0), t0 + Duration::from_millis(50));
        assert_eq!(seen, vec![Duration::from_millis(50)]);
        assert_eq!(v.unseen(Source::Api), 2);
        // The stream is tracked on its own.
        assert_eq!(v.unseen(Source::Stream), 3);
        let seen = v.observed(Source::Api, &doc(2, 1), t0 + Duration::from_millis(100));
        assert_eq!(seen, vec![Duration::from_millis(90), Duration::from_millis(80)]);
        assert_eq!(v.unseen(Source::Api), 0);
    }

    #[test]
    fn a_count_already_shown_when_the_202_arrives_is_zero_and_counts_never_go_back() {
        let v = Visibility::default();
        let t0 = Instant::now();
        assert!(v.observed(Source::Stream, &doc(3, 0), t0).is_empty());
        // A stale reading later does not lower what the stream has shown.
        assert!(v.observed(Source::Stream, &doc(1, 0), t0).is_empty());
        let seen = v.accepted("a", t0 + Duration::from_millis(5));
        assert_eq!(seen, vec![(Source::Stream, Duration::ZERO)]);
        assert_eq!(v.unseen(Source::Stream), 0);
        assert_eq!(v.unseen(Source::Api), 1);
    }

    #[test]
    fn a_document_without_totals_covers_nothing() {
        let v = Visibility::default();
        v.accepted("a", Instant::now());
        assert!(
            v.observed(Source::Api, &json!({"embargoed": true}), Instant::now())
                .is_empty()
        );
        assert_eq!(v.unseen(Source::Api), 1);
    }
}
