//! Prometheus series for the `/metrics` endpoint, named
//! `livevote_<what>_<unit>[_total]`. The recorder is kept by the value, not
//! installed as the process-wide `metrics` recorder, so every instance (and
//! every test) has series of its own.

use std::sync::Arc;

use livevote_ports::{MetricEvent, Metrics};
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Histogram buckets for batch latencies, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// Records [`MetricEvent`]s as Prometheus series. Cheap to clone.
#[derive(Clone)]
pub struct PrometheusMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        Self::new()
    }
}

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

impl PrometheusMetrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("static, non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        Self {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    /// The text exposition format, for a `/metrics` route.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds the samples histograms collected since the last render into
    /// their buckets. Histogram samples are kept until a render or an
    /// upkeep, so a service nobody scrapes MUST call this periodically
    /// (every few seconds) or its memory grows with every request.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Runs [`PrometheusMetrics::run_upkeep`] every 5 s until the task is aborted.
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        })
    }

    fn count(&self, name: &'static str, labels: Vec<Label>, n: u64) {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
            .increment(n);
    }

    fn seconds(&self, name: &'static str, d: std::time::Duration) {
        self.labelled_seconds(name, vec![], d);
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>, value: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
            .set(value);
    }

    fn labelled_seconds(&self, name: &'static str, labels: Vec<Label>, d: std::time::Duration) {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
            .record(d.as_secs_f64());
    }
}

fn election(e: &livevote_domain::ElectionId) -> Vec<Label> {
    vec![Label::new("election", e.to_string())]
}

impl Metrics for PrometheusMetrics {
    fn record(&self, event: MetricEvent) {
        match event {
            MetricEvent::VotesAccepted { election: e, count } => {
                self.count("livevote_votes_accepted_total", election(&e), count);
            }
            MetricEvent::VoteRejected { reason } => self.count(
                "livevote_votes_rejected_total",
                vec![Label::new("reason", reason.as_str())],
                1,
            ),
            MetricEvent::QueueLag { lag } => self.seconds("livevote_queue_lag_seconds", lag),
            MetricEvent::ResultsRead { election: e } => {
                self.count("livevote_results_reads_total", election(&e), 1);
            }
            MetricEvent::ResultStreams { open } => {
                self.gauge("livevote_results_streams_open", vec![], open as f64);
            }
            MetricEvent::Reconciled {
                election: e,
                in_flight,
                lost,
                surplus,
            } => {
                self.gauge(
                    "livevote_reconciliation_in_flight_votes",
                    election(&e),
                    in_flight as f64,
                );
                self.gauge("livevote_reconciliation_lost_votes", election(&e), lost as f64);
                self.gauge(
                    "livevote_reconciliation_surplus_votes",
                    election(&e),
                    surplus as f64,
                );
            }
            MetricEvent::QueueState { dead_letter_messages } => {
                self.gauge(
                    "livevote_dead_letter_messages",
                    vec![],
                    dead_letter_messages as f64,
                );
            }
            MetricEvent::VoteReplayed => self.count("livevote_votes_replayed_total", vec![], 1),
            MetricEvent::ConfirmMissed => self.count("livevote_confirms_missed_total", vec![], 1),
            MetricEvent::ClaimReleased => self.count("livevote_claims_released_total", vec![], 1),
            MetricEvent::PublishBatch {
                votes,
                failed,
                latency,
            } => {
                self.count("livevote_publish_batches_total", vec![], 1);
                self.count(
                    "livevote_published_votes_total",
                    vec![],
                    (votes - failed.min(votes)) as u64,
                );
                self.count("livevote_publish_failed_votes_total", vec![], failed as u64);
                self.seconds("livevote_publish_batch_seconds", latency);
            }
            MetricEvent::VotesPersisted { election: e, count } => {
                self.count("livevote_votes_persisted_total", election(&e), count);
            }
            MetricEvent::DuplicatesDropped { election: e, count } => {
                self.count("livevote_duplicates_dropped_total", election(&e), count);
            }
            MetricEvent::Redeliveries { count } => self.count("livevote_redeliveries_total", vec![], count),
            MetricEvent::PoisonMessages { count } => {
                self.count("livevote_poison_messages_total", vec![], count)
            }
            MetricEvent::HttpRequest {
                route,
                status,
                latency,
            } => {
                self.count(
                    "livevote_http_requests_total",
                    vec![
                        Label::new("route", route),
                        Label::new("status", status.to_string()),
                    ],
                    1,
                );
                self.labelled_seconds(
                    "livevote_http_request_duration_seconds",
                    vec![Label::new("route", route)],
                    latency,
                );
            }
            MetricEvent::PersistBatch {
                votes,
                messages,
                latency,
            } => {
                self.count("livevote_persist_batches_total", vec![], 1);
                self.count("livevote_persist_batch_votes_total", vec![], votes as u64);
                self.count("livevote_persist_batch_messages_total", vec![], messages as u64);
                self.seconds("livevote_persist_batch_seconds", latency);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livevote_domain::ElectionId;
    use livevote_ports::RejectReason;
    use std::time::Duration;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn events_become_named_series_with_their_labels() {
        let m = PrometheusMetrics::new();
        let e = ElectionId::generate();
        m.record(MetricEvent::VotesAccepted {
            election: e,
            count: 3,
        });
        m.record(MetricEvent::VotesAccepted {
            election: e,
            count: 2,
        });
        m.record(MetricEvent::VoteRejected {
            reason: RejectReason::Duplicate,
        });
        m.record(MetricEvent::PublishBatch {
            votes: 10,
            failed: 1,
            latency: Duration::from_millis(3),
        });
        m.record(MetricEvent::HttpRequest {
            route: "cast_vote",
            status: 202,
            latency: Duration::from_millis(4),
        });
        let text = m.render();
        assert_eq!(
            value(
                &text,
                "livevote_http_requests_total{route=\"cast_vote\",status=\"202\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "livevote_http_request_duration_seconds_count{route=\"cast_vote\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                &format!("livevote_votes_accepted_total{{election=\"{e}\"}}")
            ),
            Some(5.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "livevote_votes_rejected_total{reason=\"duplicate\"}"),
            Some(1.0)
        );
        assert_eq!(value(&text, "livevote_published_votes_total"), Some(9.0));
        assert_eq!(value(&text, "livevote_publish_failed_votes_total"), Some(1.0));
        assert_eq!(value(&text, "livevote_publish_batch_seconds_count"), Some(1.0));
        assert_eq!(
            value(&text, "livevote_publish_batch_seconds_bucket{le=\"0.005\"}"),
            Some(1.0),
            "a histogram with buckets: {text}"
        );
        // Another instance has series of its own.
        assert!(
            !PrometheusMetrics::new()
                .render()
                .contains("livevote_votes_accepted_total")
        );
    }
}
