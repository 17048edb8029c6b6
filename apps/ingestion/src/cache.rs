//! The in-memory election cache of an ingestion instance (ARCHITECTURE.md, step 2 of a vote).
//!
//! Every vote needs its election, and at peak one hot election is read
//! hundreds of thousands of times a second, so the catalog is asked at most
//! once per `max_age` per election (single flight), and readers keep using
//! the copy they have while one of them refreshes it. The change feed marks
//! entries stale as soon as an operator opens, closes or edits an election,
//! so a close is seen within one fetch; `max_age` (at most 1 s) bounds the
//! staleness even when the feed is down. The cache holds at most `capacity`
//! elections, unknown ids included, so random ids cannot grow it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use livevote_domain::{Election, ElectionId};
use livevote_ports::{CatalogError, ElectionCatalog, ElectionChange, ElectionChangeFeed};
use tokio::time::Instant;

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

#[derive(Debug, Clone)]
struct Cached {
    /// `None`: the catalog said there is no such election.
    election: Option<Arc<Election>>,
    fetched: Instant,
    stale: bool,
}

#[derive(Debug, Default)]
struct Slot {
    current: RwLock<Option<Cached>>,
    /// Held by the one caller refreshing this slot.
    refresh: tokio::sync::Mutex<()>,
}

/// Elections by id, refreshed from an [`ElectionCatalog`].
#[derive(Debug)]
pub struct ElectionCache<C> {
    catalog: C,
    slots: RwLock<HashMap<ElectionId, Arc<Slot>>>,
    config: CacheConfig,
}

impl<C: ElectionCatalog> ElectionCache<C> {
    pub fn new(catalog: C, config: CacheConfig) -> Self {
        Self {
            catalog,
            slots: RwLock::default(),
            config,
        }
    }

    /// The election, or `None` if the catalog has no such election.
    ///
    /// # Errors
    /// The catalog's error, when there is no copy to fall back on. A stale
    /// copy is never served past twice `max_age`: then the catalog's error wins.
    pub async fn get(&self, id: ElectionId) -> Result<Option<Arc<Election>>, CatalogError> {
        let Some(slot) = self.slot(id) else {
            // Full of other elections: serve this one uncached.
            return Ok(self.catalog.get(id).await?.map(Arc::new));
        };
        let seen = slot.current.read().expect("cache slot lock").clone();
        if let Some(c) = &seen
            && self.is_fresh(c)
        {
            return Ok(c.election.clone());
        }
        // Someone else is refreshing: keep serving the copy we have, unless it is too old.
        let guard = match slot.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                if let Some(c) = &seen
                    && c.fetched.elapsed() < self.config.max_age * 2
                {
                    return Ok(c.election.clone());
                }
                slot.refresh.lock().await
            }
        };
        // The refresh we waited for may have done the work.
        if let Some(c) = slot.current.read().expect("cache slot lock").as_ref()
            && self.is_fresh(c)
        {
            return Ok(c.election.clone());
        }
        let fetched = Instant::now();
        let election = self.catalog.get(id).await?.map(Arc::new);
        *slot.current.write().expect("cache slot lock") = Some(Cached {
            election: election.clone(),
            fetched,
            stale: false,
        });
        drop(guard);
        Ok(election)
    }

    /// Marks one election stale: the next read asks the catalog.
    pub fn invalidate(&self, id: ElectionId) {
        if let Some(slot) = self.slots.read().expect("cache lock").get(&id)
            && let Some(c) = slot.current.write().expect("cache slot lock").as_mut()
        {
            c.stale = true;
        }
    }

    /// Marks every election stale.
    pub fn invalidate_all(&self) {
        for slot in self.slots.read().expect("cache lock").values() {
            if let Some(c) = slot.current.write().expect("cache slot lock").as_mut() {
                c.stale = true;
            }
        }
    }

    /// Number of elections held, for metrics and tests.
    pub fn len(&self) -> usize {
        self.slots.read().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_fresh(&self, c: &Cached) -> bool {
        !c.stale && c.fetched.elapsed() < self.config.max_age
    }

    fn slot(&self, id: ElectionId) -> Option<Arc<Slot>> {
        if let Some(slot) = self.slots.read().expect("cache lock").get(&id) {
            return Some(slot.clone());
        }
        let mut slots = self.slots.write().expect("cache lock");
        if let Some(slot) = slots.get(&id) {
            return Some(slot.clone());
        }
        if slots.len() >= self.config.capacity {
            // Drop what is not worth keeping: unknown ids and anything past its age.
            let max_age = self.config.max_age;
            slots.retain(
                |_, slot| match slot.current.try_read().ok().and_then(|c| c.clone()) {
                    Some(c) => c.election.is_some() && c.fetched.elapsed() < max_age * 4,
                    None => true, // being fetched right now
                },
            );
            if slots.len() >= self.config.capacity {
                return None;
            }
        }
        let slot = Arc::new(Slot::default());
        slots.insert(id, slot.clone());
        Some(slot)
    }

    /// Follows the change feed until `shutdown` resolves: each change marks
    /// its election stale, a gap marks everything stale. When the feed fails
    /// it resubscribes with backoff, marking everything stale once back
    /// (changes may have been missed meanwhile).
    pub async fn follow<F: ElectionChangeFeed>(
        &self,
        feed: &F,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        livevote_redis::follow_changes(
            feed,
            |change| match change {
                ElectionChange::Changed { election_id, .. } => self.invalidate(election_id),
                ElectionChange::Resync => self.invalidate_all(),
            },
            shutdown,
        )
        .await;
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
        let e = Election::create(ElectionId::generate(), new, now).unwrap();
        db.create(&e, &ActorId::parse("admin").unwrap(), now)
            .await
            .unwrap();
        (db, e)
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
                cache.follow(&bus, async { stop_rx.await.unwrap_or(()) }).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cached = cache.get(e.id()).await.unwrap().unwrap();
        assert_eq!(cached.stored_status(), livevote_domain::ElectionStatus::Draft);
        let mut loaded = db.load(e.id()).await.unwrap();
        loaded.schedule(Utc::now()).unwrap();
        let admin = ActorId::parse("admin").unwrap();
        db.update(&loaded, AdminAction::Scheduled, &admin, "", Utc::now())
            .await
            .unwrap();
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
        assert!(cache.len() <= 3);
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
