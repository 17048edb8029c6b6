//! The shared election cache and the change feed on a real Redis server.

use std::time::Duration;

use crate::common::{PrivateRedis, store, test_config};
use chrono::{Duration as ChronoDuration, Utc};
use livevote_memory::MemoryDatabase;
use livevote_ports::{
    AdminAction, ChangeKind, Clock, ElectionAdmin, ElectionAnnouncer, ElectionCatalog, ElectionChange,
    ElectionChangeFeed, ElectionChanges,
};
use livevote_redis::{RedisConfig, RedisElectionCache};
use livevote_testkit::ManualClock;
use livevote_testkit::fixtures::{active_election, operator};

async fn next_change<C: ElectionChanges>(changes: &mut C) -> ElectionChange {
    tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("a change within 5 s")
        .expect("subscription open")
}

#[tokio::test]
async fn the_cache_serves_the_election_and_an_announced_change_reaches_subscribers_with_the_new_version() {
    let clock = ManualClock::new(Utc::now());
    let db = MemoryDatabase::new(clock.clone());
    let redis = store(test_config()).await;
    let cache = RedisElectionCache::new(redis.clone(), db.clone());
    let now = clock.now();
    let election = active_election(&db, &["Ada", "Grace"], now, ChronoDuration::hours(1), |_| {}).await;

    let first = cache.get(election.id()).await.unwrap().unwrap();
    assert_eq!(first, election);
    // Served from Redis now: the catalog of record going down does not matter.
    db.set_available(false);
    assert_eq!(cache.get(election.id()).await.unwrap().unwrap(), election);
    db.set_available(true);

    let mut changes = redis.subscribe().await.unwrap();
    let mut closing = db.load(election.id()).await.unwrap();
    closing.close(now).unwrap();
    let closed = db
        .update(&closing, AdminAction::Closed, &operator(), "lines closed", now)
        .await
        .unwrap();
    cache.announce(election.id(), ChangeKind::Closed).await.unwrap();
    assert_eq!(
        next_change(&mut changes).await,
        ElectionChange::Changed {
            election_id: election.id(),
            kind: ChangeKind::Closed
        }
    );
    let seen = cache.get(election.id()).await.unwrap().unwrap();
    assert_eq!(
        seen.version(),
        closed.version(),
        "the subscriber refreshes to the new version"
    );
    assert_eq!(seen, closed);

    // Unknown elections are not cached and read as None.
    assert!(
        cache
            .get(livevote_domain::ElectionId::generate())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_slow_reader_never_overwrites_a_newer_cached_version() {
    let clock = ManualClock::new(Utc::now());
    let db = MemoryDatabase::new(clock.clone());
    let redis = store(test_config()).await;
    let now = clock.now();
    let old = active_election(&db, &["A", "B"], now, ChronoDuration::hours(1), |_| {}).await;
    let mut editing = old.clone();
    editing.close(now).unwrap();
    let new = db
        .update(&editing, AdminAction::Closed, &operator(), "", now)
        .await
        .unwrap();
    let cache = RedisElectionCache::new(redis.clone(), db.clone());
    // The announcer writes the new version ...
    cache.announce(new.id(), ChangeKind::Closed).await.unwrap();
    // ... then a reader that fetched the old version before the change fills the cache late.
    let stale_reader = RedisElectionCache::new(redis.clone(), StaleCatalog(old.clone()));
    db.set_available(false);
    assert_eq!(
        stale_reader.get(old.id()).await.unwrap().unwrap(),
        new,
        "served from the cache, which holds the newer version"
    );
    assert_eq!(cache.get(old.id()).await.unwrap().unwrap(), new);
}

/// A catalog of record frozen at one version of one election.
#[derive(Debug, Clone)]
struct StaleCatalog(livevote_domain::Election);

impl ElectionCatalog for StaleCatalog {
    async fn get(
        &self,
        id: livevote_domain::ElectionId,
    ) -> Result<Option<livevote_domain::Election>, livevote_ports::CatalogError> {
        Ok((id == self.0.id()).then(|| self.0.clone()))
    }
}

#[tokio::test]
async fn a_subscriber_resyncs_after_redis_comes_back_and_then_sees_changes_again() {
    let mut server = PrivateRedis::start();
    let config = RedisConfig {
        url: server.url(),
        command_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let redis = store(config).await;
    let clock = ManualClock::new(Utc::now());
    let db = MemoryDatabase::new(clock.clone());
    let cache = RedisElectionCache::new(redis.clone(), db.clone());
    let election = active_election(&db, &["A", "B"], clock.now(), ChronoDuration::hours(1), |_| {}).await;
    let mut changes = redis.subscribe().await.unwrap();

    server.restart();
    assert_eq!(next_change(&mut changes).await, ElectionChange::Resync);
    // Subscribed again: an announcement arrives. (More resyncs may come first:
    // every reconnect yields one, which the contract allows.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no change arrived after the restart"
        );
        if cache.announce(election.id(), ChangeKind::Edited).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        match tokio::time::timeout(Duration::from_millis(500), changes.next()).await {
            Ok(Some(ElectionChange::Changed { election_id, kind })) => {
                assert_eq!((election_id, kind), (election.id(), ChangeKind::Edited));
                break;
            }
            Ok(Some(ElectionChange::Resync)) | Err(_) => continue,
            Ok(None) => panic!("the subscription ended"),
        }
    }
}

#[tokio::test]
async fn the_cache_falls_back_to_the_catalog_while_redis_is_down() {
    let mut server = PrivateRedis::start();
    let redis = store(RedisConfig {
        url: server.url(),
        command_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let clock = ManualClock::new(Utc::now());
    let db = MemoryDatabase::new(clock.clone());
    let election = active_election(&db, &["A", "B"], clock.now(), ChronoDuration::hours(1), |_| {}).await;
    let cache = RedisElectionCache::new(redis, db.clone());
    server.stop();
    assert_eq!(cache.get(election.id()).await.unwrap().unwrap(), election);
    // Both down: an error, never "no such election".
    db.set_available(false);
    assert!(cache.get(election.id()).await.is_err());
}
