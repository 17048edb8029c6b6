//! The cast-vote service on the in-memory adapters: every refusal changes
//! nothing, a failed publish gives the claim back, retries are idempotent.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use livevote_domain::{CorrelationId, Election, ElectionId, IdempotencyKey, Rejection, VoterId};
use livevote_ingestion::{
    CacheConfig, CastConfig, CastVote, CastVoteError, CastVoteService, ElectionCache, PublisherConfig,
    VoteBatcher,
};
use livevote_memory::{
    DedupConfig, FakeHumanCheck, MemoryDatabase, MemoryDedup, MemoryQueue, QueueConfig, RecordingMetrics,
};
use livevote_ports::{
    AdminAction, Claim, ClaimOutcome, ClaimState, Clock, ElectionAdmin, MetricEvent, QueueInspector,
    RejectReason, VoteDedup,
};
use livevote_testkit::ManualClock;
use livevote_testkit::fixtures::{active_election, operator};

type Service = CastVoteService<MemoryDatabase, MemoryDedup, FakeHumanCheck, ManualClock, RecordingMetrics>;

struct Harness {
    clock: ManualClock,
    db: MemoryDatabase,
    dedup: MemoryDedup,
    queue: MemoryQueue,
    metrics: RecordingMetrics,
    service: Service,
    election: Election,
}

async fn harness(human: FakeHumanCheck, captcha: bool) -> Harness {
    harness_with(human, captcha, PublisherConfig::default()).await
}

async fn harness_with(human: FakeHumanCheck, captcha: bool, publisher: PublisherConfig) -> Harness {
    let clock = ManualClock::new(Utc::now());
    let db = MemoryDatabase::new(clock.clone());
    let dedup = MemoryDedup::new(clock.clone(), DedupConfig::default());
    let queue = MemoryQueue::new(clock.clone(), QueueConfig::default());
    let metrics = RecordingMetrics::new();
    let election = active_election(
        &db,
        &["Ada", "Grace", "Linus"],
        clock.now(),
        ChronoDuration::hours(1),
        |n| {
            n.captcha_required = captcha;
        },
    )
    .await;
    let cache = Arc::new(ElectionCache::new(
        db.clone(),
        CacheConfig {
            max_age: Duration::ZERO,
            capacity: 100,
        },
    ));
    let (batcher, _task) = VoteBatcher::start(queue.clone(), dedup.clone(), publisher, metrics.clone());
    let service = CastVoteService::new(
        cache,
        dedup.clone(),
        batcher,
        human,
        clock.clone(),
        metrics.clone(),
        CastConfig {
            replay_wait: Duration::from_millis(300),
            dedup_timeout: Duration::from_millis(300),
            answer_within: Duration::from_secs(2),
            publish_timeout: Duration::from_millis(300),
        },
    );
    Harness {
        clock,
        db,
        dedup,
        queue,
        metrics,
        service,
        election,
    }
}

fn cast(h: &Harness, voter: &str, candidate: usize) -> CastVote {
    CastVote {
        voter: VoterId::parse(voter).unwrap(),
        election_id: h.election.id(),
        candidate_id: h.election.candidates()[candidate].id(),
        captcha_token: None,
        idempotency_key: None,
        correlation_id: CorrelationId::generate(),
        remote_ip: None,
    }
}

/// Nothing claimed for `voter` and nothing on the queue.
async fn assert_untouched(h: &Harness, voter: &str) {
    let claim = h
        .dedup
        .lookup(h.election.id(), &VoterId::parse(voter).unwrap())
        .await
        .unwrap();
    assert!(claim.is_none(), "claim left behind: {claim:?}");
    assert_eq!(h.queue.published_messages(), 0, "something was queued");
}

#[tokio::test]
async fn an_accepted_vote_is_queued_confirmed_and_counted() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    let receipt = h.service.cast(cast(&h, "viewer-1", 1)).await.unwrap();
    assert!(!receipt.replayed);
    assert_eq!(receipt.accepted_at, h.clock.now());
    assert_eq!(h.queue.published_messages(), 1);
    let claim = h
        .dedup
        .lookup(h.election.id(), &VoterId::parse("viewer-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claim.vote_id, claim.state),
        (receipt.vote_id, ClaimState::Accepted)
    );
    let mine = h
        .service
        .my_vote(h.election.id(), &VoterId::parse("viewer-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine.vote_id, receipt.vote_id);
    let accepted = h.metrics.sum(|e| match e {
        MetricEvent::VotesAccepted { count, .. } => Some(*count),
        _ => None,
    });
    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn a_second_vote_gets_the_original_vote_id() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    let first = h.service.cast(cast(&h, "viewer-1", 0)).await.unwrap();
    match h.service.cast(cast(&h, "viewer-1", 2)).await {
        Err(CastVoteError::AlreadyVoted { vote_id, accepted_at }) => {
            assert_eq!((vote_id, accepted_at), (first.vote_id, first.accepted_at));
        }
        other => panic!("expected AlreadyVoted, got {other:?}"),
    }
    assert_eq!(h.queue.published_messages(), 1);
}

#[tokio::test]
async fn refusals_by_the_rules_change_nothing() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    let mut unknown_election = cast(&h, "v", 0);
    unknown_election.election_id = ElectionId::generate();
    assert!(matches!(
        h.service.cast(unknown_election).await,
        Err(CastVoteError::ElectionNotFound(_))
    ));
    let mut unknown_candidate = cast(&h, "v", 0);
    unknown_candidate.candidate_id = livevote_domain::CandidateId::generate();
    assert!(matches!(
        h.service.cast(unknown_candidate).await,
        Err(CastVoteError::Rejected(Rejection::UnknownCandidate { .. }))
    ));
    // Close it: the cache has max_age 0, so the next request sees the close.
    let mut e = h.db.load(h.election.id()).await.unwrap();
    e.close(h.clock.now()).unwrap();
    h.db.update(
        &e,
        AdminAction::Closed,
        &operator(),
        "lines closed",
        h.clock.now(),
    )
    .await
    .unwrap();
    assert!(matches!(
        h.service.cast(cast(&h, "v", 0)).await,
        Err(CastVoteError::Rejected(Rejection::Ended { .. }))
    ));
    assert_untouched(&h, "v").await;
    let reasons: Vec<RejectReason> = h
        .metrics
        .events()
        .into_iter()
        .filter_map(|e| match e {
            MetricEvent::VoteRejected { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            RejectReason::ElectionNotFound,
            RejectReason::UnknownCandidate,
            RejectReason::Closed
        ]
    );
}

#[tokio::test]
async fn not_started_and_cancelled_elections_refuse_votes() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    let now = h.clock.now();
    let later = active_election(
        &h.db,
        &["A", "B"],
        now + ChronoDuration::hours(2),
        ChronoDuration::hours(3),
        |_| {},
    )
    .await;
    let mut c = cast(&h, "v", 0);
    c.election_id = later.id();
    c.candidate_id = later.candidates()[0].id();
    assert!(matches!(
        h.service.cast(c.clone()).await,
        Err(CastVoteError::Rejected(Rejection::NotStarted { .. }))
    ));
    let mut loaded = h.db.load(later.id()).await.unwrap();
    loaded.cancel(now, 0, None).unwrap();
    h.db.update(&loaded, AdminAction::Cancelled, &operator(), "", now)
        .await
        .unwrap();
    assert!(matches!(
        h.service.cast(c).await,
        Err(CastVoteError::Rejected(Rejection::NotActive { .. }))
    ));
    assert_eq!(h.queue.published_messages(), 0);
}

#[tokio::test]
async fn captcha_is_checked_before_anything_is_claimed_and_fails_closed() {
    let missing = harness(FakeHumanCheck::AlwaysHuman, true).await;
    assert!(matches!(
        missing.service.cast(cast(&missing, "v", 0)).await,
        Err(CastVoteError::CaptchaRequired)
    ));
    assert_untouched(&missing, "v").await;

    let bot = harness(FakeHumanCheck::NeverHuman, true).await;
    let mut c = cast(&bot, "v", 0);
    c.captcha_token = Some("token".into());
    assert!(matches!(
        bot.service.cast(c).await,
        Err(CastVoteError::CaptchaFailed)
    ));
    assert_untouched(&bot, "v").await;

    let down = harness(FakeHumanCheck::Down, true).await;
    let mut c = cast(&down, "v", 0);
    c.captcha_token = Some("token".into());
    assert!(matches!(
        down.service.cast(c).await,
        Err(CastVoteError::Unavailable { .. })
    ));
    assert_untouched(&down, "v").await;

    let human = harness(FakeHumanCheck::AlwaysHuman, true).await;
    let mut c = cast(&human, "v", 0);
    c.captcha_token = Some("token".into());
    assert!(human.service.cast(c).await.is_ok());
}

#[tokio::test]
async fn a_failed_publish_releases_the_claim_so_the_voter_can_vote_again() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    h.queue.set_available(false);
    assert!(matches!(
        h.service.cast(cast(&h, "v", 0)).await,
        Err(CastVoteError::Unavailable {
            what: "vote queue",
            ..
        })
    ));
    assert_untouched(&h, "v").await;
    h.queue.set_available(true);
    let receipt = h.service.cast(cast(&h, "v", 0)).await.unwrap();
    assert_eq!(h.queue.stats().await.unwrap().visible, 1);
    assert!(!receipt.replayed);
}

#[tokio::test]
async fn dedup_down_answers_unavailable_and_queues_nothing() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    h.dedup.set_available(false);
    assert!(matches!(
        h.service.cast(cast(&h, "v", 0)).await,
        Err(CastVoteError::Unavailable {
            what: "dedup store",
            ..
        })
    ));
    assert_eq!(h.queue.published_messages(), 0);
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_original_vote() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    let key = IdempotencyKey::parse("retry-123").unwrap();
    let mut first = cast(&h, "v", 0);
    first.idempotency_key = Some(key.clone());
    let original = h.service.cast(first.clone()).await.unwrap();
    let replay = h.service.cast(first.clone()).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(
        (replay.vote_id, replay.accepted_at),
        (original.vote_id, original.accepted_at)
    );
    let mut other_key = first;
    other_key.idempotency_key = Some(IdempotencyKey::parse("another").unwrap());
    assert!(matches!(
        h.service.cast(other_key).await,
        Err(CastVoteError::AlreadyVoted { .. })
    ));
    assert_eq!(h.queue.published_messages(), 1, "never a second vote");
}

#[tokio::test]
async fn the_same_key_for_another_candidate_is_refused_and_changes_nothing() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    let key = IdempotencyKey::parse("retry-123").unwrap();
    let mut first = cast(&h, "v", 0);
    first.idempotency_key = Some(key.clone());
    let original = h.service.cast(first.clone()).await.unwrap();
    let mut other_candidate = cast(&h, "v", 1);
    other_candidate.idempotency_key = Some(key.clone());
    match h.service.cast(other_candidate).await {
        Err(CastVoteError::IdempotencyKeyReused { key: k, vote_id }) => {
            assert_eq!((k, vote_id), (key, original.vote_id));
        }
        other => panic!("expected IdempotencyKeyReused, got {other:?}"),
    }
    // The original stands, and is still what a true retry gets.
    let replay = h.service.cast(first).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.vote_id, original.vote_id);
    assert_eq!(h.queue.published_messages(), 1, "never a second vote");
}

#[tokio::test]
async fn a_retry_of_a_pending_vote_is_never_answered_before_the_queue_acknowledged_it() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    let key = IdempotencyKey::parse("k").unwrap();
    // Another instance holds a pending claim with this key (its publish is in flight).
    let mut c = cast(&h, "v", 0);
    c.idempotency_key = Some(key.clone());
    let vote = livevote_domain::accept(
        &h.election,
        livevote_domain::VoteId::generate(),
        c.voter.clone(),
        c.candidate_id,
        h.clock.now(),
    )
    .unwrap();
    let foreign = Claim {
        vote,
        idempotency_key: Some(key),
        policy: livevote_domain::VotePolicy::Single,
    };
    assert_eq!(
        h.dedup.claim(&foreign).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );
    // It never settles: the retry gives up with 503 instead of claiming a 202.
    let started = std::time::Instant::now();
    assert!(matches!(
        h.service.cast(c.clone()).await,
        Err(CastVoteError::Unavailable { .. })
    ));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // It settles while the retry waits: the retry replays it.
    let confirmer = {
        let dedup = h.dedup.clone();
        let foreign = foreign.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            dedup.confirm(&foreign).await.unwrap()
        })
    };
    let replay = h.service.cast(c).await.unwrap();
    confirmer.await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.vote_id, foreign.vote.vote_id);
    assert_eq!(h.queue.published_messages(), 0);
}

#[tokio::test]
async fn a_full_publisher_sheds_load_and_releases_the_claim() {
    // A queue that never answers keeps the only batch slot busy.
    #[derive(Debug, Clone)]
    struct Stuck;
    impl livevote_ports::VoteQueue for Stuck {
        async fn publish(
            &self,
            _: &[livevote_domain::VoteRecord],
        ) -> Vec<Result<(), livevote_ports::QueueError>> {
            std::future::pending().await
        }
    }
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    let cache = Arc::new(ElectionCache::new(h.db.clone(), CacheConfig::default()));
    let config = PublisherConfig {
        buffer: 1,
        max_batch: 1,
        linger: Duration::ZERO,
        max_in_flight: 1,
        ..PublisherConfig::default()
    };
    let (batcher, _task) = VoteBatcher::start(Stuck, h.dedup.clone(), config, h.metrics.clone());
    let service: CastVoteService<_, _, _, _, _> = CastVoteService::new(
        cache,
        h.dedup.clone(),
        batcher,
        FakeHumanCheck::AlwaysHuman,
        h.clock.clone(),
        h.metrics.clone(),
        CastConfig::default(),
    );
    let mut stuck = Vec::new();
    for i in 0..3 {
        let s = service.clone();
        let c = cast(&h, &format!("stuck-{i}"), 0);
        stuck.push(tokio::spawn(async move { s.cast(c).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        service.cast(cast(&h, "shed", 0)).await,
        Err(CastVoteError::Overloaded)
    ));
    let claim = h
        .dedup
        .lookup(h.election.id(), &VoterId::parse("shed").unwrap())
        .await
        .unwrap();
    assert!(claim.is_none(), "a shed vote leaves no claim behind");
}

#[tokio::test]
async fn a_hung_queue_gets_vote_pending_for_a_vote_in_flight_and_unavailable_for_one_still_buffered() {
    // One publish call at a time: the first vote is carried by a call that
    // hangs; the second waits in the buffer behind it.
    let h = harness_with(
        FakeHumanCheck::AlwaysHuman,
        false,
        PublisherConfig {
            max_in_flight: 1,
            max_batch: 1,
            ..PublisherConfig::default()
        },
    )
    .await;
    h.queue.set_hung(true);
    let (first, second) = tokio::join!(h.service.cast(cast(&h, "v1", 0)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.service.cast(cast(&h, "v2", 1)).await
    });
    let Err(CastVoteError::QueueUnanswered { vote_id }) = first else {
        panic!("the vote in flight must be pending, got {first:?}");
    };
    assert!(
        matches!(
            second,
            Err(CastVoteError::Unavailable {
                what: "vote queue",
                ..
            })
        ),
        "{second:?}"
    );
    // The buffered vote was taken back: its claim is gone, nothing of it will be queued.
    assert_untouched(&h, "v2").await;
    // The endpoint answers again: the pending vote is queued and its claim confirmed.
    h.queue.set_hung(false);
    let voter = VoterId::parse("v1").unwrap();
    let mut state = None;
    for _ in 0..100 {
        state = h
            .dedup
            .lookup(h.election.id(), &voter)
            .await
            .unwrap()
            .map(|c| c.state);
        if state == Some(ClaimState::Accepted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state, Some(ClaimState::Accepted));
    let stats = h.queue.stats().await.unwrap();
    assert_eq!(
        stats.pending_messages(),
        1,
        "only the pending vote reached the queue"
    );
    let v2 = VoterId::parse("v2").unwrap();
    assert!(h.dedup.lookup(h.election.id(), &v2).await.unwrap().is_none());
    // A retry of the pending vote now learns it counts.
    let again = h.service.cast(cast(&h, "v1", 0)).await;
    assert!(
        matches!(again, Err(CastVoteError::AlreadyVoted { vote_id: v, .. }) if v == vote_id),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_confirm_that_fails_after_the_queue_took_the_vote_is_answered_202_and_retried_until_it_lands() {
    let h = harness(FakeHumanCheck::AlwaysHuman, false).await;
    // Redis goes away between the claim and the confirm: hold the publish, then take Redis down.
    h.queue.set_hung(true);
    let vote = h.service.cast(cast(&h, "v", 1));
    let outage = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.dedup.set_available(false);
        h.queue.set_hung(false);
    };
    let (receipt, ()) = tokio::join!(vote, outage);
    let receipt = receipt.expect("queued votes are answered 202 even when the confirm fails");
    let voter = VoterId::parse("v").unwrap();
    h.dedup.set_available(true);
    let mut state = None;
    for _ in 0..100 {
        state = h.dedup.lookup(h.election.id(), &voter).await.unwrap();
        if state.as_ref().is_some_and(|c| c.state == ClaimState::Accepted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claim = state.expect("the claim is still there");
    assert_eq!(
        (claim.state, claim.vote_id),
        (ClaimState::Accepted, receipt.vote_id)
    );
    assert!(
        h.metrics
            .events()
            .iter()
            .any(|e| matches!(e, MetricEvent::VotesAccepted { count: 1, .. })),
        "the late confirm counts the vote in the live tally's metric"
    );
}
