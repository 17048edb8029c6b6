//! The processor's loop: receivers, a batcher, visibility heartbeats,
//! backoff and an orderly stop. The delivery semantics are written down in
//! `apps/processor/design.md`.
//!
//! ```text
//! receiver x N --(bounded channel)--> batcher --process()--> store, then ack
//!      ^                                 |
//!      +------ paused while unhealthy ---+   heartbeat: extend visibility of the batch in hand
//! ```
//!
//! - Receivers long-poll and hand whole receives to the batcher through a
//!   bounded channel: when the batcher is slow, they block instead of
//!   receiving more (backpressure, no unbounded buffer).
//! - The batcher takes up to `max_batch_votes` votes, or what arrived within
//!   `linger` of the first message, and persists them with one
//!   [`PersistService::process`] call (one transaction, then the deletes);
//!   up to `max_in_flight` batches run at once, each on its own connection.
//! - While a batch is in hand, its messages' visibility is extended every
//!   `extend_every`, so a slow database never lets them time out, be
//!   received again, and creep towards the dead-letter queue.
//! - When a batch fails (database or queue down), it is kept and retried
//!   with backoff, and the receivers pause: nothing is acknowledged, nothing
//!   more is taken.
//! - Stop: receivers stop at once (an interrupted long poll at worst hides a
//!   message until its visibility timeout); the batcher persists what it has
//!   received, acknowledges it, and returns. It never abandons a batch
//!   half-written: a batch is one transaction.

use std::future::Future;
use std::time::Duration;

use livevote_ports::{Clock, Delivery, DeliveryContent, ElectionCatalog, Metrics, VoteSource, VoteStore};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::service::{BatchSummary, PersistService};

/// Runner settings.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// Concurrent long-polling receivers.
    pub receivers: usize,
    /// Messages asked for per receive (SQS: at most 10).
    pub receive_max: usize,
    /// Long-poll wait per receive (SQS: at most 20 s).
    pub receive_wait: Duration,
    /// Most votes persisted in one transaction.
    pub max_batch_votes: usize,
    /// Batches persisted at once (each on its own database connection).
    pub max_in_flight: usize,
    /// Longest the batcher waits for a batch to fill after its first message.
    pub linger: Duration,
    /// How often the visibility of the batch in hand is extended.
    pub extend_every: Duration,
    /// By how much (from now) each extension hides the messages.
    pub extension: Duration,
    /// Longest pause between retries of a failed batch.
    pub max_backoff: Duration,
    /// At stop, how long a failing final batch is retried before it is left
    /// to the queue (its messages come back after their visibility timeout).
    pub stop_grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            receivers: 4,
            receive_max: 10,
            receive_wait: Duration::from_secs(20),
            max_batch_votes: 2000,
            max_in_flight: 4,
            linger: Duration::from_millis(50),
            extend_every: Duration::from_secs(10),
            extension: Duration::from_secs(30),
            max_backoff: Duration::from_secs(5),
            stop_grace: Duration::from_secs(20),
        }
    }
}

/// What a run did, for the log line at stop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub batches: u64,
    pub votes: u64,
    pub inserted: u64,
    pub failed_attempts: u64,
}

fn votes_in(d: &Delivery) -> usize {
    match &d.content {
        DeliveryContent::Votes(v) => v.len(),
        DeliveryContent::Poison(_) => 0,
    }
}

/// Runs receivers and the batcher until `stop` resolves, then finishes the
/// batch in hand and returns.
pub async fn run<Source, Store, Catalog, Time, Meter>(
    service: PersistService<Source, Store, Catalog, Time, Meter>,
    config: RunnerConfig,
    stop: impl Future<Output = ()> + Send,
) -> RunReport
where
    Source: VoteSource + Clone,
    Store: VoteStore,
    Catalog: ElectionCatalog,
    Time: Clock,
    Meter: Metrics,
{
    let (tx, rx) = mpsc::channel::<Vec<Delivery>>(config.receivers.max(1) * 2);
    let (stopping_tx, stopping) = watch::channel(false);
    let (healthy_tx, healthy) = watch::channel(true);
    let mut receivers = Vec::new();
    for _ in 0..config.receivers.max(1) {
        receivers.push(tokio::spawn(receive_loop(
            service.source().clone(),
            config,
            tx.clone(),
            stopping.clone(),
            healthy.clone(),
        )));
    }
    drop(tx);
    let batcher = batch_loop(service, config, rx, healthy_tx, stopping.clone());
    tokio::pin!(batcher);
    tokio::pin!(stop);
    let report = tokio::select! {
        report = &mut batcher => report,
        () = &mut stop => {
            tracing::info!("stopping: no more receives; finishing the batch in hand");
            stopping_tx.send_replace(true);
            batcher.await
        }
    };
    for r in receivers {
        if let Err(error) = r.await {
            tracing::error!(%error, "a receiver task failed");
        }
    }
    report
}

/// First delay after a failed receive, and after a batch that did not persist.
const RECEIVE_RETRY_FIRST: Duration = Duration::from_millis(100);
const PERSIST_RETRY_FIRST: Duration = Duration::from_millis(200);

/// Retry delays doubling from `first` up to `config.max_backoff`, jittered,
/// without end: the loops that use them stop on their own terms.
fn retry_delays(first: Duration, config: &RunnerConfig) -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(config.max_backoff)
        .with_jitter()
        .without_max_times()
        .build()
}

async fn receive_loop<Source: VoteSource>(
    source: Source,
    config: RunnerConfig,
    tx: mpsc::Sender<Vec<Delivery>>,
    mut stopping: watch::Receiver<bool>,
    mut healthy: watch::Receiver<bool>,
) {
    let mut delays = retry_delays(RECEIVE_RETRY_FIRST, &config);
    loop {
        // Paused while the batcher cannot persist: taking more would only
        // let their visibility run out and count receives towards the DLQ.
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            r = healthy.wait_for(|h| *h) => if r.is_err() { return },
        }
        let received = tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            r = source.receive(config.receive_max, config.receive_wait) => r,
        };
        match received {
            Ok(deliveries) if deliveries.is_empty() => {}
            Ok(deliveries) => {
                delays = retry_delays(RECEIVE_RETRY_FIRST, &config);
                // Blocks while the batcher is busy: backpressure.
                if tx.send(deliveries).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let delay = delays.next().unwrap_or(config.max_backoff);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "receive failed");
                tokio::select! {
                    _ = stopping.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn batch_loop<Source, Store, Catalog, Time, Meter>(
    service: PersistService<Source, Store, Catalog, Time, Meter>,
    config: RunnerConfig,
    mut rx: mpsc::Receiver<Vec<Delivery>>,
    healthy: watch::Sender<bool>,
    stopping: watch::Receiver<bool>,
) -> RunReport
where
    Source: VoteSource,
    Store: VoteStore,
    Catalog: ElectionCatalog,
    Time: Clock,
    Meter: Metrics,
{
    let healthy = std::sync::Arc::new(healthy);
    let mut report = RunReport::default();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut carried: Option<Vec<Delivery>> = None;
    loop {
        // At most `max_in_flight` batches at once: wait for one to finish.
        while in_flight.len() >= config.max_in_flight.max(1) {
            if let Some(done) = in_flight.join_next().await {
                add(&mut report, done);
            }
        }
        let first = match carried.take() {
            Some(d) => d,
            None => match rx.recv().await {
                Some(d) => d,
                None => break,
            },
        };
        let mut batch = first;
        let mut votes: usize = batch.iter().map(votes_in).sum();
        let deadline = Instant::now() + config.linger;
        while votes < config.max_batch_votes {
            let next = tokio::select! {
                d = rx.recv() => d,
                () = tokio::time::sleep_until(deadline) => break,
            };
            let Some(more) = next else { break };
            let more_votes: usize = more.iter().map(votes_in).sum();
            if votes + more_votes > config.max_batch_votes && votes > 0 {
                carried = Some(more);
                break;
            }
            votes += more_votes;
            batch.extend(more);
        }
        let (service, healthy, stopping) = (service.clone(), healthy.clone(), stopping.clone());
        in_flight.spawn(async move {
            persist_with_heartbeat(&service, &config, batch, &healthy, &stopping).await
        });
    }
    while let Some(done) = in_flight.join_next().await {
        add(&mut report, done);
    }
    report
}

fn add(report: &mut RunReport, done: Result<(Option<BatchSummary>, u64), tokio::task::JoinError>) {
    match done {
        Ok((summary, failed_attempts)) => {
            report.failed_attempts += failed_attempts;
            if let Some(s) = summary {
                report.batches += 1;
                report.votes += s.votes as u64;
                report.inserted += s.inserted as u64;
            }
        }
        Err(error) => tracing::error!(%error, "a batch task failed; its messages return to the queue"),
    }
}

/// Persists one batch, retrying with backoff while it fails, and keeps its
/// messages hidden meanwhile. `None` when it was given up at stop; with the
/// number of failed attempts.
async fn persist_with_heartbeat<Source, Store, Catalog, Time, Meter>(
    service: &PersistService<Source, Store, Catalog, Time, Meter>,
    config: &RunnerConfig,
    batch: Vec<Delivery>,
    healthy: &watch::Sender<bool>,
    stopping: &watch::Receiver<bool>,
) -> (Option<BatchSummary>, u64)
where
    Source: VoteSource,
    Store: VoteStore,
    Catalog: ElectionCatalog,
    Time: Clock,
    Meter: Metrics,
{
    let tags: Vec<_> = batch.iter().map(|d| d.tag.clone()).collect();
    let source = service.source();
    let heartbeat = async {
        let mut tick = tokio::time::interval_at(Instant::now() + config.extend_every, config.extend_every);
        loop {
            tick.tick().await;
            if let Err(error) = source.extend_visibility(&tags, config.extension).await {
                tracing::warn!(%error, messages = tags.len(), "could not extend visibility");
            }
        }
    };
    let mut failed_attempts = 0u64;
    let work = async {
        let mut delays = retry_delays(PERSIST_RETRY_FIRST, config);
        let mut given_up_at: Option<Instant> = None;
        loop {
            match service.process(&batch).await {
                Ok(summary) => {
                    healthy.send_if_modified(|h| !std::mem::replace(h, true));
                    return Some(summary);
                }
                Err(error) => {
                    failed_attempts += 1;
                    healthy.send_if_modified(|h| std::mem::replace(h, false));
                    let delay = delays.next().unwrap_or(config.max_backoff);
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, messages = batch.len(),
                        "batch not persisted; nothing acknowledged, retrying");
                    if *stopping.borrow() {
                        let since = *given_up_at.get_or_insert_with(Instant::now);
                        if since.elapsed() >= config.stop_grace {
                            tracing::error!(
                                messages = batch.len(),
                                "stopping with a batch not persisted; its messages return to the queue"
                            );
                            return None;
                        }
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    };
    let summary = tokio::select! {
        r = work => r,
        () = heartbeat => unreachable!("the heartbeat never ends"),
    };
    (summary, failed_attempts)
}
