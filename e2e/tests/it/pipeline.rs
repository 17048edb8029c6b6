//! End to end on the in-memory adapters: cast-vote service -> queue ->
//! persist-batch service -> results and reconciliation. Each test checks the
//! exact form of ARCHITECTURE.md invariant 3: every vote id answered "accepted" is
//! stored exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use livevote_domain::{
    CandidateId, Election, IdempotencyKey, ResultsVisibility, Timestamp, Verdict, VoteId, VoterId,
};
use livevote_ingestion::{
    CacheConfig, CastConfig, CastVote, CastVoteError, CastVoteService, ElectionCache, PublisherConfig,
    VoteBatcher,
};
use livevote_memory::{
    DedupConfig, FakeHumanCheck, MemoryDatabase, MemoryDedup, MemoryQueue, NoMetrics, QueueConfig,
};
use livevote_ports::{
    AdminAction, Claim, ClaimOutcome, ClaimState, Clock, ConfirmOutcome, DedupError, ElectionAdmin,
    ExistingClaim, QueueInspector, VoteDedup, VoteStore,
};
use livevote_processor::{PersistConfig, PersistService};
use livevote_results::{ResultsService, TallySource};
use livevote_testkit::ManualClock;
use livevote_testkit::fixtures::{active_election, operator};

/// The dedup store, with a switch that makes `confirm` hang forever: the
/// process "dies" after the queue acknowledged the vote and before confirm.
#[derive(Debug, Clone)]
struct Crashable {
    inner: MemoryDedup,
    crash_on_confirm: Arc<std::sync::atomic::AtomicBool>,
}

impl VoteDedup for Crashable {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, DedupError> {
        self.inner.claim(claim).await
    }
    async fn confirm(&self, claim: &Claim) -> Result<ConfirmOutcome, DedupError> {
        if self.crash_on_confirm.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.confirm(claim).await
    }
    async fn release(&self, claim: &Claim) -> Result<bool, DedupError> {
        self.inner.release(claim).await
    }
    async fn lookup(
        &self,
        election: livevote_domain::ElectionId,
        voter: &VoterId,
    ) -> Result<Option<ExistingClaim>, DedupError> {
        self.inner.lookup(election, voter).await
    }
}

struct Stack {
    clock: ManualClock,
    db: MemoryDatabase,
    dedup: MemoryDedup,
    crash_on_confirm: Arc<std::sync::atomic::AtomicBool>,
    queue: MemoryQueue,
    cast: CastVoteService<MemoryDatabase, Crashable, FakeHumanCheck, ManualClock, NoMetrics>,
    persist: PersistService<MemoryQueue, MemoryDatabase, MemoryDatabase, ManualClock, NoMetrics>,
    results: ResultsService<MemoryDatabase, MemoryDedup, MemoryDatabase, MemoryQueue, ManualClock>,
    election: Election,
}

async fn stack(names: &[&str], length: ChronoDuration) -> Stack {
    let clock = ManualClock::new(Utc::now());
    let db = MemoryDatabase::new(clock.clone());
    let dedup = MemoryDedup::new(clock.clone(), DedupConfig::default());
    let crash_on_confirm = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let queue = MemoryQueue::new(
        clock.clone(),
        QueueConfig {
            votes_per_message: 50,
            ..QueueConfig::default()
        },
    );
    let election = active_election(&db, names, clock.now(), length, |_| {}).await;
    // max_age 0: every request sees the catalog as it is (tests move the clock and close elections).
    let cache = Arc::new(ElectionCache::new(
        db.clone(),
        CacheConfig {
            max_age: Duration::ZERO,
            capacity: 100,
        },
    ));
    let publisher = PublisherConfig {
        linger: Duration::from_millis(1),
        ..PublisherConfig::default()
    };
    let claims = Crashable {
        inner: dedup.clone(),
        crash_on_confirm: crash_on_confirm.clone(),
    };
    let (batcher, _task) = VoteBatcher::start(queue.clone(), claims.clone(), publisher, NoMetrics);
    let cast = CastVoteService::new(
        cache,
        claims,
        batcher,
        FakeHumanCheck::AlwaysHuman,
        clock.clone(),
        NoMetrics,
        CastConfig::default(),
    );
    let persist = PersistService::new(
        queue.clone(),
        db.clone(),
        db.clone(),
        clock.clone(),
        NoMetrics,
        PersistConfig {
            receive_max: 10,
            receive_wait: Duration::from_millis(5),
        },
    );
    let results = ResultsService::new(
        db.clone(),
        dedup.clone(),
        db.clone(),
        queue.clone(),
        clock.clone(),
    );
    Stack {
        clock,
        db,
        dedup,
        crash_on_confirm,
        queue,
        cast,
        persist,
        results,
        election,
    }
}

fn vote(s: &Stack, voter: &str, candidate: usize) -> CastVote {
    crate::common::vote(&s.election, voter, candidate)
}

/// Runs the processor until the queue is empty.
async fn drain(s: &Stack) {
    for _ in 0..10_000 {
        if s.queue.stats().await.unwrap().pending_messages() == 0 {
            return;
        }
        s.persist.run_once().await.unwrap();
    }
    panic!("queue did not drain");
}

/// The exact check: every accepted vote id is stored once, with the candidate the client chose.
async fn assert_all_persisted(s: &Stack, accepted: &HashMap<VoteId, CandidateId>) {
    let stored: HashMap<VoteId, CandidateId> =
        s.db.all_votes()
            .into_iter()
            .map(|v| (v.record.vote.vote_id, v.record.vote.candidate_id))
            .collect();
    let missing: Vec<&VoteId> = accepted.keys().filter(|id| !stored.contains_key(id)).collect();
    assert!(missing.is_empty(), "accepted but not persisted: {missing:?}");
    for (id, candidate) in accepted {
        assert_eq!(stored[id], *candidate, "vote {id} stored with another candidate");
    }
}

/// Persisted tallies equal a count of the stored rows, candidate by candidate.
async fn assert_tallies_match_rows(s: &Stack) {
    let mut rows: BTreeMap<CandidateId, u64> = BTreeMap::new();
    for v in s.db.all_votes() {
        *rows.entry(v.record.vote.candidate_id).or_default() += 1;
    }
    let tallies: BTreeMap<CandidateId, u64> =
        s.db.persisted_tallies(s.election.id())
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.candidate_id, c.votes))
            .collect();
    assert_eq!(tallies, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_voters_and_five_hundred_repeats() {
    let s = Arc::new(stack(&["Ada", "Grace", "Linus", "Barbara"], ChronoDuration::hours(1)).await);
    // The processor runs alongside the voting, as in production.
    let processor = {
        let s = s.clone();
        tokio::spawn(async move {
            loop {
                s.persist.run_once().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let accepted = {
        let s = s.clone();
        crate::common::two_thousand_voters_and_five_hundred_repeats(&s.election.clone(), move |v| {
            let s = s.clone();
            async move { s.cast.cast(v).await }
        })
        .await
    };
    drain(&s).await;
    processor.abort();

    assert_eq!(s.db.all_votes().len(), 2000, "exactly 2,000 persisted");
    assert_all_persisted(&s, &accepted).await;
    assert_tallies_match_rows(&s).await;
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Balanced, "{r:?}");
    assert_eq!(
        (r.counts.accepted, r.counts.persisted, r.counts.duplicates),
        (2000, 2000, 0)
    );
    assert!(
        r.per_candidate.iter().all(|c| c.accepted == c.persisted),
        "live and persisted agree per candidate"
    );
    let results = s.results.results(s.election.id()).await.unwrap();
    assert_eq!(results.source, TallySource::Live);
    assert!(!results.is_final, "not final while voting is open");
    assert_eq!(results.tally.unwrap().total(), 2000);
    assert_eq!(results.percentages.iter().map(|p| p.units()).sum::<u64>(), 1000);
}

#[tokio::test]
async fn a_failed_publish_releases_the_claim_and_the_second_try_counts_once() {
    let s = stack(&["A", "B"], ChronoDuration::hours(1)).await;
    s.queue.set_available(false);
    assert!(s.cast.cast(vote(&s, "v", 0)).await.is_err());
    assert!(
        s.dedup
            .lookup(s.election.id(), &VoterId::parse("v").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    s.queue.set_available(true);
    let receipt = s.cast.cast(vote(&s, "v", 1)).await.unwrap();
    drain(&s).await;
    assert_eq!(s.db.all_votes().len(), 1);
    assert_all_persisted(
        &s,
        &HashMap::from([(receipt.vote_id, s.election.candidates()[1].id())]),
    )
    .await;
    assert_eq!(
        s.results.reconcile(s.election.id()).await.unwrap().verdict,
        Verdict::Balanced
    );
}

#[tokio::test]
async fn a_crash_between_queue_ack_and_confirm_loses_no_vote() {
    let s = stack(&["A", "B"], ChronoDuration::hours(1)).await;
    s.crash_on_confirm
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // The client never hears back: the process "died" before confirming.
    let lost_reply = tokio::time::timeout(Duration::from_millis(300), s.cast.cast(vote(&s, "v", 0))).await;
    assert!(lost_reply.is_err(), "no answer reached the client");
    s.crash_on_confirm
        .store(false, std::sync::atomic::Ordering::SeqCst);
    drain(&s).await;
    let stored = s.db.all_votes();
    assert_eq!(stored.len(), 1, "the queued vote is persisted");
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!((r.counts.accepted, r.counts.persisted), (0, 1));
    assert_eq!(r.verdict, Verdict::Surplus(1), "shown apart, not as a loss");
    assert!(!r.verdict.is_loss());
    // The pending claim lapses; the viewer tries again and is told "accepted" this time.
    s.clock.advance(ChronoDuration::seconds(31));
    let retry = s.cast.cast(vote(&s, "v", 1)).await.unwrap();
    drain(&s).await;
    assert_eq!(s.db.all_votes().len(), 1, "still one vote for the viewer");
    assert!(
        s.db.find_vote(retry.vote_id).await.unwrap().is_none(),
        "the retry lost to the first at the constraint"
    );
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(
        (r.counts.accepted, r.counts.persisted, r.counts.duplicates),
        (1, 1, 1)
    );
    assert_eq!(r.verdict, Verdict::Surplus(1));
}

#[tokio::test]
async fn a_vote_accepted_just_before_close_counts_after_close() {
    let s = stack(&["A", "B"], ChronoDuration::hours(1)).await;
    let receipt = s.cast.cast(vote(&s, "late", 1)).await.unwrap();
    // Lines close a millisecond later, before the processor has seen the vote.
    s.clock.advance(ChronoDuration::milliseconds(1));
    let mut e = s.db.load(s.election.id()).await.unwrap();
    e.close(s.clock.now()).unwrap();
    s.db.update(
        &e,
        AdminAction::Closed,
        &operator(),
        "lines closed",
        s.clock.now(),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.cast.cast(vote(&s, "too-late", 1)).await,
        Err(CastVoteError::Rejected(livevote_domain::Rejection::Ended { .. }))
    ));
    let closed_at: Timestamp = s.clock.now();
    assert!(receipt.accepted_at < closed_at);
    let pending = s.results.results(s.election.id()).await.unwrap();
    assert!(!pending.is_final, "not final while the vote is still queued");
    s.clock.advance(ChronoDuration::seconds(5));
    drain(&s).await;
    let stored =
        s.db.find_vote(receipt.vote_id)
            .await
            .unwrap()
            .expect("persisted after close");
    assert!(stored.persisted_at > closed_at, "persisted after the close");
    let results = s.results.results(s.election.id()).await.unwrap();
    assert!(results.is_final);
    assert_eq!(results.source, TallySource::Persisted);
    assert_eq!(
        results.tally.unwrap().votes_for(s.election.candidates()[1].id()),
        1
    );
}

#[tokio::test]
async fn final_only_when_reconciliation_has_no_loss_and_embargo_hides_counts() {
    let s = stack(&["A", "B"], ChronoDuration::hours(1)).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut v = vote(&s, &format!("v{i}"), i % 2);
        v.idempotency_key = Some(IdempotencyKey::parse(format!("k{i}")).unwrap());
        ids.push(s.cast.cast(v).await.unwrap().vote_id);
    }
    drain(&s).await;
    let mut e = s.db.load(s.election.id()).await.unwrap();
    e.close(s.clock.now()).unwrap();
    let e =
        s.db.update(&e, AdminAction::Closed, &operator(), "", s.clock.now())
            .await
            .unwrap();
    assert!(s.results.results(s.election.id()).await.unwrap().is_final);
    // A persisted vote disappears: reconciliation says lost, and nothing is final.
    assert!(s.db.delete_vote_for_test(ids[3]));
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Lost(1));
    let results = s.results.results(s.election.id()).await.unwrap();
    assert!(!results.is_final);
    assert_eq!(results.source, TallySource::Live);
    // Embargo: no counts at all.
    let mut hidden = e;
    hidden.set_visibility(ResultsVisibility::Hidden);
    s.db.update(
        &hidden,
        AdminAction::ResultsHidden,
        &operator(),
        "",
        s.clock.now(),
    )
    .await
    .unwrap();
    let embargoed = s.results.results(s.election.id()).await.unwrap();
    assert!(embargoed.embargoed);
    assert!(embargoed.tally.is_none() && embargoed.percentages.is_empty());
}

#[tokio::test]
async fn dead_lettered_votes_are_accounted_but_block_final() {
    let s = stack(&["A", "B"], ChronoDuration::hours(1)).await;
    let receipt = s.cast.cast(vote(&s, "v", 0)).await.unwrap();
    // The processor fails five times in a row (crash after receive): the message dead-letters.
    for _ in 0..5 {
        let got = livevote_ports::VoteSource::receive(&s.queue, 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        s.clock.advance(ChronoDuration::seconds(31));
    }
    assert!(
        livevote_ports::VoteSource::receive(&s.queue, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(
        (r.counts.accepted, r.counts.dead_lettered, r.counts.in_flight),
        (1, 1, 0)
    );
    assert_eq!(r.verdict, Verdict::Balanced);
    assert!(!r.allows_final(), "a dead-lettered vote is not counted yet");
    // Replay it: it is persisted, and the election balances with nothing in the DLQ.
    assert_eq!(s.queue.replay_dead_letters(), 1);
    drain(&s).await;
    assert!(s.db.find_vote(receipt.vote_id).await.unwrap().is_some());
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Balanced);
    assert!(!r.allows_final(), "an election still voting is never final");
    // Once the window is over it may be.
    s.clock.advance(ChronoDuration::hours(2));
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert!(r.allows_final());
    let claim = s
        .dedup
        .lookup(s.election.id(), &VoterId::parse("v").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.state, ClaimState::Accepted);
}

#[tokio::test]
async fn live_tallies_rebuilt_from_the_store_after_redis_loss() {
    let s = stack(&["A", "B", "C"], ChronoDuration::hours(1)).await;
    for i in 0..30 {
        s.cast.cast(vote(&s, &format!("v{i}"), i % 3)).await.unwrap();
    }
    drain(&s).await;
    s.dedup.wipe();
    assert_eq!(
        s.results
            .reconcile(s.election.id())
            .await
            .unwrap()
            .counts
            .accepted,
        0
    );
    let rebuilt = s.results.rebuild_live_tallies(s.election.id()).await.unwrap();
    assert!(rebuilt.queue_was_drained);
    assert_eq!(rebuilt.tally.total(), 30);
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Balanced);
    assert!(
        r.per_candidate
            .iter()
            .all(|c| c.accepted == c.persisted && c.accepted == 10)
    );
    // Duplicates are still never persisted: the store's constraint holds without Redis.
    let again = s.cast.cast(vote(&s, "v0", 1)).await.unwrap();
    drain(&s).await;
    assert!(s.db.find_vote(again.vote_id).await.unwrap().is_none());
    assert_eq!(s.db.all_votes().len(), 30);
    let voters: HashSet<VoterId> =
        s.db.all_votes()
            .into_iter()
            .map(|v| v.record.vote.voter_id)
            .collect();
    assert_eq!(voters.len(), 30);
}
