//! Every metric the dashboards (`infra/grafana/dashboards/*.json`) and the
//! alert rules (`infra/prometheus/alerts.yml`) use is one this exporter
//! really produces, with the labels they select on. One event of every kind
//! is recorded and the rendered text is the reference; the `match` below
//! stops compiling when an event kind is added without being listed here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use livevote_domain::ElectionId;
use livevote_metrics::PrometheusMetrics;
use livevote_ports::{MetricEvent, Metrics, RejectReason};

fn every_event() -> Vec<MetricEvent> {
    let election = ElectionId::parse("01a20874-e0b9-75ca-9ee3-8e3334b3522a").unwrap();
    let events = vec![
        MetricEvent::VotesAccepted { election, count: 1 },
        MetricEvent::VoteRejected {
            reason: RejectReason::Duplicate,
        },
        MetricEvent::VoteReplayed,
        MetricEvent::ConfirmMissed,
        MetricEvent::ClaimReleased,
        MetricEvent::PublishBatch {
            votes: 2,
            failed: 1,
            latency: Duration::from_millis(3),
        },
        MetricEvent::VotesPersisted { election, count: 1 },
        MetricEvent::DuplicatesDropped { election, count: 1 },
        MetricEvent::Redeliveries { count: 1 },
        MetricEvent::PoisonMessages { count: 1 },
        MetricEvent::HttpRequest {
            route: "cast_vote",
            status: 202,
            latency: Duration::from_millis(2),
        },
        MetricEvent::ResultsRead { election },
        MetricEvent::ResultStreams { open: 1 },
        MetricEvent::Reconciled {
            election,
            in_flight: 1,
            lost: 0,
            surplus: 0,
        },
        MetricEvent::QueueState {
            dead_letter_messages: 0,
        },
        MetricEvent::QueueLag {
            lag: Duration::from_millis(40),
        },
        MetricEvent::PersistBatch {
            votes: 10,
            messages: 1,
            latency: Duration::from_millis(5),
        },
    ];
    // Exhaustive on purpose: a new event kind must be added to the list above.
    for e in &events {
        match e {
            MetricEvent::VotesAccepted { .. }
            | MetricEvent::VoteRejected { .. }
            | MetricEvent::VoteReplayed
            | MetricEvent::ConfirmMissed
            | MetricEvent::ClaimReleased
            | MetricEvent::PublishBatch { .. }
            | MetricEvent::VotesPersisted { .. }
            | MetricEvent::DuplicatesDropped { .. }
            | MetricEvent::Redeliveries { .. }
            | MetricEvent::PoisonMessages { .. }
            | MetricEvent::HttpRequest { .. }
            | MetricEvent::ResultsRead { .. }
            | MetricEvent::ResultStreams { .. }
            | MetricEvent::Reconciled { .. }
            | MetricEvent::QueueState { .. }
            | MetricEvent::QueueLag { .. }
            | MetricEvent::PersistBatch { .. } => {}
        }
    }
    events
}

/// Series name -> label names, as rendered.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let metrics = PrometheusMetrics::new();
    for e in every_event() {
        metrics.record(e);
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics
        .render()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let series = line.split(' ').next().unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let keys = out.entry(name.to_owned()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            keys.insert(pair.split('=').next().unwrap().to_owned());
        }
    }
    out
}

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

/// Each `livevote_*` metric named in `text`, with the label names of its selectors.
fn used(text: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("livevote_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let mut labels = BTreeSet::new();
        if let Some(selector) = tail[end..].strip_prefix('{') {
            let close = selector.find('}').unwrap_or(0);
            for matcher in selector[..close].split(',') {
                let key: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !key.is_empty() {
                    labels.insert(key);
                }
            }
        }
        // Job names like livevote-ingestion use a dash and never match here.
        found.push((name.to_owned(), labels));
        rest = &tail[end..];
    }
    found
}

#[test]
fn dashboards_and_alerts_use_only_exported_metrics_and_labels() {
    let exported = exported();
    let mut files: Vec<PathBuf> = std::fs::read_dir(infra().join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.push(infra().join("prometheus/alerts.yml"));
    assert!(files.len() >= 4, "three dashboards and the alerts: {files:?}");

    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let uses = used(&text);
        assert!(!uses.is_empty(), "{} names no livevote metric", file.display());
        for (name, labels) in uses {
            let Some(have) = exported.get(&name) else {
                problems.push(format!("{}: {name} is not exported", file.display()));
                continue;
            };
            for label in labels.difference(have) {
                problems.push(format!(
                    "{}: {name} has no label {label:?} (it has {have:?})",
                    file.display()
                ));
            }
            checked.insert(name);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The integrity alerts are there, on the reconciliation gauges.
    for must in [
        "livevote_reconciliation_lost_votes",
        "livevote_dead_letter_messages",
        "livevote_reconciliation_in_flight_votes",
        "livevote_http_request_duration_seconds_bucket",
    ] {
        assert!(
            checked.contains(must),
            "{must} is not used by the dashboards or alerts"
        );
    }
}

#[test]
fn the_checker_reports_a_name_the_exporter_does_not_have() {
    let exported = exported();
    let uses = used(
        r#"sum(rate(livevote_votes_acepted_total{election="x"}[1m])) + livevote_results_streams_open{route="y"}"#,
    );
    assert_eq!(uses.len(), 2);
    assert!(!exported.contains_key(&uses[0].0));
    assert!(!uses[1].1.is_subset(&exported[&uses[1].0]));
}
