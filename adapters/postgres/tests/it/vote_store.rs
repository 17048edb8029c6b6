//! The PostgreSQL vote store against a real server. Each test gets its own
//! freshly created and migrated database, so tests run in parallel.
//! Server: `LIVEVOTE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), which must allow CREATE DATABASE.

use std::collections::{BTreeMap, HashSet};

use crate::common::{fresh_database, insert_election};
use chrono::{Duration, SubsecRound, Utc};
use livevote_domain::{CandidateId, Election, ElectionId, VoteRecord};
use livevote_ports::{PersistOutcome, StoreError, VoteStore};
use livevote_postgres::{MIGRATOR, PgVoteStore, StoreConfig, migrate};
use livevote_testkit::fixtures::{new_election, record};
use sqlx::PgPool;

async fn setup() -> (PgVoteStore, Election) {
    let pool = fresh_database().await;
    let now = Utc::now().trunc_subsecs(6);
    let new = new_election(
        "Store test",
        &["A", "B", "C"],
        now - Duration::minutes(1),
        now + Duration::hours(1),
    );
    let election = livevote_testkit::fixtures::create(new, now);
    insert_election(&pool, &election).await;
    (PgVoteStore::new(pool, StoreConfig::default()), election)
}

async fn count_rows(store: &PgVoteStore, e: &Election) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM votes WHERE election_id = $1")
        .bind(e.id().as_uuid())
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn tallies(store: &PgVoteStore, e: &Election) -> BTreeMap<CandidateId, u64> {
    store
        .persisted_tallies(e.id())
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.candidate_id, c.votes))
        .collect()
}

#[tokio::test]
async fn migrations_apply_once() {
    let pool = fresh_database().await;
    assert!(
        migrate(&pool).await.unwrap().is_empty(),
        "a second run applies nothing"
    );
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
}

/// A database of its own with nothing in it.
async fn empty_database() -> PgPool {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let options: PgConnectOptions = livevote_testkit::test_server_url().parse().unwrap();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .unwrap();
    let name = format!("livevote_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.database(&name))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_database_migrated_by_the_old_runner_is_adopted_without_running_its_migrations_again() {
    let pool = empty_database().await;
    // What the hand-written runner left behind: the schema and its own record.
    let first = MIGRATOR.iter().next().unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(first.sql.as_str().to_owned()))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, name text NOT NULL,
             checksum bigint NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version, name, checksum) VALUES (1, 'init', 0);",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Running 0001 again would fail on its existing tables: it is adopted, not run.
    let applied = migrate(&pool).await.unwrap();
    assert!(!applied.contains(&1), "{applied:?}");
    let recorded: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(recorded, MIGRATOR.iter().map(|m| m.version).collect::<Vec<_>>());
    assert!(migrate(&pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_applied_migration_whose_text_changed_is_refused() {
    let pool = fresh_database().await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 1")
        .execute(&pool)
        .await
        .unwrap();
    let error = migrate(&pool).await.unwrap_err();
    assert!(format!("{error:#}").contains("1"), "{error:#}");
    assert!(
        matches!(
            error.downcast_ref::<sqlx::migrate::MigrateError>(),
            Some(sqlx::migrate::MigrateError::VersionMismatch(1))
        ),
        "{error:#}"
    );
}

#[tokio::test]
async fn the_same_batch_three_times_changes_nothing_and_conflicts_are_recorded_not_counted() {
    let (store, e) = setup().await;
    let now = Utc::now().trunc_subsecs(6);
    let mut batch: Vec<VoteRecord> = (0..1000)
        .map(|i| record(&e, &format!("voter-{i}"), i % 3, now))
        .collect();
    // The same voter again with another vote id (a conflict), and an exact copy (a redelivery).
    let second = record(&e, "voter-7", 2, now);
    batch.push(second.clone());
    batch.push(batch[10].clone());
    for round in 0..3 {
        let report = store.persist_batch(&batch).await.unwrap();
        let first = if round == 0 {
            PersistOutcome::Inserted
        } else {
            PersistOutcome::AlreadyPersisted
        };
        assert!(
            report.outcomes[..1000].iter().all(|o| *o == first),
            "round {round}"
        );
        assert_eq!(
            report.outcomes[1000],
            PersistOutcome::Conflict {
                existing: batch[7].vote.vote_id
            }
        );
        assert_eq!(report.outcomes[1001], PersistOutcome::AlreadyPersisted);
    }
    assert_eq!(count_rows(&store, &e).await, 1000);
    let counts = store.counts(e.id()).await.unwrap();
    assert_eq!(counts.persisted, 1000);
    assert_eq!(
        counts.duplicates, 1,
        "one conflicting vote id, however often it is redelivered"
    );
    assert_eq!(tallies(&store, &e).await.values().sum::<u64>(), 1000);
    assert!(store.find_vote(second.vote.vote_id).await.unwrap().is_none());
    let stored = store.find_vote(batch[3].vote.vote_id).await.unwrap().unwrap();
    assert_eq!(stored.record, batch[3]);
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM vote_conflicts WHERE existing_vote_id = $1")
        .bind(batch[7].vote.vote_id.as_uuid())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(recorded, 1);
}

#[tokio::test]
async fn tally_shards_sum_to_the_rows_after_twenty_concurrent_batches() {
    let (store, e) = setup().await;
    let now = Utc::now().trunc_subsecs(6);
    let mut tasks = Vec::new();
    for b in 0..20 {
        let store = store.clone();
        // Overlapping voters between neighbouring batches: conflicts race across transactions.
        let batch: Vec<VoteRecord> = (0..500)
            .map(|i| record(&e, &format!("voter-{}", b * 400 + i), (b + i) % 3, now))
            .collect();
        tasks.push(tokio::spawn(
            async move { store.persist_batch(&batch).await.unwrap() },
        ));
    }
    let mut inserted = 0;
    let mut conflicts = 0;
    for t in tasks {
        let report = t.await.unwrap();
        inserted += report.inserted();
        conflicts += report.conflicts();
    }
    let rows = count_rows(&store, &e).await;
    assert_eq!(rows, 19 * 400 + 500, "one row per distinct voter");
    assert_eq!(inserted as i64, rows);
    assert_eq!(conflicts, 20 * 500 - rows as usize);
    let per_candidate: BTreeMap<CandidateId, u64> = {
        let grouped: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
            "SELECT candidate_id, count(*) FROM votes WHERE election_id = $1 GROUP BY candidate_id",
        )
        .bind(e.id().as_uuid())
        .fetch_all(store.pool())
        .await
        .unwrap();
        grouped
            .into_iter()
            .map(|(c, n)| (CandidateId::from_uuid(c), n as u64))
            .collect()
    };
    assert_eq!(
        tallies(&store, &e).await,
        per_candidate,
        "sum(tally shards) = count(votes), per candidate"
    );
    let shards: i64 = sqlx::query_scalar("SELECT count(DISTINCT shard) FROM tally_shards")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(shards > 1, "increments spread over shards");
    let counts = store.counts(e.id()).await.unwrap();
    assert_eq!(
        (counts.persisted, counts.duplicates),
        (rows as u64, conflicts as u64)
    );
}

#[tokio::test]
async fn unknown_elections_and_candidates_write_nothing() {
    let (store, e) = setup().await;
    let now = Utc::now().trunc_subsecs(6);
    let good = record(&e, "voter-1", 0, now);
    let mut stranger = record(&e, "voter-2", 0, now);
    stranger.vote.candidate_id = CandidateId::generate();
    let mut lost = record(&e, "voter-3", 0, now);
    lost.vote.election_id = ElectionId::generate();
    match store.persist_batch(&[good, stranger.clone(), lost.clone()]).await {
        Err(StoreError::UnknownReference(ids)) => {
            let ids: HashSet<_> = ids.into_iter().collect();
            assert_eq!(ids, HashSet::from([stranger.vote.vote_id, lost.vote.vote_id]));
        }
        other => panic!("expected UnknownReference, got {other:?}"),
    }
    assert_eq!(count_rows(&store, &e).await, 0);
    assert_eq!(store.counts(e.id()).await.unwrap().persisted, 0);
}

#[tokio::test]
async fn within_one_batch_the_first_vote_of_a_voter_wins() {
    let (store, e) = setup().await;
    let now = Utc::now().trunc_subsecs(6);
    let first = record(&e, "twice", 0, now);
    let second = record(&e, "twice", 1, now);
    let report = store.persist_batch(&[first.clone(), second]).await.unwrap();
    assert_eq!(
        report.outcomes,
        vec![
            PersistOutcome::Inserted,
            PersistOutcome::Conflict {
                existing: first.vote.vote_id
            }
        ]
    );
    assert_eq!(tallies(&store, &e).await.get(&e.candidates()[0].id()), Some(&1));
    assert_eq!(tallies(&store, &e).await.get(&e.candidates()[1].id()), None);
}

#[tokio::test]
async fn hourly_counts_group_by_the_utc_hour_of_acceptance() {
    let (store, e) = setup().await;
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
    };
    let batch = vec![
        record(&e, "a", 0, at("2026-11-21T20:00:00Z")),
        record(&e, "b", 1, at("2026-11-21T20:59:59.999999Z")),
        record(&e, "c", 2, at("2026-11-21T21:00:00Z")),
        // 22:30 in UTC+1 is 21:30 UTC: the hour is taken in UTC whatever the offset.
        record(&e, "d", 0, at("2026-11-21T22:30:00+01:00")),
        record(&e, "e", 0, at("2026-11-22T01:15:00Z")),
    ];
    store.persist_batch(&batch).await.unwrap();
    let hours: Vec<(String, u64)> = store
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
            ("2026-11-21T21:00:00+00:00".to_owned(), 2),
            ("2026-11-22T01:00:00+00:00".to_owned(), 1),
        ]
    );
    assert!(
        store
            .hourly_counts(ElectionId::generate())
            .await
            .unwrap()
            .is_empty()
    );
}
