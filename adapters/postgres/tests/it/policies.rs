//! Vote policies in the PostgreSQL vote store: `multi` slots and their
//! limits, `changeable` current votes and the tallies that follow them,
//! whatever order and however often the votes arrive.

use std::collections::{BTreeMap, HashMap};

use crate::common::{fresh_database, insert_election};
use chrono::{Duration, SubsecRound, Utc};
use livevote_domain::{CandidateId, Election, VotePolicy, VoteRecord, VoteSlot};
use livevote_ports::{PersistOutcome, StoreError, VoteStore};
use livevote_postgres::{PgVoteStore, StoreConfig};
use livevote_testkit::fixtures::{new_election, record};

async fn setup(policy: VotePolicy) -> (PgVoteStore, Election) {
    let pool = fresh_database().await;
    let now = Utc::now().trunc_subsecs(6);
    let mut new = new_election(
        "Policy test",
        &["A", "B", "C"],
        now - Duration::minutes(1),
        now + Duration::hours(1),
    );
    new.policy = policy;
    let election = livevote_testkit::fixtures::create(new, now);
    insert_election(&pool, &election).await;
    (PgVoteStore::new(pool, StoreConfig::default()), election)
}

fn vote(e: &Election, voter: &str, candidate: usize, number: u32, per_candidate: Option<u16>) -> VoteRecord {
    let mut r = record(e, voter, candidate, Utc::now().trunc_subsecs(6));
    r.vote.slot = VoteSlot {
        number,
        per_candidate,
    };
    r
}

async fn tallies(store: &PgVoteStore, e: &Election) -> BTreeMap<CandidateId, u64> {
    store
        .persisted_tallies(e.id())
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.votes > 0)
        .map(|c| (c.candidate_id, c.votes))
        .collect()
}

async fn rows(store: &PgVoteStore, e: &Election) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM votes WHERE election_id = $1")
        .bind(e.id().as_uuid())
        .fetch_one(store.pool())
        .await
        .unwrap();
    n as u64
}

fn multi(max: i64, per: Option<i64>) -> VotePolicy {
    VotePolicy::from_parts("multi", Some(max), per).unwrap()
}

#[tokio::test]
async fn multi_stores_one_vote_per_slot_and_never_a_slot_past_the_limit() {
    let (store, e) = setup(multi(3, None)).await;
    let first = vec![
        vote(&e, "fan", 0, 1, None),
        vote(&e, "fan", 0, 2, None),
        vote(&e, "fan", 1, 3, None),
    ];
    let report = store.persist_batch(&first).await.unwrap();
    assert_eq!(report.inserted(), 3);
    // Slot 4 of a 3-vote election: refused whole, nothing written.
    let past = vote(&e, "fan", 2, 4, None);
    match store
        .persist_batch(&[past.clone(), vote(&e, "other", 2, 1, None)])
        .await
    {
        Err(StoreError::UnknownReference(ids)) => assert_eq!(ids, vec![past.vote.vote_id]),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Slot 2 again under another vote id (Redis lost its keys): a conflict.
    let again = vote(&e, "fan", 2, 2, None);
    let report = store
        .persist_batch(&[again.clone(), first[0].clone()])
        .await
        .unwrap();
    assert_eq!(
        report.outcomes,
        vec![
            PersistOutcome::Conflict {
                existing: first[1].vote.vote_id
            },
            PersistOutcome::AlreadyPersisted
        ]
    );
    assert_eq!(rows(&store, &e).await, 3);
    let t = tallies(&store, &e).await;
    assert_eq!(t.get(&e.candidates()[0].id()), Some(&2));
    assert_eq!(t.get(&e.candidates()[1].id()), Some(&1));
    let counts = store.counts(e.id()).await.unwrap();
    assert_eq!((counts.persisted, counts.duplicates), (3, 1));
}

#[tokio::test]
async fn multi_per_candidate_slots_are_unique_too() {
    let (store, e) = setup(multi(5, Some(2))).await;
    let ok = vec![
        vote(&e, "fan", 0, 1, Some(1)),
        vote(&e, "fan", 0, 2, Some(2)),
        vote(&e, "fan", 1, 3, Some(1)),
    ];
    assert_eq!(store.persist_batch(&ok).await.unwrap().inserted(), 3);
    // A free slot but a per-candidate slot already taken: a conflict.
    let third_for_a = vote(&e, "fan", 0, 4, Some(1));
    let report = store.persist_batch(&[third_for_a]).await.unwrap();
    assert_eq!(
        report.outcomes,
        vec![PersistOutcome::Conflict {
            existing: ok[0].vote.vote_id
        }]
    );
    // Per-candidate slot 3 of a limit of 2, or no per-candidate slot at all: refused.
    for bad in [vote(&e, "fan", 0, 4, Some(3)), vote(&e, "fan", 0, 4, None)] {
        assert!(matches!(
            store.persist_batch(&[bad]).await,
            Err(StoreError::UnknownReference(_))
        ));
    }
    assert_eq!(rows(&store, &e).await, 3);
    assert_eq!(store.counts(e.id()).await.unwrap().persisted, 3);
}

#[tokio::test]
async fn a_single_election_refuses_any_slot_but_the_first() {
    let (store, e) = setup(VotePolicy::Single).await;
    assert!(matches!(
        store.persist_batch(&[vote(&e, "v", 0, 2, None)]).await,
        Err(StoreError::UnknownReference(_))
    ));
    let report = store
        .persist_batch(&[vote(&e, "v", 0, 1, None), vote(&e, "v", 1, 1, None)])
        .await
        .unwrap();
    assert_eq!(report.inserted(), 1);
    assert_eq!(report.conflicts(), 1);
}

#[tokio::test]
async fn changeable_counts_the_highest_change_whatever_the_order() {
    let (store, e) = setup(VotePolicy::Changeable).await;
    let [a, b, c] = [0, 1, 2].map(|i| e.candidates()[i].id());
    let changes = [
        vote(&e, "fan", 0, 1, None),
        vote(&e, "fan", 1, 2, None),
        vote(&e, "fan", 2, 3, None),
    ];
    // The newest first, then the oldest, then the middle one.
    for i in [2, 0, 1] {
        let report = store.persist_batch(&[changes[i].clone()]).await.unwrap();
        assert_eq!(report.inserted(), 1);
        assert_eq!(
            tallies(&store, &e).await,
            BTreeMap::from([(c, 1)]),
            "after change {i}"
        );
    }
    // Redelivery of everything, and in one batch: nothing moves.
    let report = store.persist_batch(&changes).await.unwrap();
    assert_eq!(report.already_persisted(), 3);
    assert_eq!(tallies(&store, &e).await, BTreeMap::from([(c, 1)]));
    let counts = store.counts(e.id()).await.unwrap();
    assert_eq!(counts.persisted, 3, "every change is stored");
    assert_eq!(rows(&store, &e).await, 3);

    // Another voter: two changes in one batch, then a newer one alone.
    let batch = [vote(&e, "other", 0, 1, None), vote(&e, "other", 1, 2, None)];
    store.persist_batch(&batch).await.unwrap();
    assert_eq!(tallies(&store, &e).await, BTreeMap::from([(b, 1), (c, 1)]));
    store
        .persist_batch(&[vote(&e, "other", 0, 3, None)])
        .await
        .unwrap();
    assert_eq!(tallies(&store, &e).await, BTreeMap::from([(a, 1), (c, 1)]));
    assert_eq!(store.counts(e.id()).await.unwrap().persisted, 6);
}

/// Many voters changing their vote, every change stored by one of several
/// concurrent batches in a shuffled order: the tallies are exactly each
/// voter's highest change, and stored = rows.
#[tokio::test]
async fn changeable_tallies_are_exact_under_concurrent_batches() {
    let (store, e) = setup(VotePolicy::Changeable).await;
    let voters = 200;
    let mut all: Vec<VoteRecord> = Vec::new();
    let mut current: HashMap<String, (u32, usize)> = HashMap::new();
    for v in 0..voters {
        let changes = 1 + (v % 5) as u32;
        for n in 1..=changes {
            let candidate = ((v as u32 * 7 + n * 3) % 3) as usize;
            all.push(vote(&e, &format!("voter-{v}"), candidate, n, None));
            current.insert(format!("voter-{v}"), (n, candidate));
        }
    }
    // A fixed shuffle: reverse every other chunk, then interleave.
    let mut shuffled: Vec<VoteRecord> = Vec::with_capacity(all.len());
    for (i, chunk) in all.chunks(7).enumerate() {
        if i % 2 == 0 {
            shuffled.extend(chunk.iter().rev().cloned());
        } else {
            shuffled.extend(chunk.iter().cloned());
        }
    }
    let batches: Vec<Vec<VoteRecord>> = shuffled.chunks(40).map(<[_]>::to_vec).collect();
    let mut tasks = Vec::new();
    for batch in batches {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Each batch twice: redelivery changes nothing.
            store.persist_batch(&batch).await.unwrap();
            store.persist_batch(&batch).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut expected: BTreeMap<CandidateId, u64> = BTreeMap::new();
    for (_, candidate) in current.values() {
        *expected.entry(e.candidates()[*candidate].id()).or_default() += 1;
    }
    assert_eq!(tallies(&store, &e).await, expected);
    assert_eq!(rows(&store, &e).await, all.len() as u64);
    assert_eq!(store.counts(e.id()).await.unwrap().persisted, all.len() as u64);
}
