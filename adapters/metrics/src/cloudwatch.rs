//! CloudWatch publishing of `votes.accepted` and `votes.persisted` per
//! election: events only add to an in-memory sum (a short mutex, never I/O),
//! and a background task sends the sums with `PutMetricData` every flush
//! interval. A failed flush is logged and its sums are kept for the next one,
//! so nothing is lost and the vote path never waits on CloudWatch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use livevote_domain::ElectionId;
use livevote_ports::{MetricEvent, Metrics};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The metric names published (the CloudWatch alarms in `infra/terraform` use them).
pub const VOTES_ACCEPTED: &str = "votes.accepted";
pub const VOTES_PERSISTED: &str = "votes.persisted";
/// The dimension naming the election.
pub const ELECTION_DIMENSION: &str = "Election";
/// `PutMetricData` takes at most 1,000 data points a call.
const MAX_DATUMS_PER_CALL: usize = 1000;

#[derive(Debug, Clone)]
pub struct CloudWatchConfig {
    pub namespace: String,
    pub flush_interval: Duration,
}

impl Default for CloudWatchConfig {
    fn default() -> Self {
        Self {
            namespace: "Livevote".to_owned(),
            flush_interval: Duration::from_secs(5),
        }
    }
}

type Sums = HashMap<(&'static str, ElectionId), u64>;

/// Aggregates events and publishes them in the background. Cheap to clone;
/// clones share the sums.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    sums: Arc<Mutex<Sums>>,
    client: Client,
    config: CloudWatchConfig,
}

/// The background flusher; [`FlushTask::shutdown`] flushes one last time.
#[derive(Debug)]
pub struct FlushTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FlushTask {
    /// Stops the task after a final flush.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "CloudWatch flush task ended abnormally");
        }
    }
}

impl CloudWatchMetrics {
    pub fn new(client: Client, config: CloudWatchConfig) -> Self {
        Self {
            sums: Arc::default(),
            client,
            config,
        }
    }

    /// Starts flushing every `flush_interval`.
    pub fn start(&self) -> FlushTask {
        let (stop, mut stopped) = watch::channel(false);
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(me.config.flush_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => {
                        me.flush().await;
                        return;
                    }
                }
                me.flush().await;
            }
        });
        FlushTask { stop, task }
    }

    fn add(&self, name: &'static str, election: ElectionId, count: u64) {
        if count == 0 {
            return;
        }
        let mut sums = self
            .sums
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *sums.entry((name, election)).or_default() += count;
    }

    /// Sends what was summed since the last flush. On failure the sums go
    /// back, to be sent with the next flush. Returns the data points sent.
    pub async fn flush(&self) -> usize {
        let taken: Sums = std::mem::take(
            &mut *self
                .sums
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if taken.is_empty() {
            return 0;
        }
        let now = DateTime::from(SystemTime::now());
        let entries: Vec<((&'static str, ElectionId), u64)> = taken.into_iter().collect();
        let mut sent = 0;
        for chunk in entries.chunks(MAX_DATUMS_PER_CALL) {
            let data: Vec<MetricDatum> = chunk
                .iter()
                .map(|((name, election), value)| {
                    MetricDatum::builder()
                        .metric_name(*name)
                        .dimensions(
                            Dimension::builder()
                                .name(ELECTION_DIMENSION)
                                .value(election.to_string())
                                .build(),
                        )
                        .timestamp(now)
                        .unit(StandardUnit::Count)
                        .value(*value as f64)
                        .build()
                })
                .collect();
            match self
                .client
                .put_metric_data()
                .namespace(&self.config.namespace)
                .set_metric_data(Some(data))
                .send()
                .await
            {
                Ok(_) => sent += chunk.len(),
                Err(e) => {
                    tracing::warn!(
                        error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&e),
                        points = chunk.len(),
                        "CloudWatch PutMetricData failed; keeping the sums for the next flush"
                    );
                    for ((name, election), value) in chunk {
                        self.add(name, *election, *value);
                    }
                }
            }
        }
        sent
    }
}

impl Metrics for CloudWatchMetrics {
    fn record(&self, event: MetricEvent) {
        match event {
            MetricEvent::VotesAccepted { election, count } => self.add(VOTES_ACCEPTED, election, count),
            MetricEvent::VotesPersisted { election, count } => self.add(VOTES_PERSISTED, election, count),
            _ => {}
        }
    }
}

/// A CloudWatch client from the standard AWS environment, pointed at
/// `endpoint` when given (the local endpoint of `infra/local/sqs-local`).
pub async fn client(endpoint: Option<&str>) -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let mut builder = aws_sdk_cloudwatch::config::Builder::from(&shared);
    if let Some(url) = endpoint {
        builder = builder.endpoint_url(url);
    }
    Client::from_conf(builder.build())
}

/// A CloudWatch client for a local endpoint, with the static `test`
/// credentials and region `us-east-1` that local servers accept.
pub fn local_client(endpoint: &str) -> Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "livevote-local",
        ))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}
