//! An in-memory stand-in for the Redis dedup store and live tallies: pending
//! claims that expire, accepted claims that expire much later, confirm and
//! release that act only on the caller's own claim, and the tally bump done
//! in the same atomic step as the confirm. Expiry follows the injected clock,
//! so tests can let a claim lapse without waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Duration;
use livevote_domain::{CandidateCount, CandidateId, ElectionId, IdempotencyKey, Timestamp, VoteId, VoterId};
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
    expires_at: Timestamp,
}

#[derive(Debug, Default)]
struct State {
    claims: HashMap<(ElectionId, VoterId), Entry>,
    tallies: HashMap<ElectionId, HashMap<CandidateId, u64>>,
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

    /// The live entry for a key, dropping it first if it has expired.
    fn live<'a>(state: &'a mut State, key: &(ElectionId, VoterId), now: Timestamp) -> Option<&'a mut Entry> {
        if state.claims.get(key).is_some_and(|e| e.expires_at <= now) {
            state.claims.remove(key);
        }
        state.claims.get_mut(key)
    }
}

fn existing(entry: &Entry) -> ExistingClaim {
    ExistingClaim {
        vote_id: entry.vote_id,
        accepted_at: entry.accepted_at,
        state: entry.state,
        idempotency_key: entry.key.clone(),
        candidate_id: Some(entry.candidate_id),
    }
}

impl VoteDedup for MemoryDedup {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, DedupError> {
        self.up()?;
        let now = self.clock.now();
        let v = &claim.vote;
        let key = (v.election_id, v.voter_id.clone());
        let mut state = self.lock();
        if let Some(entry) = Self::live(&mut state, &key, now) {
            return Ok(ClaimOutcome::Held(existing(entry)));
        }
        state.claims.insert(
            key,
            Entry {
                vote_id: v.vote_id,
                accepted_at: v.accepted_at,
                state: ClaimState::Reserved,
                key: claim.idempotency_key.clone(),
                candidate_id: v.candidate_id,
                expires_at: now + self.config.pending_ttl,
            },
        );
        Ok(ClaimOutcome::Claimed)
    }

    async fn confirm(&self, claim: &Claim) -> Result<ConfirmOutcome, DedupError> {
        self.up()?;
        let now = self.clock.now();
        let v = &claim.vote;
        let key = (v.election_id, v.voter_id.clone());
        let mut state = self.lock();
        let accepted_ttl = self.config.accepted_ttl;
        let bump = match Self::live(&mut state, &key, now) {
            Some(entry) if entry.vote_id == v.vote_id => {
                let was_pending = entry.state == ClaimState::Reserved;
                entry.state = ClaimState::Accepted;
                entry.expires_at = now + accepted_ttl;
                was_pending
            }
            _ => return Ok(ConfirmOutcome::NotHeld),
        };
        if bump {
            *state
                .tallies
                .entry(v.election_id)
                .or_default()
                .entry(v.candidate_id)
                .or_default() += 1;
        }
        Ok(ConfirmOutcome::Confirmed)
    }

    async fn release(&self, claim: &Claim) -> Result<bool, DedupError> {
        self.up()?;
        let now = self.clock.now();
        let v = &claim.vote;
        let key = (v.election_id, v.voter_id.clone());
        let mut state = self.lock();
        match Self::live(&mut state, &key, now) {
            Some(entry) if entry.vote_id == v.vote_id && entry.state == ClaimState::Reserved => {
                state.claims.remove(&key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn lookup(
        &self,
        election: ElectionId,
        voter: &VoterId,
    ) -> Result<Option<ExistingClaim>, DedupError> {
        self.up()?;
        let now = self.clock.now();
        let mut state = self.lock();
        Ok(Self::live(&mut state, &(election, voter.clone()), now).map(|e| existing(e)))
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
                    .map(|(&candidate_id, &votes)| CandidateCount { candidate_id, votes })
                    .collect()
            })
            .unwrap_or_default())
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
            },
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
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
        assert_eq!(d.claim(&first).await.unwrap(), ClaimOutcome::Claimed);
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
        assert_eq!(d.claim(&retry).await.unwrap(), ClaimOutcome::Claimed);
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
            if t.await.unwrap() == ClaimOutcome::Claimed {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
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
