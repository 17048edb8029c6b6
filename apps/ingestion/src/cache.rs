//! The in-memory election cache of an ingestion instance (ARCHITECTURE.md, step 2 of a vote).
//!
//! Every vote needs its election, and at peak one hot election is read
//! hundreds of thousands of times a second, so the catalog is asked at most
//! once per `max_age` per election. The cache is moka's: concurrent misses
//! for one election wait for a single catalog read (errors are not cached),
//! entries live `max_age` (at most 1 s, so a close is enforced within a
//! second even when the change feed is down), and at most `capacity`
//! elections are held, unknown ids included, so random ids cannot grow it.
//! The change feed drops an election as soon as an operator opens, closes
//! or edits it, so a close is normally seen within one catalog read.

use std::sync::Arc;
use std::time::Duration;

use livevote_domain::{Election, ElectionId};
use livevote_ports::{CatalogError, ElectionCatalog, ElectionCopies};
use moka::future::Cache;

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Oldest copy served without asking the catalog again. At most 1 s, so a
    /// close is enforced within a second even without the change feed.
    pub max_age: Duration,
    /// Most elections (known or unknown) kept.
    pub capacity: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_millis(500),
            capacity: 10_000,
        }
    }
}

/// Elections by id, read through from an [`ElectionCatalog`]. `None` is
/// cached too: the catalog said there is no such election.
pub struct ElectionCache<C> {
    catalog: C,
    elections: Cache<ElectionId, Option<Arc<Election>>>,
}

impl<C> std::fmt::Debug for ElectionCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectionCache")
            .field("entries", &self.elections.entry_count())
            .finish_non_exhaustive()
    }
}

impl<C: ElectionCatalog> ElectionCache<C> {
    pub fn new(catalog: C, config: CacheConfig) -> Self {
        Self {
            catalog,
            elections: Cache::builder()
                .max_capacity(config.capacity as u64)
                .time_to_live(config.max_age)
                .build(),
        }
    }

    /// The election, or `None` if the catalog has no such election.
    ///
    /// # Errors
    /// The catalog's error; every caller waiting on the failed read gets it.
    pub async fn get(&self, id: ElectionId) -> Result<Option<Arc<Election>>, CatalogError> {
        // A hit, nearly every vote, never builds the catalog read: that
        // future is large (SQL, Redis) and would be copied into every
        // vote's future; a miss boxes it.
        if let Some(hit) = self.elections.get(&id).await {
            return Ok(hit);
        }
        Box::pin(self.load(id)).await
    }

    async fn load(&self, id: ElectionId) -> Result<Option<Arc<Election>>, CatalogError> {
        self.elections
            .try_get_with(id, async { Ok(self.catalog.get(id).await?.map(Arc::new)) })
            .await
            .map_err(|shared: Arc<CatalogError>| {
                // Several waiters share one error; each gets its own copy.
                Arc::try_unwrap(shared).unwrap_or_else(|shared| match &*shared {
                    CatalogError::Unavailable(e) => CatalogError::Unavailable(anyhow::anyhow!("{e:#}")),
                    CatalogError::Unknown(e) => CatalogError::Unknown(anyhow::anyhow!("{e:#}")),
                })
            })
    }

    /// Number of elections held, for metrics and tests (after pending
    /// evictions are applied).
    pub async fn entry_count(&self) -> u64 {
        self.elections.run_pending_tasks().await;
        self.elections.entry_count()
    }
}

/// The change feed drops an election as soon as it changes, everything after a gap.
impl<C: ElectionCatalog> ElectionCopies for ElectionCache<C> {
    async fn forget(&self, id: ElectionId) {
        self.elections.invalidate(&id).await;
    }

    fn forget_all(&self) {
        self.elections.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration as ChronoDuration, Utc};
    use livevote_domain::ActorId;
    use livevote_hosting::SystemClock;
    use livevote_memory::{MemoryBus, MemoryDatabase};
    use livevote_ports::{AdminAction, ChangeKind, ElectionAdmin, ElectionAnnouncer};
    use livevote_testkit::fixtures::new_election;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts catalog reads.
    #[derive(Debug, Clone)]
    struct Counting {
        db: MemoryDatabase,
        reads: Arc<AtomicUsize>,
    }

    impl ElectionCatalog for Counting {
        async fn get(&self, id: ElectionId) -> Result<Option<Election>, CatalogError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.db.get(id).await
        }
    }

    async fn setup() -> (MemoryDatabase, Election) {
        let db = MemoryDatabase::new(SystemClock);
        let now = Utc::now();
        let new = new_election(
            "Cache test",
            &["A", "B"],
            now - ChronoDuration::minutes(1),
            now + ChronoDuration::hours(1),
        );
        let e = livevote_testkit::fixtures::create(new, now);
        db.create(&e, &ActorId::parse("admin").unwrap(), now)
            .await
            .unwrap();
        (db, e)
    }

    /// Moves `e` to SCHEDULED in the store, behind the cache's back.
    async fn schedule(db: &MemoryDatabase, e: &Election) {
        let mut loaded = db.load(e.id()).await.unwrap();
        loaded.schedule(Utc::now()).unwrap();
        let admin = ActorId::parse("admin").unwrap();
        db.update(&loaded, AdminAction::Scheduled, &admin, "", Utc::now())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_make_one_catalog_read() {
        let (db, e) = setup().await;
        let reads = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(ElectionCache::new(
            Counting {
                db,
                reads: reads.clone(),
            },
            CacheConfig {
                max_age: Duration::from_secs(5),
                capacity: 10,
            },
        ));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let cache = cache.clone();
            let id = e.id();
            tasks.push(tokio::spawn(
                async move { cache.get(id).await.unwrap().unwrap().id() },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), e.id());
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "single flight");
        assert!(cache.get(ElectionId::generate()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_close_announced_on_the_feed_is_seen_at_once() {
        let (db, e) = setup().await;
        let bus = MemoryBus::default();
        let cache = Arc::new(ElectionCache::new(
            db.clone(),
            CacheConfig {
                max_age: Duration::from_secs(60),
                capacity: 10,
            },
        ));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let follower = {
            let cache = cache.clone();
            let bus = bus.clone();
            tokio::spawn(async move {
                livevote_redis::follow_changes(&bus, &*cache, async { stop_rx.await.unwrap_or(()) }).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cached = cache.get(e.id()).await.unwrap().unwrap();
        assert_eq!(cached.stored_status(), livevote_domain::ElectionStatus::Draft);
        schedule(&db, &e).await;
        bus.announce(e.id(), ChangeKind::Scheduled).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let seen = cache.get(e.id()).await.unwrap().unwrap();
        assert_eq!(
            seen.stored_status(),
            livevote_domain::ElectionStatus::Scheduled,
            "max_age is 60 s: only the feed explains this"
        );
        stop_tx.send(()).unwrap();
        follower.await.unwrap();
    }

    #[tokio::test]
    async fn without_the_feed_a_change_is_seen_once_the_copy_is_max_age_old() {
        let (db, e) = setup().await;
        let cache = ElectionCache::new(
            db.clone(),
            CacheConfig {
                max_age: Duration::from_millis(200),
                capacity: 10,
            },
        );
        let before = cache.get(e.id()).await.unwrap().unwrap();
        assert_eq!(before.stored_status(), livevote_domain::ElectionStatus::Draft);
        schedule(&db, &e).await;
        // Nobody announced the change: the copy is served until it is max_age old, then read again.
        let soon = cache.get(e.id()).await.unwrap().unwrap();
        assert_eq!(soon.stored_status(), livevote_domain::ElectionStatus::Draft);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let later = cache.get(e.id()).await.unwrap().unwrap();
        assert_eq!(later.stored_status(), livevote_domain::ElectionStatus::Scheduled);
    }

    #[tokio::test]
    async fn capacity_bounds_the_cache() {
        let (db, e) = setup().await;
        let cache = ElectionCache::new(
            db,
            CacheConfig {
                max_age: Duration::from_secs(60),
                capacity: 3,
            },
        );
        for _ in 0..50 {
            assert!(cache.get(ElectionId::generate()).await.unwrap().is_none());
        }
        assert!(cache.entry_count().await <= 3);
        assert!(
            cache.get(e.id()).await.unwrap().is_some(),
            "known elections are still served"
        );
    }

    #[tokio::test]
    async fn catalog_errors_surface_when_nothing_is_cached() {
        let (db, e) = setup().await;
        db.set_available(false);
        let cache = ElectionCache::new(db.clone(), CacheConfig::default());
        assert!(matches!(
            cache.get(e.id()).await,
            Err(CatalogError::Unavailable(_))
        ));
        db.set_available(true);
        assert!(cache.get(e.id()).await.unwrap().is_some());
    }
}
