//! The JSON report of a run and its one-screen text summary.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::Settings;
use super::drive::MemorySample;
use super::plan::{Kind, Plan};
use super::stats::{Latency, Stats};
use super::verdict::Verdict;

/// What the readers saw.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readers {
    pub results_errors: u64,
    pub sse_events: u64,
    pub sse_errors: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsDoc {
    pub rate: f64,
    pub duration_secs: f64,
    pub ramp_secs: f64,
    pub repeat_percent: u32,
    pub closed_percent: u32,
    pub unknown_percent: u32,
    pub readers: usize,
    pub poll_ms: u64,
    pub sse_clients: usize,
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeDoc {
    pub kind: &'static str,
    pub answer: String,
    pub count: u64,
    pub expected: bool,
}

/// Per service: first, last and highest resident memory, MiB.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRange {
    pub first_mb: f64,
    pub last_mb: f64,
    pub max_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: &'static str,
    pub started_at: String,
    pub election: String,
    /// The election's vote policy (`policy`, and `maxVotes` for `multi`).
    #[serde(flatten)]
    pub policy: super::verdict::RunPolicy,
    pub closed_election: String,
    pub unknown_election: String,
    pub settings: SettingsDoc,
    pub voters: usize,
    pub attempts: BTreeMap<&'static str, usize>,
    pub not_sent: u64,
    pub voting_secs: f64,
    /// Attempts sent per second of the voting phase.
    pub achieved_rate: f64,
    pub accepted: u64,
    pub outcomes: Vec<OutcomeDoc>,
    /// Per endpoint, from the scheduled send time.
    pub latency: BTreeMap<&'static str, Latency>,
    pub readers: Readers,
    pub drain_secs: f64,
    pub memory: BTreeMap<String, MemoryRange>,
    pub memory_series: Vec<MemorySample>,
    /// Cores used by each part of the system while the votes came in (1.0 = one core busy).
    pub cpu_cores: BTreeMap<&'static str, f64>,
    pub reconciliation: Value,
    pub verdict: Verdict,
    /// The ledger of votes answered 202 (for `livevote-load verify`).
    pub ledger: String,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: &Settings,
        plan: &Plan,
        started_at: DateTime<Utc>,
        [election, closed_election, unknown_election]: [String; 3],
        stats: &Stats,
        not_sent: u64,
        voting_secs: f64,
        drain_secs: f64,
        readers: Readers,
        memory_series: Vec<MemorySample>,
        cpu_cores: BTreeMap<&'static str, f64>,
        reconciliation: Value,
        verdict: Verdict,
        ledger: &Path,
    ) -> Self {
        let sent = plan.attempts.len() as u64 - not_sent;
        let mut memory: BTreeMap<String, MemoryRange> = BTreeMap::new();
        for s in &memory_series {
            memory
                .entry(s.service.clone())
                .and_modify(|r| {
                    r.last_mb = s.rss_mb;
                    r.max_mb = r.max_mb.max(s.rss_mb);
                })
                .or_insert(MemoryRange {
                    first_mb: s.rss_mb,
                    last_mb: s.rss_mb,
                    max_mb: s.rss_mb,
                });
        }
        Self {
            scenario: settings.scenario.label(),
            started_at: started_at.to_rfc3339(),
            election,
            policy: settings.policy,
            closed_election,
            unknown_election,
            settings: SettingsDoc {
                rate: settings.shape.rate,
                duration_secs: settings.shape.duration_secs,
                ramp_secs: settings.shape.ramp_secs,
                repeat_percent: settings.mix.repeat,
                closed_percent: settings.mix.closed,
                unknown_percent: settings.mix.unknown,
                readers: settings.readers,
                poll_ms: settings.poll_ms,
                sse_clients: settings.sse_clients,
                max_in_flight: settings.max_in_flight,
            },
            voters: plan.voters,
            attempts: Kind::ALL.iter().map(|k| (k.label(), plan.count(*k))).collect(),
            not_sent,
            voting_secs,
            achieved_rate: sent as f64 / voting_secs.max(1e-9),
            accepted: stats.count(|_, o| *o == super::stats::Outcome::Accepted),
            outcomes: stats
                .outcomes()
                .into_iter()
                .map(|(k, o, n)| OutcomeDoc {
                    kind: k.label(),
                    answer: o.label(),
                    count: n,
                    expected: o.expected_for(k, settings.policy),
                })
                .collect(),
            latency: stats
                .latencies()
                .into_iter()
                .map(|(e, l)| (e.label(), l))
                .collect(),
            readers,
            drain_secs,
            memory,
            memory_series,
            cpu_cores,
            reconciliation,
            verdict,
            ledger: ledger.display().to_string(),
        }
    }

    /// One screen of text.
    pub fn summary(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        out.push_str(&format!(
            "\n== livevote-load {} · election {} · policy {} ==\n",
            self.scenario,
            self.election,
            self.policy.label()
        ));
        out.push_str(&format!(
            "schedule   {} attempts at {}/s for {} s{} from {} viewers; sent at {:.0}/s over {:.1} s; {} not sent\n",
            self.attempts.values().sum::<usize>(),
            s.rate,
            s.duration_secs,
            if s.ramp_secs > 0.0 { format!(" (ramp {} s)", s.ramp_secs) } else { String::new() },
            self.voters,
            self.achieved_rate,
            self.voting_secs,
            self.not_sent
        ));
        out.push_str("answers   ");
        for o in &self.outcomes {
            out.push_str(&format!(
                " {} {} {}{};",
                o.kind,
                o.answer,
                o.count,
                if o.expected { "" } else { " (!)" }
            ));
        }
        out.push('\n');
        out.push_str(&format!(
            "{:<48} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}\n",
            "latency (ms, from the scheduled time)", "count", "p50", "p90", "p99", "p99.9", "max"
        ));
        for (endpoint, l) in &self.latency {
            out.push_str(&format!(
                "{:<48} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>9.1}\n",
                endpoint, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            ));
        }
        if s.readers + s.sse_clients > 0 {
            out.push_str(&format!(
                "readers    {} pollers every {} ms ({} errors); {} SSE clients, {} events ({} errors)\n",
                s.readers,
                s.poll_ms,
                self.readers.results_errors,
                s.sse_clients,
                self.readers.sse_events,
                self.readers.sse_errors
            ));
        }
        if !self.memory.is_empty() {
            out.push_str("memory MiB ");
            for (service, m) in &self.memory {
                out.push_str(&format!(
                    " {service} {:.0}->{:.0} (max {:.0});",
                    m.first_mb, m.last_mb, m.max_mb
                ));
            }
            out.push('\n');
        }
        if !self.cpu_cores.is_empty() {
            out.push_str("cpu cores ");
            for (role, cores) in &self.cpu_cores {
                out.push_str(&format!(" {role} {cores:.2};"));
            }
            out.push_str(&format!(" total {:.2}\n", self.cpu_cores.values().sum::<f64>()));
        }
        out.push_str(&format!(
            "drained    {:.1} s after the lines closed\n",
            self.drain_secs
        ));
        out.push_str(&self.verdict.text());
        out
    }
}
