//! The persist-batch use case.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::faults::crash_point;
use livevote_domain::{Election, ElectionId, ElectionStatus, VoteId, VoteRecord, check_references};
use livevote_ports::{
    CatalogError, Clock, Delivery, DeliveryContent, DeliveryTag, ElectionCatalog, MetricEvent, Metrics,
    PersistOutcome, PoisonReason, QueueError, StoreError, VoteSource, VoteStore,
};

/// Why a batch was not persisted. Nothing was acknowledged: the messages
/// come back after their visibility timeout.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("vote store failed: {0}")]
    Store(#[source] StoreError),
    #[error("election catalog failed: {0}")]
    Catalog(#[source] CatalogError),
    #[error("queue failed: {0}")]
    Queue(#[source] QueueError),
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub messages: usize,
    pub votes: usize,
    pub inserted: usize,
    pub already_persisted: usize,
    pub conflicts: usize,
    /// Messages left unacknowledged for the dead-letter queue.
    pub poison: usize,
    /// Messages whose delete failed (they will be redelivered, harmlessly).
    pub ack_failed: usize,
}

/// Settings of one receive-and-persist round.
#[derive(Debug, Clone, Copy)]
pub struct PersistConfig {
    /// Messages asked for per receive (SQS allows up to 10).
    pub receive_max: usize,
    /// Long-polling wait per receive.
    pub receive_wait: Duration,
}

impl Default for PersistConfig {
    fn default() -> Self {
        Self {
            receive_max: 10,
            receive_wait: Duration::from_secs(20),
        }
    }
}

struct Inner<Source, Store, Catalog, Time, Meter> {
    source: Source,
    store: Store,
    catalog: Catalog,
    clock: Time,
    metrics: Meter,
    config: PersistConfig,
    /// Elections whose candidates can no longer change (voting started), by id.
    frozen: Mutex<HashMap<ElectionId, Arc<Election>>>,
}

/// Persists batches of queued votes. Cheap to clone.
pub struct PersistService<Source, Store, Catalog, Time, Meter> {
    inner: Arc<Inner<Source, Store, Catalog, Time, Meter>>,
}

impl<Source, Store, Catalog, Time, Meter> Clone for PersistService<Source, Store, Catalog, Time, Meter> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<Source, Store, Catalog, Time, Meter> std::fmt::Debug
    for PersistService<Source, Store, Catalog, Time, Meter>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistService").finish_non_exhaustive()
    }
}

/// Most elections whose candidates are remembered; past it the memo starts over.
const FROZEN_CAPACITY: usize = 10_000;

impl<Source, Store, Catalog, Time, Meter> PersistService<Source, Store, Catalog, Time, Meter>
where
    Source: VoteSource,
    Store: VoteStore,
    Catalog: ElectionCatalog,
    Time: Clock,
    Meter: Metrics,
{
    pub fn new(
        source: Source,
        store: Store,
        catalog: Catalog,
        clock: Time,
        metrics: Meter,
        config: PersistConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                store,
                catalog,
                clock,
                metrics,
                config,
                frozen: Mutex::default(),
            }),
        }
    }

    /// The queue this service consumes, for the runner's receivers and heartbeats.
    pub fn source(&self) -> &Source {
        &self.inner.source
    }

    /// Receives one batch (waiting up to the configured long-poll time) and
    /// persists it.
    ///
    /// # Errors
    /// [`ProcessError`]: nothing of the batch was acknowledged.
    pub async fn run_once(&self) -> Result<BatchSummary, ProcessError> {
        let c = self.inner.config;
        let deliveries = self
            .inner
            .source
            .receive(c.receive_max, c.receive_wait)
            .await
            .map_err(ProcessError::Queue)?;
        self.process(&deliveries).await
    }

    /// Persists received messages and acknowledges the good ones after the commit.
    ///
    /// # Errors
    /// [`ProcessError`]: nothing was acknowledged.
    pub async fn process(&self, deliveries: &[Delivery]) -> Result<BatchSummary, ProcessError> {
        let started = tokio::time::Instant::now();
        let mut summary = BatchSummary {
            messages: deliveries.len(),
            ..BatchSummary::default()
        };
        if deliveries.is_empty() {
            return Ok(summary);
        }
        crash_point!("processor-after-receive");
        let oldest_sent = deliveries.iter().filter_map(|d| d.sent_at).min();
        #[cfg(feature = "failpoints")]
        let received: HashMap<String, (String, u32)> = deliveries
            .iter()
            .map(|d| (d.tag.0.clone(), (d.message_id.clone(), d.receive_count)))
            .collect();
        // Poison is set apart and never acknowledged.
        let mut good: Vec<(&DeliveryTag, &[VoteRecord])> = Vec::with_capacity(deliveries.len());
        let mut seen = HashMap::new();
        for d in deliveries {
            match &d.content {
                DeliveryContent::Votes(votes) => match self.check_references(votes, &mut seen).await? {
                    None => good.push((&d.tag, votes)),
                    Some(why) => self.poison(
                        &d.message_id,
                        d.receive_count,
                        &PoisonReason::UnknownReference(why),
                        &mut summary,
                    ),
                },
                DeliveryContent::Poison(reason) => {
                    self.poison(&d.message_id, d.receive_count, reason, &mut summary)
                }
            }
        }
        // One transaction for the whole batch. A reference the store refuses
        // (a race with the check above) poisons its message, and the rest is retried once.
        let report = loop {
            let votes: Vec<VoteRecord> = good.iter().flat_map(|(_, v)| v.iter().cloned()).collect();
            if votes.is_empty() {
                break Vec::new();
            }
            match self.inner.store.persist_batch(&votes).await {
                Ok(report) => break votes.into_iter().zip(report.outcomes).collect::<Vec<_>>(),
                Err(StoreError::UnknownReference(ids)) if !ids.is_empty() => {
                    let bad: HashSet<VoteId> = ids.into_iter().collect();
                    let before = good.len();
                    good.retain(|(tag, votes)| {
                        let poisoned = votes.iter().any(|v| bad.contains(&v.vote.vote_id));
                        if poisoned {
                            tracing::warn!(tag = %tag.0, "store refused references; message left for the dead-letter queue");
                        }
                        !poisoned
                    });
                    summary.poison += before - good.len();
                    self.inner.metrics.record(MetricEvent::PoisonMessages {
                        count: (before - good.len()) as u64,
                    });
                    if good.len() == before {
                        return Err(ProcessError::Store(StoreError::UnknownReference(
                            bad.into_iter().collect(),
                        )));
                    }
                }
                Err(e) => return Err(ProcessError::Store(e)),
            }
        };
        crash_point!("processor-after-commit");
        // Committed: now, and only now, delete exactly these messages.
        let tags: Vec<DeliveryTag> = good.iter().map(|(t, _)| (*t).clone()).collect();
        #[cfg(feature = "failpoints")]
        let tags = {
            let (delete, again) = crate::faults::redeliveries(
                tags.into_iter()
                    .map(|t| {
                        let (id, n) = received.get(&t.0).cloned().unwrap_or_default();
                        (t, id, n)
                    })
                    .collect(),
            );
            if !again.is_empty()
                && let Err(e) = self.inner.source.extend_visibility(&again, Duration::ZERO).await
            {
                tracing::warn!(error = %e, "failpoint processor-redeliver: could not hand messages back");
            }
            delete
        };
        if !tags.is_empty() {
            match self.inner.source.ack(&tags).await {
                Ok(ack) => summary.ack_failed = ack.failed.len(),
                Err(e) => {
                    // Committed but not deleted: redelivery will find every vote already stored.
                    tracing::warn!(error = %e, messages = tags.len(), "delete after commit failed; messages will be redelivered");
                    summary.ack_failed = tags.len();
                }
            }
        }
        self.account(&report, &mut summary);
        if let Some(sent) = oldest_sent
            && let Ok(lag) = (self.inner.clock.now() - sent).to_std()
        {
            self.inner.metrics.record(MetricEvent::QueueLag { lag });
        }
        self.inner.metrics.record(MetricEvent::PersistBatch {
            votes: summary.votes,
            messages: summary.messages,
            latency: started.elapsed(),
        });
        Ok(summary)
    }

    fn poison(
        &self,
        message_id: &str,
        receive_count: u32,
        reason: &PoisonReason,
        summary: &mut BatchSummary,
    ) {
        tracing::warn!(message_id, receive_count, %reason, "poison message left for the dead-letter queue");
        summary.poison += 1;
        self.inner
            .metrics
            .record(MetricEvent::PoisonMessages { count: 1 });
    }

    fn account(&self, report: &[(VoteRecord, PersistOutcome)], summary: &mut BatchSummary) {
        let mut persisted: HashMap<ElectionId, u64> = HashMap::new();
        let mut duplicates: HashMap<ElectionId, u64> = HashMap::new();
        let mut redeliveries = 0u64;
        for (record, outcome) in report {
            let election = record.vote.election_id;
            match outcome {
                PersistOutcome::Inserted => *persisted.entry(election).or_default() += 1,
                PersistOutcome::AlreadyPersisted => redeliveries += 1,
                PersistOutcome::Conflict { existing } => {
                    tracing::info!(
                        vote_id = %record.vote.vote_id,
                        existing = %existing,
                        correlation_id = %record.correlation_id,
                        "second vote of a voter dropped"
                    );
                    *duplicates.entry(election).or_default() += 1;
                }
            }
        }
        summary.votes = report.len();
        summary.inserted = persisted.values().sum::<u64>() as usize;
        summary.conflicts = duplicates.values().sum::<u64>() as usize;
        summary.already_persisted = redeliveries as usize;
        let m = &self.inner.metrics;
        for (election, count) in persisted {
            m.record(MetricEvent::VotesPersisted { election, count });
        }
        for (election, count) in duplicates {
            m.record(MetricEvent::DuplicatesDropped { election, count });
        }
        if redeliveries > 0 {
            m.record(MetricEvent::Redeliveries { count: redeliveries });
        }
    }

    /// Why a message's votes cannot be stored, if they cannot. `seen` holds
    /// the elections already looked up for this batch, so each is read from
    /// the catalog at most once per batch, whatever its status.
    async fn check_references(
        &self,
        votes: &[VoteRecord],
        seen: &mut HashMap<ElectionId, Option<Arc<Election>>>,
    ) -> Result<Option<String>, ProcessError> {
        for v in votes {
            let vote = &v.vote;
            let election = match seen.get(&vote.election_id) {
                Some(e) => e.clone(),
                None => {
                    let e = self.election(vote.election_id).await?;
                    seen.insert(vote.election_id, e.clone());
                    e
                }
            };
            if let Err(broken) = check_references(election.as_deref(), vote) {
                return Ok(Some(broken.to_string()));
            }
        }
        Ok(None)
    }

    /// The election, remembered once its candidates are frozen (voting started).
    async fn election(&self, id: ElectionId) -> Result<Option<Arc<Election>>, ProcessError> {
        if let Some(e) = self.inner.frozen.lock().expect("frozen lock").get(&id) {
            return Ok(Some(e.clone()));
        }
        let Some(election) = self.inner.catalog.get(id).await.map_err(ProcessError::Catalog)? else {
            return Ok(None);
        };
        let election = Arc::new(election);
        let status = election.effective_status(self.inner.clock.now());
        if !matches!(status, ElectionStatus::Draft | ElectionStatus::Scheduled) {
            let mut frozen = self.inner.frozen.lock().expect("frozen lock");
            if frozen.len() >= FROZEN_CAPACITY {
                frozen.clear();
            }
            frozen.insert(id, election.clone());
        }
        Ok(Some(election))
    }
}
