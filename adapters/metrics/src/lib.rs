//! Metrics adapter: every [`MetricEvent`](livevote_ports::MetricEvent)
//! becomes Prometheus series (rendered by the services' `/metrics` routes),
//! and, when configured, `votes.accepted` / `votes.persisted` per election
//! are summed and published to CloudWatch in the background.

pub mod cloudwatch;
mod prometheus;

use livevote_ports::{MetricEvent, Metrics};

pub use cloudwatch::{CloudWatchConfig, CloudWatchMetrics, FlushTask};
pub use prometheus::PrometheusMetrics;

/// Prometheus always, CloudWatch when configured.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub prometheus: PrometheusMetrics,
    pub cloudwatch: Option<CloudWatchMetrics>,
}

impl Telemetry {
    /// Prometheus, plus CloudWatch under `cloudwatch_namespace` when one is
    /// given (at `cloudwatch_endpoint`, or AWS), with its background flusher
    /// started; the flusher's `shutdown` sends the last sums.
    pub async fn build(
        cloudwatch_namespace: Option<&str>,
        cloudwatch_endpoint: Option<&str>,
    ) -> (Self, Option<FlushTask>) {
        let prometheus = PrometheusMetrics::new();
        let Some(namespace) = cloudwatch_namespace else {
            return (
                Self {
                    prometheus,
                    cloudwatch: None,
                },
                None,
            );
        };
        let cw = CloudWatchMetrics::new(
            cloudwatch::client(cloudwatch_endpoint).await,
            CloudWatchConfig {
                namespace: namespace.to_owned(),
                ..CloudWatchConfig::default()
            },
        );
        let flusher = cw.start();
        (
            Self {
                prometheus,
                cloudwatch: Some(cw),
            },
            Some(flusher),
        )
    }
}

impl Metrics for Telemetry {
    fn record(&self, event: MetricEvent) {
        if let Some(cw) = &self.cloudwatch {
            cw.record(event.clone());
        }
        self.prometheus.record(event);
    }
}
