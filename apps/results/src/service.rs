//! The read-results and reconcile use cases.

use std::sync::Arc;
use std::time::Duration;

use livevote_domain::{
    CandidateId, Election, ElectionId, ElectionStatus, Percentage, ReconciliationCounts, Tally, Timestamp,
    Verdict,
};
use livevote_ports::{
    CatalogError, Clock, DedupError, ElectionCatalog, LiveTallies, QueueError, QueueInspector, StoreError,
    VoteStore,
};

/// Why results or reconciliation could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("election {0} not found")]
    NotFound(ElectionId),
    #[error("{what} unavailable")]
    Unavailable {
        what: &'static str,
        #[source]
        source: anyhow::Error,
    },
}

impl From<CatalogError> for ResultsError {
    fn from(e: CatalogError) -> Self {
        ResultsError::Unavailable {
            what: "election catalog",
            source: anyhow::Error::new(e),
        }
    }
}
impl From<DedupError> for ResultsError {
    fn from(e: DedupError) -> Self {
        ResultsError::Unavailable {
            what: "live tallies",
            source: anyhow::Error::new(e),
        }
    }
}
impl From<StoreError> for ResultsError {
    fn from(e: StoreError) -> Self {
        ResultsError::Unavailable {
            what: "vote store",
            source: anyhow::Error::new(e),
        }
    }
}
impl From<QueueError> for ResultsError {
    fn from(e: QueueError) -> Self {
        ResultsError::Unavailable {
            what: "vote queue",
            source: anyhow::Error::new(e),
        }
    }
}

/// Where counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TallySource {
    /// Accepted votes, live (fresh within a second).
    Live,
    /// Persisted votes, authoritative.
    Persisted,
}

/// Results of one election at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ElectionResults {
    pub election: Arc<Election>,
    /// Effective status at `generated_at`.
    pub status: ElectionStatus,
    /// `None` while results are embargoed: no counts leave the service.
    pub tally: Option<Tally>,
    /// One per candidate, in the election's order; empty while embargoed.
    pub percentages: Vec<Percentage>,
    pub source: TallySource,
    /// Closed, drained and reconciled without loss: counts will not change.
    pub is_final: bool,
    pub embargoed: bool,
    pub generated_at: Timestamp,
}

/// Live vs persisted for one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateDrift {
    pub candidate_id: CandidateId,
    pub accepted: u64,
    pub persisted: u64,
}

/// The reconciliation of one election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub election_id: ElectionId,
    pub counts: ReconciliationCounts,
    pub verdict: Verdict,
    /// Redelivered copies ignored by the store (informational).
    pub redeliveries: u64,
    pub oldest_queued_age: Option<Duration>,
    pub dead_letter_messages: u64,
    pub per_candidate: Vec<CandidateDrift>,
    pub generated_at: Timestamp,
}

impl Reconciliation {
    /// Whether persisted counts may be published as final now (see `ReconciliationCounts::allows_final`).
    pub fn allows_final(&self) -> bool {
        self.counts.allows_final()
    }
}

struct Inner<C, T, S, Q, K> {
    catalog: C,
    live: T,
    store: S,
    queue: Q,
    clock: K,
}

/// Reads results and reconciles. Cheap to clone.
pub struct ResultsService<C, T, S, Q, K> {
    inner: Arc<Inner<C, T, S, Q, K>>,
}

impl<C, T, S, Q, K> Clone for ResultsService<C, T, S, Q, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C, T, S, Q, K> std::fmt::Debug for ResultsService<C, T, S, Q, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsService").finish_non_exhaustive()
    }
}

/// What a rebuild of the live tallies wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    /// The live tallies now, equal to the persisted ones.
    pub tally: Tally,
    /// Whether no vote was queued when the store was read (the rebuild is then exact).
    pub queue_was_drained: bool,
}

/// Decimals of published percentages (33.3 %).
pub const PERCENT_DECIMALS: u8 = 1;

impl<C, T, S, Q, K> ResultsService<C, T, S, Q, K>
where
    C: ElectionCatalog,
    T: LiveTallies,
    S: VoteStore,
    Q: QueueInspector,
    K: Clock,
{
    pub fn new(catalog: C, live: T, store: S, queue: Q, clock: K) -> Self {
        Self {
            inner: Arc::new(Inner {
                catalog,
                live,
                store,
                queue,
                clock,
            }),
        }
    }

    async fn election(&self, id: ElectionId) -> Result<Election, ResultsError> {
        self.inner
            .catalog
            .get(id)
            .await?
            .ok_or(ResultsError::NotFound(id))
    }

    /// The results to show: live counts while voting, persisted counts once
    /// final, no counts while embargoed.
    ///
    /// # Errors
    /// [`ResultsError`].
    pub async fn results(&self, id: ElectionId) -> Result<ElectionResults, ResultsError> {
        let election = self.election(id).await?;
        let now = self.inner.clock.now();
        let status = election.effective_status(now);
        // Final only for a closed election whose reconciliation allows it.
        let is_final = if status == ElectionStatus::Closed {
            self.reconcile_election(&election, now).await?.allows_final()
        } else {
            false
        };
        let source = if is_final {
            TallySource::Persisted
        } else {
            TallySource::Live
        };
        let embargoed = election.is_embargoed();
        let (tally, percentages) = if embargoed {
            (None, Vec::new())
        } else {
            let counts = match source {
                TallySource::Persisted => self.inner.store.persisted_tallies(id).await?,
                TallySource::Live => self.inner.live.accepted_counts(id).await?,
            };
            let tally = Tally::for_election(&election, &counts);
            let percentages = tally.percentages(PERCENT_DECIMALS);
            (Some(tally), percentages)
        };
        Ok(ElectionResults {
            election: Arc::new(election),
            status,
            tally,
            percentages,
            source,
            is_final,
            embargoed,
            generated_at: now,
        })
    }

    /// Rebuilds an election's live accepted tallies from the persisted ones,
    /// after the live store lost its data (DESIGN.md invariant 6).
    ///
    /// Safe at any time: votes accepted but not yet persisted are left out,
    /// so the rebuilt `A` can only be short, which reconciliation shows as a
    /// surplus, never as a loss. Exact when the queue was drained when the
    /// rebuild read the store ([`Rebuild::queue_was_drained`]).
    ///
    /// # Errors
    /// [`ResultsError`]; on error the live tallies may be partly replaced, and
    /// running the rebuild again repairs them.
    pub async fn rebuild_live_tallies(&self, id: ElectionId) -> Result<Rebuild, ResultsError> {
        let election = self.election(id).await?;
        let queue_was_drained = self.inner.queue.stats().await?.pending_messages() == 0;
        let counts = self.inner.store.persisted_tallies(id).await?;
        self.inner.live.replace_counts(id, &counts).await?;
        Ok(Rebuild {
            tally: Tally::for_election(&election, &counts),
            queue_was_drained,
        })
    }

    /// Accepted vs persisted vs dropped vs dead-lettered vs in flight.
    ///
    /// # Errors
    /// [`ResultsError`].
    pub async fn reconcile(&self, id: ElectionId) -> Result<Reconciliation, ResultsError> {
        let election = self.election(id).await?;
        self.reconcile_election(&election, self.inner.clock.now()).await
    }

    async fn reconcile_election(
        &self,
        election: &Election,
        now: Timestamp,
    ) -> Result<Reconciliation, ResultsError> {
        let id = election.id();
        // Order matters. Accepted first: every vote it counts was already in
        // the queue. Then the queue: a counted vote is still there (pending),
        // or was deleted after its commit (so the store, read last, has it),
        // or moved to the dead-letter queue. Reading in another order could
        // report a vote as lost while it is merely on its way.
        let live = Tally::for_election(election, &self.inner.live.accepted_counts(id).await?);
        let stats = self.inner.queue.stats().await?;
        let dead = self.inner.queue.dead_lettered_votes().await?;
        let persisted = Tally::for_election(election, &self.inner.store.persisted_tallies(id).await?);
        let store = self.inner.store.counts(id).await?;
        let counts = ReconciliationCounts {
            accepted: live.total(),
            persisted: store.persisted,
            duplicates: store.duplicates,
            dead_lettered: dead.iter().filter(|(e, _)| *e == id).map(|(_, n)| n).sum(),
            in_flight: stats.pending_messages(),
        };
        let per_candidate = election
            .candidates()
            .iter()
            .map(|c| CandidateDrift {
                candidate_id: c.id(),
                accepted: live.votes_for(c.id()),
                persisted: persisted.votes_for(c.id()),
            })
            .collect();
        Ok(Reconciliation {
            election_id: id,
            counts,
            verdict: counts.verdict(),
            redeliveries: store.redeliveries,
            oldest_queued_age: stats.oldest_age,
            dead_letter_messages: stats.dead_letter_messages,
            per_candidate,
            generated_at: now,
        })
    }
}
