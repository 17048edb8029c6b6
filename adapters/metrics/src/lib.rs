//! Metrics adapter: every [`MetricEvent`](livevote_ports::MetricEvent)
//! becomes Prometheus series (rendered by the services' `/metrics` routes),
//! and, when configured, `votes.accepted` / `votes.persisted` per election
//! are summed and published to CloudWatch in the background.

pub mod cloudwatch;
pub mod process;
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

impl Metrics for Telemetry {
    fn record(&self, event: MetricEvent) {
        if let Some(cw) = &self.cloudwatch {
            cw.record(event.clone());
        }
        self.prometheus.record(event);
    }
}
