//! End to end with the real PostgreSQL and Redis adapters in place of the
//! in-memory fakes (the queue stays in memory until the SQS adapter lands):
//! cast-vote service -> queue -> persist-batch service -> results and
//! reconciliation. Each test gets its own database and its own Redis key
//! prefix, and checks the exact form of ARCHITECTURE.md invariant 3.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use fred::prelude::{Builder, ClientLike, Config, KeysInterface};
use livevote_domain::{CandidateId, Election, Verdict, VoteId, VoteLimitReached, VotePolicy};
use livevote_hosting::SystemClock;
use livevote_ingestion::{
    CacheConfig, CastConfig, CastVote, CastVoteError, CastVoteService, ElectionCache, PublisherConfig,
    VoteBatcher,
};
use livevote_memory::{FakeHumanCheck, MemoryQueue, NoMetrics, QueueConfig};
use livevote_ports::{Clock, QueueInspector, VoteStore};
use livevote_postgres::{PgElections, PgVoteStore, StoreConfig};
use livevote_processor::{PersistConfig, PersistService};
use livevote_redis::{RedisConfig, RedisStore};
use livevote_results::{ResultsService, Standing, TallySource};
use livevote_testkit::fixtures::active_election;
use livevote_testkit::{scratch_database, test_server_url};

struct Stack {
    store: PgVoteStore,
    redis: RedisStore,
    queue: MemoryQueue,
    cast: CastVoteService<PgElections, RedisStore, FakeHumanCheck, SystemClock, NoMetrics>,
    persist: PersistService<MemoryQueue, PgVoteStore, PgElections, SystemClock, NoMetrics>,
    results: ResultsService<PgElections, RedisStore, PgVoteStore, MemoryQueue, SystemClock>,
    election: Election,
}

async fn stack(names: &[&str]) -> Stack {
    stack_with(names, VotePolicy::Single).await
}

async fn stack_with(names: &[&str], policy: VotePolicy) -> Stack {
    let clock = SystemClock;
    let pool = scratch_database(&test_server_url(), 8)
        .await
        .expect("a test database (scripts/test.sh starts PostgreSQL)");
    let elections = PgElections::new(pool.clone());
    let store = PgVoteStore::new(pool, StoreConfig::default());
    let redis = RedisStore::connect(RedisConfig {
        url: std::env::var("LIVEVOTE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
        key_prefix: format!("lvtest-{}", uuid::Uuid::new_v4().simple()),
        ..RedisConfig::default()
    })
    .await
    .expect("Redis reachable (scripts/test.sh starts it)");
    let queue = MemoryQueue::new(
        clock,
        QueueConfig {
            votes_per_message: 100,
            ..QueueConfig::default()
        },
    );
    let election = active_election(&elections, names, clock.now(), ChronoDuration::hours(1), |e| {
        e.policy = policy;
    })
    .await;
    let cache = Arc::new(ElectionCache::new(
        elections.clone(),
        CacheConfig {
            max_age: Duration::from_secs(1),
            capacity: 100,
        },
    ));
    let publisher = PublisherConfig {
        linger: Duration::from_millis(2),
        ..PublisherConfig::default()
    };
    let (batcher, _task) = VoteBatcher::start(queue.clone(), redis.clone(), publisher, NoMetrics);
    let cast = CastVoteService::new(
        cache,
        redis.clone(),
        batcher,
        FakeHumanCheck::AlwaysHuman,
        clock,
        NoMetrics,
        CastConfig::default(),
    );
    let persist = PersistService::new(
        queue.clone(),
        store.clone(),
        elections.clone(),
        clock,
        NoMetrics,
        PersistConfig {
            receive_max: 10,
            receive_wait: Duration::from_millis(5),
        },
    );
    let results = ResultsService::new(elections, redis.clone(), store.clone(), queue.clone(), clock);
    Stack {
        store,
        redis,
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

async fn drain(s: &Stack) {
    for _ in 0..10_000 {
        if s.queue.stats().await.unwrap().pending_messages() == 0 {
            return;
        }
        s.persist.run_once().await.unwrap();
    }
    panic!("queue did not drain");
}

/// Rows in the votes table, per candidate, counted by SQL (not through the tallies).
async fn rows_per_candidate(s: &Stack) -> BTreeMap<CandidateId, u64> {
    let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT candidate_id, count(*) FROM votes WHERE election_id = $1 GROUP BY candidate_id",
    )
    .bind(s.election.id().as_uuid())
    .fetch_all(s.store.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(c, n)| (CandidateId::from_uuid(c), n as u64))
        .collect()
}

/// Every accepted vote id is stored, once, with the candidate the client chose.
async fn assert_all_persisted(s: &Stack, accepted: &HashMap<VoteId, CandidateId>) {
    for (id, candidate) in accepted {
        let stored = s
            .store
            .find_vote(*id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("accepted vote {id} is not in PostgreSQL"));
        assert_eq!(stored.record.vote.candidate_id, *candidate, "vote {id}");
    }
    let total: u64 = rows_per_candidate(s).await.values().sum();
    assert_eq!(total, accepted.len() as u64, "no row beyond the accepted votes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_voters_and_five_hundred_repeats_on_postgres_and_redis() {
    let s = Arc::new(stack(&["Ada", "Grace", "Linus", "Barbara"]).await);
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

    assert_all_persisted(&s, &accepted).await;
    let tallies: BTreeMap<CandidateId, u64> = s
        .store
        .persisted_tallies(s.election.id())
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.candidate_id, c.votes))
        .collect();
    assert_eq!(
        tallies,
        rows_per_candidate(&s).await,
        "sum(tally shards) = count(votes)"
    );
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Balanced, "{r:?}");
    assert_eq!(
        (r.counts.accepted, r.counts.persisted, r.counts.duplicates),
        (2000, 2000, 0)
    );
    assert!(r.per_candidate.iter().all(|c| c.accepted == c.persisted));
    let results = s.results.results(s.election.id()).await.unwrap();
    assert_eq!(results.source, TallySource::Live);
    assert_eq!(results.tally.unwrap().total(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_data_the_rebuild_equals_postgresql_and_the_constraint_still_holds() {
    let s = stack(&["A", "B", "C"]).await;
    let mut accepted = HashMap::new();
    for i in 0..30 {
        let receipt = s.cast.cast(vote(&s, &format!("v{i}"), i % 3)).await.unwrap();
        accepted.insert(receipt.vote_id, s.election.candidates()[i % 3].id());
    }
    drain(&s).await;

    // Redis loses everything of this test (its own prefix).
    let raw = Builder::from_config(Config::from_url(&s.redis.config().url).unwrap())
        .build()
        .unwrap();
    raw.init().await.unwrap();
    let keys: Vec<String> = raw
        .custom(
            fred::types::CustomCommand::new_static("KEYS", fred::types::ClusterHash::FirstKey, false),
            vec![format!("{}:*", s.redis.config().key_prefix)],
        )
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let deleted: i64 = raw.del(keys).await.unwrap();
    assert!(deleted >= 30, "claims and tallies gone");
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
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Balanced, "{r:?}");
    let live: BTreeMap<CandidateId, u64> = r
        .per_candidate
        .iter()
        .map(|c| (c.candidate_id, c.accepted))
        .collect();
    assert_eq!(live, rows_per_candidate(&s).await, "rebuild equals PostgreSQL");
    assert!(live.values().all(|n| *n == 10));

    // The fast 409 is gone with the claims; PostgreSQL's unique constraint still refuses
    // a second vote, and shows it to auditors as a conflict.
    let again = s.cast.cast(vote(&s, "v0", 1)).await.unwrap();
    drain(&s).await;
    assert!(s.store.find_vote(again.vote_id).await.unwrap().is_none());
    assert_all_persisted(&s, &accepted).await;
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(
        (r.counts.accepted, r.counts.persisted, r.counts.duplicates),
        (31, 30, 1)
    );
    assert_eq!(r.verdict, Verdict::Balanced);
}

/// The case for `multi`: 50 parallel requests of one viewer with
/// `maxVotes` 5 give exactly five 202s (45 refusals saying 5 of 5 used),
/// stored as five rows in slots 1 to 5, with a balanced reconciliation;
/// other viewers vote alongside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_votes_of_one_multi_viewer_give_exactly_five_and_all_are_stored() {
    let policy = VotePolicy::from_parts("multi", Some(5), None).unwrap();
    let s = Arc::new(stack_with(&["Ada", "Grace", "Linus"], policy).await);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { (i % 3, s.cast.cast(vote(&s, "auth0|superfan", i % 3)).await) })
        })
        .collect();
    let mut accepted: HashMap<VoteId, CandidateId> = HashMap::new();
    let mut numbers = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (c, Ok(receipt)) => {
                accepted.insert(receipt.vote_id, s.election.candidates()[c].id());
                numbers.push(receipt.slot.number);
            }
            (_, Err(CastVoteError::VoteLimitReached(limit))) => {
                assert_eq!(
                    limit,
                    VoteLimitReached {
                        used: 5,
                        max: 5,
                        per_candidate: false
                    }
                );
                refused += 1;
            }
            (_, Err(e)) => panic!("unexpected refusal: {e}"),
        }
    }
    assert_eq!((accepted.len(), refused), (5, 45));
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
    for i in 0..20 {
        let receipt = s
            .cast
            .cast(vote(&s, &format!("auth0|casual-{i}"), i % 3))
            .await
            .unwrap();
        accepted.insert(receipt.vote_id, s.election.candidates()[i % 3].id());
    }
    drain(&s).await;
    assert_all_persisted(&s, &accepted).await;
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Balanced, "{r:?}");
    assert_eq!(
        (r.counts.accepted, r.counts.persisted, r.counts.duplicates),
        (25, 25, 0)
    );
    assert!(r.per_candidate.iter().all(|c| c.accepted == c.persisted), "{r:?}");
    // The superfan's receipts: "n of 5 used".
    let fan = livevote_domain::VoterId::parse("auth0|superfan").unwrap();
    let mut seen = Vec::new();
    for id in accepted.keys() {
        if let Some(receipt) = s.results.receipt(*id, &fan, Some(s.election.id())).await.unwrap() {
            match receipt.standing {
                Some(Standing::Multi { number, used, max }) => {
                    assert_eq!((used, max), (5, 5));
                    seen.push(number);
                }
                other => panic!("a multi receipt without its standing: {other:?}"),
            }
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
}

/// The case for `changeable`: 50 parallel votes of one viewer end
/// with exactly one current vote, the one with the highest change number
/// (the last accepted), in the live and the persisted tallies alike; every
/// change is stored and the reconciliation balances 50 accepted against 50
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_changes_of_one_viewer_end_with_exactly_one_current_vote() {
    let s = Arc::new(stack_with(&["Ada", "Grace", "Linus"], VotePolicy::Changeable).await);
    let processor = {
        let s = s.clone();
        tokio::spawn(async move {
            loop {
                s.persist.run_once().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                (
                    i % 3,
                    s.cast.cast(vote(&s, "auth0|undecided", i % 3)).await.unwrap(),
                )
            })
        })
        .collect();
    let mut accepted: HashMap<VoteId, CandidateId> = HashMap::new();
    let mut last = (0, CandidateId::generate());
    for t in tasks {
        let (c, receipt) = t.await.unwrap();
        let candidate = s.election.candidates()[c].id();
        accepted.insert(receipt.vote_id, candidate);
        if receipt.slot.number > last.0 {
            last = (receipt.slot.number, candidate);
        }
    }
    assert_eq!(last.0, 50);
    drain(&s).await;
    processor.abort();
    assert_all_persisted(&s, &accepted).await;
    let persisted: BTreeMap<CandidateId, u64> = s
        .store
        .persisted_tallies(s.election.id())
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.votes > 0)
        .map(|c| (c.candidate_id, c.votes))
        .collect();
    assert_eq!(
        persisted,
        BTreeMap::from([(last.1, 1)]),
        "one current vote: the newest change"
    );
    let r = s.results.reconcile(s.election.id()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Balanced, "{r:?}");
    assert_eq!(
        (r.counts.accepted, r.counts.persisted, r.counts.duplicates),
        (50, 50, 0)
    );
    for c in &r.per_candidate {
        let expected = u64::from(c.candidate_id == last.1);
        assert_eq!((c.accepted, c.persisted), (expected, expected), "{c:?}");
    }
    // Receipts: the newest change is current, every other one says when it was replaced.
    let viewer = livevote_domain::VoterId::parse("auth0|undecided").unwrap();
    let mut current = 0;
    for id in accepted.keys() {
        let receipt = s
            .results
            .receipt(*id, &viewer, Some(s.election.id()))
            .await
            .unwrap()
            .expect("a stored change has a receipt");
        match receipt.standing {
            Some(Standing::Changeable {
                number,
                current: true,
                replaced_at: None,
            }) => {
                assert_eq!(number, 50);
                current += 1;
            }
            Some(Standing::Changeable {
                number,
                current: false,
                replaced_at: Some(_),
            }) => assert!(number < 50),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(current, 1);
}
