//! What the clients saw: latency histograms per endpoint (HDR, microseconds,
//! measured from the scheduled send time) and answers counted by kind of
//! attempt and outcome.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::plan::Kind;
use super::verdict::RunPolicy;

/// Latency summary of one endpoint, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The endpoints measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// `POST /api/v1/votes`.
    Vote,
    /// `GET /api/v1/results/{id}` by the pollers.
    Results,
    /// `GET /api/v1/results/{id}/stream`: connect to first event.
    StreamFirstEvent,
    /// From a vote's 202 until a results poller's answer includes it ([`super::visibility`]).
    VisibleInResults,
    /// From a vote's 202 until an SSE event includes it.
    VisibleInStream,
    /// Every SSE client, every event: from the event's `asOf` (when the
    /// service read the counts) until this client had it. With many
    /// clients this is the fan-out delay each one sees.
    StreamEventAge,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Vote => "POST /api/v1/votes",
            Endpoint::Results => "GET /api/v1/results/{id}",
            Endpoint::StreamFirstEvent => "GET /api/v1/results/{id}/stream (first event)",
            Endpoint::VisibleInResults => "202 -> in GET /api/v1/results/{id}",
            Endpoint::VisibleInStream => "202 -> in the SSE stream",
            Endpoint::StreamEventAge => "SSE event age on arrival (asOf -> each client)",
        }
    }
}

/// How one vote attempt ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// 202 with a vote id.
    Accepted,
    /// An error answer with its status and code.
    Refused { status: u16, code: String },
    /// No answer (connection error, timeout): the server may or may not have taken it.
    Unanswered,
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::Accepted => "202".to_owned(),
            Outcome::Refused { status, code } => format!("{status} {code}"),
            Outcome::Unanswered => "no answer".to_owned(),
        }
    }

    /// Whether this is the answer `kind` must get under `policy`. Load
    /// shedding (503, 429) is reported apart: it is allowed, but it is not
    /// what the run wants. A `multi` repeat may get 202 or, once the viewer's
    /// votes are used up, VOTE_LIMIT_REACHED (checked per viewer); a
    /// `changeable` repeat is a change: 202.
    pub fn expected_for(&self, kind: Kind, policy: RunPolicy) -> bool {
        match (kind, self, policy) {
            (Kind::First, Outcome::Accepted, _) => true,
            (Kind::Repeat, Outcome::Accepted, RunPolicy::Multi { .. } | RunPolicy::Changeable) => true,
            (Kind::Repeat, Outcome::Refused { code, .. }, RunPolicy::Multi { .. }) => {
                code == "VOTE_LIMIT_REACHED"
            }
            (Kind::Repeat, Outcome::Refused { code, .. }, RunPolicy::Single) => code == "DUPLICATE_VOTE",
            (kind, outcome, _) => outcome.expected_elsewhere(kind),
        }
    }

    fn expected_elsewhere(&self, kind: Kind) -> bool {
        match (kind, self) {
            (Kind::Closed, Outcome::Refused { code, .. }) => code == "ELECTION_CLOSED",
            (Kind::Unknown, Outcome::Refused { code, .. }) => code == "ELECTION_NOT_FOUND",
            _ => false,
        }
    }

    /// Whether the client cannot tell if the vote was taken: no answer, or
    /// 503 VOTE_PENDING (the queue had not answered for it yet).
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Outcome::Unanswered => true,
            Outcome::Refused { status, code } => *status == 503 && code == "VOTE_PENDING",
            Outcome::Accepted => false,
        }
    }

    pub fn is_shed(&self) -> bool {
        matches!(
            self,
            Outcome::Refused {
                status: 503 | 429,
                ..
            }
        )
    }
}

/// Thread-safe collector shared by all client tasks.
#[derive(Debug)]
pub struct Stats {
    latency: Mutex<BTreeMap<Endpoint, Histogram<u64>>>,
    outcomes: Mutex<BTreeMap<(Kind, Outcome), u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram() -> Histogram<u64> {
    // 1 us .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stats {
    pub fn new() -> Self {
        Self {
            latency: Mutex::new(BTreeMap::new()),
            outcomes: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn record_latency(&self, endpoint: Endpoint, took: Duration) {
        let us = (took.as_micros() as u64).clamp(1, 600_000_000);
        let mut all = lock(&self.latency);
        let h = all.entry(endpoint).or_insert_with(histogram);
        // Cannot fail: the value is clamped into the histogram's bounds.
        h.saturating_record(us);
    }

    pub fn record_outcome(&self, kind: Kind, outcome: Outcome) {
        *lock(&self.outcomes).entry((kind, outcome)).or_default() += 1;
    }

    pub fn latency(&self, endpoint: Endpoint) -> Option<Latency> {
        let all = lock(&self.latency);
        let h = all.get(&endpoint)?;
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        })
    }

    pub fn latencies(&self) -> Vec<(Endpoint, Latency)> {
        let endpoints: Vec<Endpoint> = lock(&self.latency).keys().copied().collect();
        endpoints
            .into_iter()
            .filter_map(|e| self.latency(e).map(|l| (e, l)))
            .collect()
    }

    /// Every (kind, outcome) pair seen, with its count.
    pub fn outcomes(&self) -> Vec<(Kind, Outcome, u64)> {
        lock(&self.outcomes)
            .iter()
            .map(|((k, o), n)| (*k, o.clone(), *n))
            .collect()
    }

    pub fn count(&self, pred: impl Fn(Kind, &Outcome) -> bool) -> u64 {
        lock(&self.outcomes)
            .iter()
            .filter(|((k, o), _)| pred(*k, o))
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let stats = Stats::new();
        for ms in 1..=1000u64 {
            stats.record_latency(Endpoint::Vote, Duration::from_millis(ms));
        }
        let l = stats.latency(Endpoint::Vote).unwrap();
        assert_eq!(l.count, 1000);
        // HDR keeps 3 significant digits.
        assert!((l.p50_ms - 500.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99_ms - 990.0).abs() <= 1.0, "{l:?}");
        assert!((l.max_ms - 1000.0).abs() <= 1.0, "{l:?}");
        assert!(stats.latency(Endpoint::Results).is_none());
    }

    #[test]
    fn outcomes_are_judged_by_the_kind_of_attempt() {
        let dup = Outcome::Refused {
            status: 409,
            code: "DUPLICATE_VOTE".into(),
        };
        assert!(Outcome::Accepted.expected_for(Kind::First, RunPolicy::Single));
        assert!(!Outcome::Accepted.expected_for(Kind::Repeat, RunPolicy::Single));
        assert!(dup.expected_for(Kind::Repeat, RunPolicy::Single));
        assert!(!dup.expected_for(Kind::First, RunPolicy::Single));
        let shed = Outcome::Refused {
            status: 503,
            code: "UNAVAILABLE".into(),
        };
        assert!(shed.is_shed() && !shed.expected_for(Kind::First, RunPolicy::Single));
        let stats = Stats::new();
        stats.record_outcome(Kind::First, Outcome::Accepted);
        stats.record_outcome(Kind::First, Outcome::Accepted);
        stats.record_outcome(Kind::Repeat, dup);
        assert_eq!(stats.count(|_, o| *o == Outcome::Accepted), 2);
        assert_eq!(stats.count(|k, o| o.expected_for(k, RunPolicy::Single)), 3);
    }
}
