//! The read-results and reconcile use cases.

use std::sync::Arc;
use std::time::Duration;

use livevote_domain::{
    Ballot, CandidateId, Election, ElectionId, ElectionStatus, Percentage, ReconciliationCounts, Tally,
    Timestamp, Verdict, VoteId, VotePolicy, VoteSlot, VoterId, current_vote,
};
use livevote_ports::{
    CatalogError, ClaimState, Clock, DeadLetterSummary, DedupError, ElectionCatalog, HourlyCount,
    LiveTallies, QueueError, QueueInspector, StoreError, VoteDedup, VoteStore,
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
    /// Effective status when reconciled.
    pub status: ElectionStatus,
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
        self.counts.allows_final(self.status)
    }
}

/// Audience figures of one election, for auditors and producers.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    pub election_id: ElectionId,
    /// Effective status when read.
    pub status: ElectionStatus,
    /// `A`: votes answered 202 (live).
    pub accepted: u64,
    /// `P`: votes stored (one per viewer under `single`: the number of viewers who voted).
    pub persisted: u64,
    /// Second votes of a voter dropped by the store.
    pub duplicates: u64,
    pub first_vote_at: Option<Timestamp>,
    pub last_vote_at: Option<Timestamp>,
    /// Stored votes per UTC hour of acceptance.
    pub hourly: Vec<HourlyCount>,
    /// The busiest UTC minute and its stored votes.
    pub peak_minute: Option<(Timestamp, u64)>,
    /// Stored votes per minute of the voting window so far (or in full once closed).
    pub average_per_minute: f64,
    pub generated_at: Timestamp,
    /// The election's vote policy.
    pub policy: VotePolicy,
}

/// Where a vote stands, for the voter who cast it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub vote_id: VoteId,
    pub election_id: ElectionId,
    pub candidate_id: Option<CandidateId>,
    pub accepted_at: Timestamp,
    /// When it reached the vote store; `None` while it is still on its way.
    pub persisted_at: Option<Timestamp>,
    /// Under a `multi` or `changeable` policy, where the vote stands among
    /// the viewer's stored votes (`None` for `single`, or while on its way).
    pub standing: Option<Standing>,
}

/// Where a stored vote stands among its viewer's votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// `multi`: the vote's number, and how many of `max` the viewer has used
    /// (stored so far).
    Multi { number: u32, used: u32, max: u16 },
    /// `changeable`: the change's number; whether it is the viewer's current
    /// vote, and if not, when the vote that replaced it (the current one)
    /// was accepted.
    Changeable {
        number: u32,
        current: bool,
        replaced_at: Option<Timestamp>,
    },
}

struct Inner<Catalog, Tallies, Store, Queue, Time> {
    catalog: Catalog,
    live: Tallies,
    store: Store,
    queue: Queue,
    clock: Time,
}

/// Reads results and reconciles. Cheap to clone.
pub struct ResultsService<Catalog, Tallies, Store, Queue, Time> {
    inner: Arc<Inner<Catalog, Tallies, Store, Queue, Time>>,
}

impl<Catalog, Tallies, Store, Queue, Time> Clone for ResultsService<Catalog, Tallies, Store, Queue, Time> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<Catalog, Tallies, Store, Queue, Time> std::fmt::Debug
    for ResultsService<Catalog, Tallies, Store, Queue, Time>
{
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

impl<Catalog, Tallies, Store, Queue, Time> ResultsService<Catalog, Tallies, Store, Queue, Time>
where
    Catalog: ElectionCatalog,
    Tallies: LiveTallies,
    Store: VoteStore,
    Queue: QueueInspector,
    Time: Clock,
{
    pub fn new(catalog: Catalog, live: Tallies, store: Store, queue: Queue, clock: Time) -> Self {
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

    /// Audience figures: votes per hour, the peak minute, turnout.
    ///
    /// # Errors
    /// [`ResultsError`].
    pub async fn statistics(&self, id: ElectionId) -> Result<Statistics, ResultsError> {
        let election = self.election(id).await?;
        let now = self.inner.clock.now();
        let mut accepted =
            Tally::for_election(&election, &self.inner.live.accepted_counts(id).await?).total();
        if election.policy().replaces() {
            accepted += self.inner.live.replaced_votes(id).await?;
        }
        let counts = self.inner.store.counts(id).await?;
        let hourly = self.inner.store.hourly_counts(id).await?;
        let activity = self.inner.store.activity(id).await?;
        let window = election.window();
        let end = window.end().min(now);
        let minutes = (end - window.start()).num_milliseconds().max(0) as f64 / 60_000.0;
        let average_per_minute = if minutes > 0.0 {
            counts.persisted as f64 / minutes
        } else {
            0.0
        };
        Ok(Statistics {
            election_id: id,
            status: election.effective_status(now),
            accepted,
            persisted: counts.persisted,
            duplicates: counts.duplicates,
            first_vote_at: activity.first_vote_at,
            last_vote_at: activity.last_vote_at,
            hourly,
            peak_minute: activity.peak_minute,
            average_per_minute,
            generated_at: now,
            policy: election.policy(),
        })
    }

    /// Rebuilds an election's live accepted tallies from the persisted ones,
    /// after the live store lost its data (ARCHITECTURE.md, invariant 6).
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
        if election.policy().replaces() {
            // Stored changes that are not current: the rest of `A`.
            let stored = self.inner.store.counts(id).await?.persisted;
            let current: u64 = counts.iter().map(|c| c.votes).sum();
            self.inner
                .live
                .replace_replaced(id, stored.saturating_sub(current))
                .await?;
        }
        Ok(Rebuild {
            tally: Tally::for_election(&election, &counts),
            queue_was_drained,
        })
    }

    /// The persisted tallies of an election, read from the vote store whatever
    /// the election's state (auditors' export).
    ///
    /// # Errors
    /// [`ResultsError`].
    pub async fn persisted(&self, id: ElectionId) -> Result<(Arc<Election>, Tally), ResultsError> {
        let election = self.election(id).await?;
        let counts = self.inner.store.persisted_tallies(id).await?;
        let tally = Tally::for_election(&election, &counts);
        Ok((Arc::new(election), tally))
    }

    /// The votes an election holds: the larger of the live accepted total
    /// and the stored count (either may run ahead of the other).
    ///
    /// # Errors
    /// [`ResultsError`].
    pub async fn votes_held(&self, id: ElectionId) -> Result<u64, ResultsError> {
        let election = self.election(id).await?;
        let accepted = Tally::for_election(&election, &self.inner.live.accepted_counts(id).await?).total();
        let stored = self.inner.store.counts(id).await?.persisted;
        Ok(accepted.max(stored))
    }

    /// What the dead-letter queue holds, per election and unattributed.
    ///
    /// # Errors
    /// [`ResultsError::Unavailable`].
    pub async fn dead_letters(&self) -> Result<DeadLetterSummary, ResultsError> {
        Ok(self.inner.queue.dead_letter_summary().await?)
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
        // Under `changeable` the live tallies count each viewer's current
        // vote; the votes accepted are those plus the ones replaced since.
        let replaced = if election.policy().replaces() {
            self.inner.live.replaced_votes(id).await?
        } else {
            0
        };
        let stats = self.inner.queue.stats().await?;
        let dead = self.inner.queue.summarize_dead_letters(&stats).await?;
        let persisted = Tally::for_election(election, &self.inner.store.persisted_tallies(id).await?);
        let store = self.inner.store.counts(id).await?;
        let counts = ReconciliationCounts {
            accepted: live.total() + replaced,
            persisted: store.persisted,
            duplicates: store.duplicates,
            dead_lettered: dead.votes_of(id),
            in_flight: stats.pending_messages(),
            unattributed_dead_letters: dead.unattributed_messages,
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
            status: election.effective_status(now),
            counts,
            verdict: counts.verdict(),
            redeliveries: store.redeliveries,
            oldest_queued_age: stats.oldest_age,
            dead_letter_messages: dead.messages,
            per_candidate,
            generated_at: now,
        })
    }
}

impl<Catalog, Tallies, Store, Queue, Time> ResultsService<Catalog, Tallies, Store, Queue, Time>
where
    Catalog: ElectionCatalog,
    Tallies: LiveTallies + VoteDedup,
    Store: VoteStore,
    Queue: QueueInspector,
    Time: Clock,
{
    /// The receipt of `vote_id` if `voter` cast it. A stored vote answers
    /// from the vote store; a vote still on its way is found through the
    /// voter's claim in `election` when the caller names it. Another voter's
    /// vote is `None`, exactly like an unknown one.
    ///
    /// # Errors
    /// [`ResultsError::Unavailable`].
    pub async fn receipt(
        &self,
        vote_id: VoteId,
        voter: &VoterId,
        election: Option<ElectionId>,
    ) -> Result<Option<Receipt>, ResultsError> {
        if let Some(stored) = self.inner.store.find_vote(vote_id).await? {
            let vote = &stored.record.vote;
            if &vote.voter_id != voter {
                return Ok(None);
            }
            let standing = self.standing(vote).await?;
            return Ok(Some(Receipt {
                vote_id,
                election_id: vote.election_id,
                candidate_id: Some(vote.candidate_id),
                accepted_at: vote.accepted_at,
                persisted_at: Some(stored.persisted_at),
                standing,
            }));
        }
        let Some(election) = election else {
            return Ok(None);
        };
        // Only a confirmed claim is an accepted vote: a pending one may still fail to publish.
        Ok(self
            .inner
            .live
            .lookup(election, voter)
            .await?
            .filter(|claim| claim.vote_id == vote_id && claim.state == ClaimState::Accepted)
            .map(|claim| Receipt {
                vote_id,
                election_id: election,
                candidate_id: None,
                accepted_at: claim.accepted_at,
                persisted_at: None,
                standing: None,
            }))
    }

    /// Where a stored vote stands under its election's policy.
    async fn standing(&self, vote: &Ballot) -> Result<Option<Standing>, ResultsError> {
        let policy = self.election(vote.election_id).await?.policy();
        if policy == VotePolicy::Single {
            return Ok(None);
        }
        let votes = self
            .inner
            .store
            .votes_of_voter(vote.election_id, &vote.voter_id)
            .await?;
        let number = vote.slot.number;
        Ok(Some(match policy {
            VotePolicy::Multi(limits) => Standing::Multi {
                number,
                used: u32::try_from(votes.len()).unwrap_or(u32::MAX),
                max: limits.max_votes(),
            },
            _ => {
                let slots: Vec<(VoteSlot, Timestamp)> = votes
                    .iter()
                    .map(|v| (v.record.vote.slot, v.record.vote.accepted_at))
                    .collect();
                let newest = current_vote(&slots).map(|i| slots[i]);
                let current = newest.is_none_or(|(slot, _)| slot.number == number);
                Standing::Changeable {
                    number,
                    current,
                    replaced_at: newest.filter(|_| !current).map(|(_, at)| at),
                }
            }
        }))
    }
}
