//! An in-memory stand-in for the Redis dedup store and live tallies: pending
//! claims that expire, accepted claims that expire much later, confirm and
//! release that act only on the caller's own claim, and the tally bump done
//! in the same atomic step as the confirm. Expiry follows the injected clock,
//! so tests can let a claim lapse without waiting. The vote policies work as
//! in the Redis adapter: a `multi` claim takes the lowest free slot
//! ([`livevote_domain::next_multi_slot`]), a `changeable` claim the next
//! change number, and confirming the newest change moves the live count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Duration;
use livevote_domain::{
    CandidateCount, CandidateId, ElectionId, IdempotencyKey, Timestamp, VoteId, VotePolicy, VoteSlot,
    VoterId, next_multi_slot,
};
use livevote_ports::{
    Claim, ClaimOutcome, ClaimState, Clock, ConfirmOutcome, DedupError, ExistingClaim, LiveTallies, VoteDedup,
};

/// How long claims live.
#[derive(Debug, Clone, Copy)]
pub struct DedupConfig {
    /// A pending claim lapses after this (30 s, as in the Redis adapter).
    pub pending_ttl: Duration,
    /// An accepted claim answers 409 for this long (48 h, as in the Redis adapter).
    pub accepted_ttl: Duration,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            pending_ttl: Duration::seconds(30),
            accepted_ttl: Duration::hours(48),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    vote_id: VoteId,
    accepted_at: Timestamp,
    state: ClaimState,
    key: Option<IdempotencyKey>,
    candidate_id: CandidateId,
    slot: VoteSlot,
    expires_at: Timestamp,
}

#[derive(Debug, Default)]
struct State {
    /// A voter's claims, one per slot held.
    claims: HashMap<(ElectionId, VoterId), Vec<Entry>>,
    /// `changeable`: the last change number given to a voter.
    changes: HashMap<(ElectionId, VoterId), u32>,
    /// `changeable`: a voter's newest confirmed change and its candidate.
    current: HashMap<(ElectionId, VoterId), (u32, CandidateId)>,
    tallies: HashMap<ElectionId, HashMap<CandidateId, u64>>,
    replaced: HashMap<ElectionId, u64>,
}

/// Dedup claims and live tallies in memory. Clones share the same data.
#[derive(Clone)]
pub struct MemoryDedup {
    state: Arc<Mutex<State>>,
    available: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
    config: DedupConfig,
}

impl std::fmt::Debug for MemoryDedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDedup")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MemoryDedup {
    pub fn new(clock: impl Clock, config: DedupConfig) -> Self {
        Self {
            state: Arc::default(),
            available: Arc::new(AtomicBool::new(true)),
            clock: Arc::new(clock),
            config,
        }
    }

    /// Simulates the store going down (`false`) and coming back (`true`).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// Forgets everything, as a Redis restarted without persistence would.
    pub fn wipe(&self) {
        *self.lock() = State::default();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("memory dedup lock")
    }

    fn up(&self) -> Result<(), DedupError> {
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(DedupError::Unavailable(anyhow::anyhow!(
                "memory dedup switched off"
            )))
        }
    }

    /// A voter's live claims, dropping the expired ones first.
    fn live<'a>(state: &'a mut State, key: &(ElectionId, VoterId), now: Timestamp) -> &'a mut Vec<Entry> {
        let entries = state.claims.entry(key.clone()).or_default();
        entries.retain(|e| e.expires_at > now);
        entries
    }
}

fn existing(entry: &Entry) -> ExistingClaim {
    ExistingClaim {
        vote_id: entry.vote_id,
        accepted_at: entry.accepted_at,
        state: entry.state,
        idempotency_key: entry.key.clone(),
        candidate_id: Some(entry.candidate_id),
        slot: entry.slot,
    }
}

impl VoteDedup for MemoryDedup {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, DedupError> {
        self.up()?;
        let now = self.clock.now();
        let v = &claim.vote;
        let key = (v.election_id, v.voter_id.clone());
        let mut state = self.lock();
        let entries = Self::live(&mut state, &key, now);
        if let Some(retry) = entries
            .iter()
            .find(|e| claim.idempotency_key.is_some() && e.key == claim.idempotency_key)
        {
            return Ok(ClaimOutcome::Held(existing(retry)));
        }
        let slot = match claim.policy {
            VotePolicy::Single => match entries.first() {
                Some(held) => return Ok(ClaimOutcome::Held(existing(held))),
                None => VoteSlot::FIRST,
            },
            VotePolicy::Multi(limits) => {
                let held: Vec<(VoteSlot, CandidateId)> =
                    entries.iter().map(|e| (e.slot, e.candidate_id)).collect();
                match next_multi_slot(limits, &held, v.candidate_id) {
                    Ok(slot) => slot,
                    Err(limit) => return Ok(ClaimOutcome::LimitReached(limit)),
                }
            }
            VotePolicy::Changeable => {
                let seq = state.changes.entry(key.clone()).or_default();
                *seq += 1;
                VoteSlot::sequence(*seq)
            }
        };
        state.claims.entry(key).or_default().push(Entry {
            vote_id: v.vote_id,
            accepted_at: v.accepted_at,
            state: ClaimState::Reserved,
            key: claim.idempotency_key.clone(),
            candidate_id: v.candidate_id,
            slot,
            expires_at: now + self.config.pending_ttl,
        });
        Ok(ClaimOutcome::Claimed(slot))
    }

    async fn confirm(&self, claim: &Claim) -> Result<ConfirmOutcome, DedupError> {
        self.up()?;
        let now = self.clock.now();
        let v = &claim.vote;
        let key = (v.election_id, v.voter_id.clone());
        let mut state = self.lock();
        let accepted_ttl = self.config.accepted_ttl;
        let entries = Self::live(&mut state, &key, now);
        let bump = match entries.iter_mut().find(|e| e.vote_id == v.vote_id) {
            Some(entry) => {
                let was_pending = entry.state == ClaimState::Reserved;
                entry.state = ClaimState::Accepted;
                entry.expires_at = now + accepted_ttl;
                was_pending
            }
            None => return Ok(ConfirmOutcome::NotHeld),
        };
        if !bump {
            return Ok(ConfirmOutcome::Confirmed);
        }
        let mut moves: Vec<(CandidateId, i64)> = vec![(v.candidate_id, 1)];
        if claim.policy.replaces() {
            match state.current.get(&key).copied() {
                Some((seq, old)) if seq < v.slot.number => {
                    moves.push((old, -1));
                    *state.replaced.entry(v.election_id).or_default() += 1;
                    state.current.insert(key, (v.slot.number, v.candidate_id));
                }
                Some(_) => {
                    // An older change confirmed after a newer one: stored, never current.
                    moves.clear();
                    *state.replaced.entry(v.election_id).or_default() += 1;
                }
                None => {
                    state.current.insert(key, (v.slot.number, v.candidate_id));
                }
            }
        }
        let tally = state.tallies.entry(v.election_id).or_default();
        for (candidate, delta) in moves {
            let count = tally.entry(candidate).or_default();
            *count = count.saturating_add_signed(delta);
        }
        Ok(ConfirmOutcome::Confirmed)
    }

    async fn release(&self, claim: &Claim) -> Result<bool, DedupError> {
        self.up()?;
        let now = self.clock.now();
        let v = &claim.vote;
        let key = (v.election_id, v.voter_id.clone());
        let mut state = self.lock();
        let entries = Self::live(&mut state, &key, now);
        let before = entries.len();
        entries.retain(|e| !(e.vote_id == v.vote_id && e.state == ClaimState::Reserved));
        Ok(entries.len() < before)
    }

    /// The voter's claim (`single`), or the claim of the voter's newest vote.
    async fn lookup(
        &self,
        election: ElectionId,
        voter: &VoterId,
    ) -> Result<Option<ExistingClaim>, DedupError> {
        self.up()?;
        let now = self.clock.now();
        let mut state = self.lock();
        Ok(Self::live(&mut state, &(election, voter.clone()), now)
            .iter()
            .max_by_key(|e| e.slot.number)
            .map(existing))
    }
}

/// The store's own clock, as the Redis server's `TIME` is for the real
/// store: in one process there is one clock, so a host checked against it
/// is never off (unless the store is made unavailable).
impl livevote_ports::ReferenceClock for MemoryDedup {
    async fn reference_now(&self) -> Result<Timestamp, livevote_ports::ReferenceClockError> {
        if !self.available.load(Ordering::SeqCst) {
            return Err(livevote_ports::ReferenceClockError(
                "in-memory store unavailable".into(),
            ));
        }
        Ok(self.clock.now())
    }
}

impl LiveTallies for MemoryDedup {
    async fn accepted_counts(&self, election: ElectionId) -> Result<Vec<CandidateCount>, DedupError> {
        self.up()?;
        let state = self.lock();
        Ok(state
            .tallies
            .get(&election)
            .map(|t| {
                t.iter()
                    .filter(|(_, votes)| **votes > 0)
                    .map(|(&candidate_id, &votes)| CandidateCount { candidate_id, votes })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn replaced_votes(&self, election: ElectionId) -> Result<u64, DedupError> {
        self.up()?;
        Ok(self.lock().replaced.get(&election).copied().unwrap_or(0))
    }

    async fn replace_replaced(&self, election: ElectionId, replaced: u64) -> Result<(), DedupError> {
        self.up()?;
        self.lock().replaced.insert(election, replaced);
        Ok(())
    }

    async fn replace_counts(
        &self,
        election: ElectionId,
        counts: &[CandidateCount],
    ) -> Result<(), DedupError> {
        self.up()?;
        let mut state = self.lock();
        let mut fresh: HashMap<CandidateId, u64> = HashMap::new();
        for c in counts {
            *fresh.entry(c.candidate_id).or_default() += c.votes;
        }
        state.tallies.insert(election, fresh);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use livevote_domain::Ballot;
    use livevote_testkit::ManualClock;

    fn claim(election: ElectionId, voter: &str, key: Option<&str>) -> Claim {
        Claim {
            vote: Ballot {
                vote_id: VoteId::generate(),
                election_id: election,
                candidate_id: CandidateId::generate(),
                voter_id: VoterId::parse(voter).unwrap(),
                accepted_at: Utc::now(),
                slot: VoteSlot::FIRST,
            },
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
            policy: VotePolicy::Single,
        }
    }

    async fn total(d: &MemoryDedup, e: ElectionId) -> u64 {
        d.accepted_counts(e).await.unwrap().iter().map(|c| c.votes).sum()
    }

    #[tokio::test]
    async fn claim_confirm_and_second_claim_is_held() {
        let clock = ManualClock::new(Utc::now());
        let d = MemoryDedup::new(clock.clone(), DedupConfig::default());
        let e = ElectionId::generate();
        let first = claim(e, "v", Some("k1"));
        assert_eq!(
            d.claim(&first).await.unwrap(),
            ClaimOutcome::Claimed(VoteSlot::FIRST)
        );
        let second = claim(e, "v", Some("k2"));
        match d.claim(&second).await.unwrap() {
            ClaimOutcome::Held(x) => {
                assert_eq!(x.vote_id, first.vote.vote_id);
                assert_eq!(x.state, ClaimState::Reserved);
                assert!(!x.is_retry_of(second.idempotency_key.as_ref()));
                assert!(x.is_retry_of(first.idempotency_key.as_ref()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.confirm(&first).await.unwrap(), ConfirmOutcome::Confirmed);
        assert_eq!(
            d.confirm(&first).await.unwrap(),
            ConfirmOutcome::Confirmed,
            "idempotent"
        );
        assert_eq!(total(&d, e).await, 1, "the second confirm does not bump again");
        assert_eq!(d.confirm(&second).await.unwrap(), ConfirmOutcome::NotHeld);
        assert!(
            !d.release(&first).await.unwrap(),
            "an accepted claim is never released"
        );
        clock.advance(Duration::hours(47));
        assert_eq!(
            d.lookup(e, &first.vote.voter_id).await.unwrap().unwrap().state,
            ClaimState::Accepted
        );
    }

    #[tokio::test]
    async fn an_expired_claim_is_not_confirmed_or_released() {
        let clock = ManualClock::new(Utc::now());
        let d = MemoryDedup::new(clock.clone(), DedupConfig::default());
        let e = ElectionId::generate();
        let first = claim(e, "v", None);
        d.claim(&first).await.unwrap();
        clock.advance(Duration::seconds(30));
        assert_eq!(d.confirm(&first).await.unwrap(), ConfirmOutcome::NotHeld);
        assert_eq!(total(&d, e).await, 0, "a confirm after expiry does not count");
        let retry = claim(e, "v", None);
        assert_eq!(
            d.claim(&retry).await.unwrap(),
            ClaimOutcome::Claimed(VoteSlot::FIRST)
        );
        assert!(
            !d.release(&first).await.unwrap(),
            "the first attempt cannot release the retry's claim"
        );
        assert!(d.release(&retry).await.unwrap());
        assert!(d.lookup(e, &retry.vote.voter_id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn concurrent_claims_for_one_voter_have_one_winner() {
        let d = MemoryDedup::new(livevote_hosting::SystemClock, DedupConfig::default());
        let e = ElectionId::generate();
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                d.claim(&claim(e, "same", None)).await.unwrap()
            }));
        }
        let mut winners = 0;
        for t in tasks {
            if t.await.unwrap() == ClaimOutcome::Claimed(VoteSlot::FIRST) {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
    }

    fn policy_claim(policy: VotePolicy, election: ElectionId, candidate: CandidateId) -> Claim {
        let mut c = claim(election, "fan", None);
        c.policy = policy;
        c.vote.candidate_id = candidate;
        c
    }

    #[tokio::test]
    async fn multi_gives_each_vote_a_free_slot_up_to_the_limit() {
        let d = MemoryDedup::new(livevote_hosting::SystemClock, DedupConfig::default());
        let (e, a) = (ElectionId::generate(), CandidateId::generate());
        let policy = VotePolicy::from_parts("multi", Some(3), None).unwrap();
        let mut held = Vec::new();
        for n in 1..=3 {
            let mut c = policy_claim(policy, e, a);
            let outcome = d.claim(&c).await.unwrap();
            assert_eq!(
                outcome,
                ClaimOutcome::Claimed(VoteSlot {
                    number: n,
                    per_candidate: None
                })
            );
            c.vote.slot = VoteSlot {
                number: n,
                per_candidate: None,
            };
            held.push(c);
        }
        assert_eq!(
            d.claim(&policy_claim(policy, e, a)).await.unwrap(),
            ClaimOutcome::LimitReached(livevote_domain::VoteLimitReached {
                used: 3,
                max: 3,
                per_candidate: false
            })
        );
        assert!(d.release(&held[1]).await.unwrap());
        assert_eq!(
            d.claim(&policy_claim(policy, e, a)).await.unwrap(),
            ClaimOutcome::Claimed(VoteSlot {
                number: 2,
                per_candidate: None
            })
        );
        for c in [&held[0], &held[2]] {
            assert_eq!(d.confirm(c).await.unwrap(), ConfirmOutcome::Confirmed);
        }
        assert_eq!(total(&d, e).await, 2);
    }

    #[tokio::test]
    async fn changeable_counts_only_the_newest_confirmed_change() {
        let d = MemoryDedup::new(livevote_hosting::SystemClock, DedupConfig::default());
        let e = ElectionId::generate();
        let (a, b) = (CandidateId::generate(), CandidateId::generate());
        let mut changes = Vec::new();
        for (n, candidate) in [(1, a), (2, b)] {
            let mut c = policy_claim(VotePolicy::Changeable, e, candidate);
            assert_eq!(
                d.claim(&c).await.unwrap(),
                ClaimOutcome::Claimed(VoteSlot::sequence(n))
            );
            c.vote.slot = VoteSlot::sequence(n);
            changes.push(c);
        }
        // The newer confirmed first: the older one never becomes current.
        d.confirm(&changes[1]).await.unwrap();
        d.confirm(&changes[0]).await.unwrap();
        let counts = d.accepted_counts(e).await.unwrap();
        assert_eq!(
            counts,
            vec![CandidateCount {
                candidate_id: b,
                votes: 1
            }]
        );
        assert_eq!(d.replaced_votes(e).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn replace_counts_rebuilds_tallies() {
        let d = MemoryDedup::new(livevote_hosting::SystemClock, DedupConfig::default());
        let e = ElectionId::generate();
        let c = CandidateId::generate();
        d.replace_counts(
            e,
            &[CandidateCount {
                candidate_id: c,
                votes: 7,
            }],
        )
        .await
        .unwrap();
        assert_eq!(total(&d, e).await, 7);
        d.set_available(false);
        assert!(d.accepted_counts(e).await.is_err());
    }
}
