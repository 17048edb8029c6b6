//! An in-memory stand-in for the PostgreSQL database: elections with
//! optimistic concurrency and an audit log, and the vote store with its
//! one-vote-per-(election, voter) rule, persisted tallies, conflicts and
//! redelivery counters. Every operation holds one lock for its whole run, so
//! each is atomic the way a transaction is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::DurationRound;

use livevote_domain::election::ElectionParts;
use livevote_domain::{
    ActorId, Arrival, CandidateCount, CandidateId, Election, ElectionId, ElectionStatus, Timestamp, VoteId,
    VoteRecord, VoterId, arrival, check_references,
};
use livevote_ports::{
    AdminAction, AdminError, AuditEntry, CatalogError, ElectionAdmin, ElectionCatalog, HourlyCount, Page,
    PageRequest, PersistOutcome, PersistReport, StoreCounts, StoreError, StoredVote, VoteActivity, VoteStore,
};

use livevote_ports::Clock;

#[derive(Debug, Default)]
struct State {
    elections: HashMap<ElectionId, Election>,
    audit: Vec<AuditEntry>,
    votes: HashMap<VoteId, StoredVote>,
    /// The vote in each (election, voter, slot number).
    by_voter: HashMap<(ElectionId, VoterId, u32), VoteId>,
    /// The vote in each (election, voter, candidate, per-candidate slot).
    by_candidate_slot: HashMap<(ElectionId, VoterId, CandidateId, u16), VoteId>,
    /// `changeable`: each voter's current vote (its slot and candidate).
    current: HashMap<(ElectionId, VoterId), (u32, CandidateId)>,
    /// `changeable`: stored votes that are not current.
    replaced: HashMap<ElectionId, u64>,
    tallies: HashMap<(ElectionId, CandidateId), i64>,
    /// Conflicting vote id -> (election, the vote the voter already had).
    conflicts: HashMap<VoteId, (ElectionId, VoteId)>,
    redeliveries: HashMap<ElectionId, u64>,
}

/// Elections and votes in memory. Clones share the same data.
#[derive(Clone)]
pub struct MemoryDatabase {
    state: Arc<Mutex<State>>,
    available: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDatabase")
            .field("available", &self.available.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn down() -> anyhow::Error {
    anyhow::anyhow!("memory database switched off")
}

impl MemoryDatabase {
    /// An empty database stamping `persisted_at` from `clock`.
    pub fn new(clock: impl Clock) -> Self {
        Self {
            state: Arc::default(),
            available: Arc::new(AtomicBool::new(true)),
            clock: Arc::new(clock),
        }
    }

    /// Simulates the database going down (`false`) and coming back (`true`):
    /// while down, every operation fails with `Unavailable` and changes nothing.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// Every stored vote, for assertions.
    pub fn all_votes(&self) -> Vec<StoredVote> {
        self.lock().votes.values().cloned().collect()
    }

    /// Deletes a stored vote without touching tallies: a deliberate "loss" for
    /// tests that check the loss detectors.
    pub fn delete_vote_for_test(&self, id: VoteId) -> bool {
        let mut state = self.lock();
        match state.votes.remove(&id) {
            Some(v) => {
                let vote = v.record.vote;
                state
                    .by_voter
                    .remove(&(vote.election_id, vote.voter_id, vote.slot.number));
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("memory database lock")
    }

    fn check_up(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }
}

impl ElectionCatalog for MemoryDatabase {
    async fn get(&self, id: ElectionId) -> Result<Option<Election>, CatalogError> {
        if !self.check_up() {
            return Err(CatalogError::Unavailable(down()));
        }
        Ok(self.lock().elections.get(&id).cloned())
    }
}

fn with_version(election: &Election, version: u64) -> Election {
    let parts = ElectionParts {
        version,
        ..election.to_parts()
    };
    Election::restore(parts).expect("an election that was valid stays valid with another version")
}

fn page_of<T: Clone>(items: &[T], page: PageRequest) -> Page<T> {
    let start = usize::try_from(page.offset())
        .unwrap_or(usize::MAX)
        .min(items.len());
    let end = start.saturating_add(page.size as usize).min(items.len());
    Page {
        content: items[start..end].to_vec(),
        page: page.page,
        size: page.size,
        total_elements: items.len() as u64,
    }
}

impl ElectionAdmin for MemoryDatabase {
    async fn create(&self, election: &Election, actor: &ActorId, at: Timestamp) -> Result<(), AdminError> {
        if !self.check_up() {
            return Err(AdminError::Unavailable(down()));
        }
        let mut state = self.lock();
        if state.elections.contains_key(&election.id()) {
            return Err(AdminError::AlreadyExists(election.id()));
        }
        state.elections.insert(election.id(), election.clone());
        let seq = state.audit.len() as u64 + 1;
        state.audit.push(AuditEntry {
            seq,
            election_id: election.id(),
            actor: actor.clone(),
            action: AdminAction::Created,
            at,
            version: election.version(),
            details: format!(
                "created {:?} with {} candidates",
                election.title().as_str(),
                election.candidates().len()
            ),
        });
        Ok(())
    }

    async fn load(&self, id: ElectionId) -> Result<Election, AdminError> {
        if !self.check_up() {
            return Err(AdminError::Unavailable(down()));
        }
        self.lock()
            .elections
            .get(&id)
            .cloned()
            .ok_or(AdminError::NotFound(id))
    }

    async fn update(
        &self,
        election: &Election,
        action: AdminAction,
        actor: &ActorId,
        details: &str,
        at: Timestamp,
    ) -> Result<Election, AdminError> {
        if !self.check_up() {
            return Err(AdminError::Unavailable(down()));
        }
        let mut state = self.lock();
        let id = election.id();
        let stored = state.elections.get(&id).ok_or(AdminError::NotFound(id))?;
        if stored.version() != election.version() {
            return Err(AdminError::VersionConflict {
                id,
                expected: election.version(),
                actual: stored.version(),
            });
        }
        let saved = with_version(election, election.version() + 1);
        state.elections.insert(id, saved.clone());
        let seq = state.audit.len() as u64 + 1;
        state.audit.push(AuditEntry {
            seq,
            election_id: id,
            actor: actor.clone(),
            action,
            at,
            version: saved.version(),
            details: details.to_owned(),
        });
        Ok(saved)
    }

    async fn list(
        &self,
        status: Option<ElectionStatus>,
        now: Timestamp,
        page: PageRequest,
    ) -> Result<Page<Election>, AdminError> {
        if !self.check_up() {
            return Err(AdminError::Unavailable(down()));
        }
        let state = self.lock();
        let mut all: Vec<Election> = state
            .elections
            .values()
            .filter(|e| status.is_none_or(|s| e.effective_status(now) == s))
            .cloned()
            .collect();
        all.sort_by(|a, b| b.created_at().cmp(&a.created_at()).then(b.id().cmp(&a.id())));
        Ok(page_of(&all, page))
    }

    async fn audit_log(&self, id: ElectionId, page: PageRequest) -> Result<Page<AuditEntry>, AdminError> {
        if !self.check_up() {
            return Err(AdminError::Unavailable(down()));
        }
        let state = self.lock();
        let entries: Vec<AuditEntry> = state
            .audit
            .iter()
            .filter(|e| e.election_id == id)
            .cloned()
            .collect();
        Ok(page_of(&entries, page))
    }
}

impl VoteStore for MemoryDatabase {
    async fn persist_batch(&self, votes: &[VoteRecord]) -> Result<PersistReport, StoreError> {
        if !self.check_up() {
            return Err(StoreError::Unavailable(down()));
        }
        let now = self.clock.now();
        let mut state = self.lock();
        // Foreign keys first: a batch naming unknown elections or candidates writes nothing.
        let unknown: Vec<VoteId> = votes
            .iter()
            .filter(|r| check_references(state.elections.get(&r.vote.election_id), &r.vote).is_err())
            .map(|r| r.vote.vote_id)
            .collect();
        if !unknown.is_empty() {
            return Err(StoreError::UnknownReference(unknown));
        }
        let mut outcomes = Vec::with_capacity(votes.len());
        for record in votes {
            let v = &record.vote;
            // What is held for this vote: itself, or another vote in its
            // slot (or per-candidate slot); the rules say what that makes it.
            let held = if state.votes.contains_key(&v.vote_id) {
                Some(v.vote_id)
            } else {
                state
                    .by_voter
                    .get(&(v.election_id, v.voter_id.clone(), v.slot.number))
                    .or_else(|| {
                        v.slot.per_candidate.and_then(|k| {
                            state.by_candidate_slot.get(&(
                                v.election_id,
                                v.voter_id.clone(),
                                v.candidate_id,
                                k,
                            ))
                        })
                    })
                    .copied()
            };
            let outcome = match arrival(v.vote_id, held) {
                Arrival::Redelivery => {
                    *state.redeliveries.entry(v.election_id).or_default() += 1;
                    PersistOutcome::AlreadyPersisted
                }
                Arrival::SecondVote { existing } => {
                    // Recorded once per conflicting vote id: a redelivered conflict is not counted again.
                    state
                        .conflicts
                        .entry(v.vote_id)
                        .or_insert((v.election_id, existing));
                    PersistOutcome::Conflict { existing }
                }
                Arrival::First => {
                    let voter = (v.election_id, v.voter_id.clone());
                    state
                        .by_voter
                        .insert((v.election_id, v.voter_id.clone(), v.slot.number), v.vote_id);
                    if let Some(k) = v.slot.per_candidate {
                        state
                            .by_candidate_slot
                            .insert((v.election_id, v.voter_id.clone(), v.candidate_id, k), v.vote_id);
                    }
                    state.votes.insert(
                        v.vote_id,
                        StoredVote {
                            record: record.clone(),
                            persisted_at: now,
                        },
                    );
                    let replaces = state
                        .elections
                        .get(&v.election_id)
                        .is_some_and(|e| e.policy().replaces());
                    if replaces {
                        match state.current.get(&voter).copied() {
                            Some((slot, _)) if slot > v.slot.number => {
                                *state.replaced.entry(v.election_id).or_default() += 1;
                            }
                            previous => {
                                if let Some((_, old)) = previous {
                                    *state.tallies.entry((v.election_id, old)).or_default() -= 1;
                                    *state.replaced.entry(v.election_id).or_default() += 1;
                                }
                                *state.tallies.entry((v.election_id, v.candidate_id)).or_default() += 1;
                                state.current.insert(voter, (v.slot.number, v.candidate_id));
                            }
                        }
                    } else {
                        *state.tallies.entry((v.election_id, v.candidate_id)).or_default() += 1;
                    }
                    PersistOutcome::Inserted
                }
            };
            outcomes.push(outcome);
        }
        Ok(PersistReport { outcomes })
    }

    async fn persisted_tallies(&self, election: ElectionId) -> Result<Vec<CandidateCount>, StoreError> {
        if !self.check_up() {
            return Err(StoreError::Unavailable(down()));
        }
        let state = self.lock();
        Ok(state
            .tallies
            .iter()
            .filter(|((e, _), votes)| *e == election && **votes > 0)
            .map(|((_, c), &votes)| CandidateCount {
                candidate_id: *c,
                votes: votes.unsigned_abs(),
            })
            .collect())
    }

    async fn find_vote(&self, id: VoteId) -> Result<Option<StoredVote>, StoreError> {
        if !self.check_up() {
            return Err(StoreError::Unavailable(down()));
        }
        Ok(self.lock().votes.get(&id).cloned())
    }

    async fn votes_of_voter(
        &self,
        election: ElectionId,
        voter: &VoterId,
    ) -> Result<Vec<StoredVote>, StoreError> {
        if !self.check_up() {
            return Err(StoreError::Unavailable(down()));
        }
        let mut votes: Vec<StoredVote> = self
            .lock()
            .votes
            .values()
            .filter(|v| v.record.vote.election_id == election && &v.record.vote.voter_id == voter)
            .cloned()
            .collect();
        votes.sort_by_key(|v| v.record.vote.slot);
        Ok(votes)
    }

    async fn counts(&self, election: ElectionId) -> Result<StoreCounts, StoreError> {
        if !self.check_up() {
            return Err(StoreError::Unavailable(down()));
        }
        let state = self.lock();
        Ok(StoreCounts {
            persisted: state
                .votes
                .values()
                .filter(|v| v.record.vote.election_id == election)
                .count() as u64,
            duplicates: state.conflicts.values().filter(|(e, _)| *e == election).count() as u64,
            redeliveries: state.redeliveries.get(&election).copied().unwrap_or(0),
        })
    }

    async fn hourly_counts(&self, election: ElectionId) -> Result<Vec<HourlyCount>, StoreError> {
        if !self.check_up() {
            return Err(StoreError::Unavailable(down()));
        }
        let state = self.lock();
        let mut hours: std::collections::BTreeMap<Timestamp, u64> = std::collections::BTreeMap::new();
        for v in state
            .votes
            .values()
            .filter(|v| v.record.vote.election_id == election)
        {
            let at = v.record.vote.accepted_at;
            let hour = at
                .duration_trunc(chrono::TimeDelta::hours(1))
                .map_err(|e| StoreError::Unknown(anyhow::anyhow!("hour of {at}: {e}")))?;
            *hours.entry(hour).or_default() += 1;
        }
        Ok(hours
            .into_iter()
            .map(|(hour, votes)| HourlyCount { hour, votes })
            .collect())
    }

    async fn activity(&self, election: ElectionId) -> Result<VoteActivity, StoreError> {
        if !self.check_up() {
            return Err(StoreError::Unavailable(down()));
        }
        let state = self.lock();
        let mut activity = VoteActivity::default();
        let mut minutes: std::collections::BTreeMap<Timestamp, u64> = std::collections::BTreeMap::new();
        for v in state
            .votes
            .values()
            .filter(|v| v.record.vote.election_id == election)
        {
            let at = v.record.vote.accepted_at;
            activity.first_vote_at = Some(activity.first_vote_at.map_or(at, |f| f.min(at)));
            activity.last_vote_at = Some(activity.last_vote_at.map_or(at, |l| l.max(at)));
            let minute = at
                .duration_trunc(chrono::TimeDelta::minutes(1))
                .map_err(|e| StoreError::Unknown(anyhow::anyhow!("minute of {at}: {e}")))?;
            *minutes.entry(minute).or_default() += 1;
        }
        // Ascending minutes, so keeping only strictly larger counts picks the earliest on a tie.
        for (minute, n) in minutes {
            if activity.peak_minute.is_none_or(|(_, best)| n > best) {
                activity.peak_minute = Some((minute, n));
            }
        }
        Ok(activity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};
    use livevote_domain::{
        Ballot, CandidateDraft, CandidateName, CorrelationId, Description, NewElection, ResultsVisibility,
        Title, VotePolicy, VotingWindow,
    };
    use livevote_hosting::SystemClock;

    fn new_election() -> Election {
        let now = Utc::now();
        let new = NewElection {
            title: Title::parse("Talent Final").unwrap(),
            description: Description::parse("").unwrap(),
            window: VotingWindow::new(now - Duration::hours(1), now + Duration::hours(1)).unwrap(),
            candidates: ["A", "B"]
                .iter()
                .map(|n| CandidateDraft {
                    name: CandidateName::parse(n).unwrap(),
                    party: None,
                })
                .collect(),
            visibility: ResultsVisibility::Live,
            captcha_required: false,
            policy: VotePolicy::Single,
        };
        livevote_testkit::fixtures::create(new, now)
    }

    fn vote(e: &Election, voter: &str, candidate: usize) -> VoteRecord {
        VoteRecord {
            vote: Ballot {
                vote_id: VoteId::generate(),
                election_id: e.id(),
                candidate_id: e.candidates()[candidate].id(),
                voter_id: VoterId::parse(voter).unwrap(),
                accepted_at: Utc::now(),
                slot: livevote_domain::VoteSlot::FIRST,
            },
            correlation_id: CorrelationId::generate(),
        }
    }

    fn actor() -> ActorId {
        ActorId::parse("auth0|admin").unwrap()
    }

    #[tokio::test]
    async fn hourly_counts_group_by_the_utc_hour_of_acceptance() {
        let db = MemoryDatabase::new(SystemClock);
        let e = new_election();
        db.create(&e, &actor(), Utc::now()).await.unwrap();
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&Utc)
        };
        let mut batch = Vec::new();
        for (voter, when) in [
            ("a", "2026-11-21T20:00:00Z"),
            ("b", "2026-11-21T20:59:59.999999Z"),
            ("c", "2026-11-21T22:30:00+01:00"),
        ] {
            let mut v = vote(&e, voter, 0);
            v.vote.accepted_at = at(when);
            batch.push(v);
        }
        db.persist_batch(&batch).await.unwrap();
        let hours: Vec<(String, u64)> = db
            .hourly_counts(e.id())
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.hour.to_rfc3339(), h.votes))
            .collect();
        assert_eq!(
            hours,
            vec![
                ("2026-11-21T20:00:00+00:00".to_owned(), 2),
                ("2026-11-21T21:00:00+00:00".to_owned(), 1)
            ]
        );
    }

    #[tokio::test]
    async fn persist_is_idempotent_and_the_first_vote_of_a_voter_wins() {
        let db = MemoryDatabase::new(SystemClock);
        let e = new_election();
        db.create(&e, &actor(), Utc::now()).await.unwrap();
        let first = vote(&e, "v1", 0);
        let second = vote(&e, "v1", 1);
        let other = vote(&e, "v2", 1);
        let batch = vec![first.clone(), second.clone(), other.clone()];
        for round in 0..3 {
            let report = db.persist_batch(&batch).await.unwrap();
            let expected_first = if round == 0 {
                PersistOutcome::Inserted
            } else {
                PersistOutcome::AlreadyPersisted
            };
            assert_eq!(report.outcomes[0], expected_first);
            assert_eq!(
                report.outcomes[1],
                PersistOutcome::Conflict {
                    existing: first.vote.vote_id
                }
            );
            assert_eq!(report.outcomes[2], expected_first);
        }
        let counts = db.counts(e.id()).await.unwrap();
        assert_eq!(counts.persisted, 2);
        assert_eq!(counts.duplicates, 1, "a redelivered conflict is counted once");
        assert_eq!(counts.redeliveries, 4);
        let mut tallies = db.persisted_tallies(e.id()).await.unwrap();
        tallies.sort_by_key(|c| c.candidate_id);
        let total: u64 = tallies.iter().map(|c| c.votes).sum();
        assert_eq!(total, 2);
        assert_eq!(
            db.find_vote(first.vote.vote_id).await.unwrap().unwrap().record,
            first
        );
        assert!(db.find_vote(second.vote.vote_id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn unknown_references_write_nothing() {
        let db = MemoryDatabase::new(SystemClock);
        let e = new_election();
        db.create(&e, &actor(), Utc::now()).await.unwrap();
        let good = vote(&e, "v1", 0);
        let mut bad = vote(&e, "v2", 0);
        bad.vote.candidate_id = CandidateId::generate();
        match db.persist_batch(&[good.clone(), bad.clone()]).await {
            Err(StoreError::UnknownReference(ids)) => assert_eq!(ids, vec![bad.vote.vote_id]),
            other => panic!("expected UnknownReference, got {other:?}"),
        }
        assert_eq!(db.counts(e.id()).await.unwrap().persisted, 0);
    }

    #[tokio::test]
    async fn down_means_unavailable_and_unchanged() {
        let db = MemoryDatabase::new(SystemClock);
        let e = new_election();
        db.create(&e, &actor(), Utc::now()).await.unwrap();
        db.set_available(false);
        assert!(matches!(
            db.persist_batch(&[vote(&e, "v", 0)]).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            ElectionCatalog::get(&db, e.id()).await,
            Err(CatalogError::Unavailable(_))
        ));
        db.set_available(true);
        assert_eq!(db.counts(e.id()).await.unwrap().persisted, 0);
    }

    #[tokio::test]
    async fn optimistic_concurrency_and_audit() {
        let db = MemoryDatabase::new(SystemClock);
        let e = new_election();
        db.create(&e, &actor(), Utc::now()).await.unwrap();
        assert!(matches!(
            db.create(&e, &actor(), Utc::now()).await,
            Err(AdminError::AlreadyExists(_))
        ));
        let mut a = db.load(e.id()).await.unwrap();
        let mut b = db.load(e.id()).await.unwrap();
        a.schedule(Utc::now()).unwrap();
        let saved = db
            .update(&a, AdminAction::Scheduled, &actor(), "scheduled", Utc::now())
            .await
            .unwrap();
        assert_eq!(saved.version(), 2);
        b.cancel(Utc::now(), 0, None).unwrap();
        match db
            .update(&b, AdminAction::Cancelled, &actor(), "cancel", Utc::now())
            .await
        {
            Err(AdminError::VersionConflict {
                expected: 1,
                actual: 2,
                ..
            }) => {}
            other => panic!("expected a version conflict, got {other:?}"),
        }
        assert_eq!(
            db.load(e.id()).await.unwrap().stored_status(),
            ElectionStatus::Scheduled
        );
        let log = db
            .audit_log(e.id(), PageRequest { page: 0, size: 10 })
            .await
            .unwrap();
        let actions: Vec<AdminAction> = log.content.iter().map(|a| a.action).collect();
        assert_eq!(actions, vec![AdminAction::Created, AdminAction::Scheduled]);
        assert_eq!(log.content[1].version, 2);
        let active = db
            .list(
                Some(ElectionStatus::Active),
                Utc::now(),
                PageRequest { page: 0, size: 10 },
            )
            .await
            .unwrap();
        assert_eq!(
            active.total_elements, 1,
            "filtered by effective status: scheduled and started is active"
        );
        let drafts = db
            .list(
                Some(ElectionStatus::Draft),
                Utc::now(),
                PageRequest { page: 0, size: 10 },
            )
            .await
            .unwrap();
        assert_eq!(drafts.total_elements, 0);
    }
}
