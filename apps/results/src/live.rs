//! Results as many readers see them at once: a short-lived cache in front of
//! the stores, and one feed per watched election that every stream client of
//! that election shares.
//!
//! A poller or a stream client never reads Redis or PostgreSQL itself. The
//! cache (moka's) reads an election's results at most once per `ttl` however
//! many requests arrive (single flight: concurrent misses wait for one read;
//! errors, an unknown election included, are not cached), and
//! a feed task per election reads the stores every `poll` (refreshing the
//! cache for the pollers of that election too), numbers each change and
//! publishes it on a `watch` channel that all its subscribers share. A feed
//! stops when its last subscriber leaves. Admin changes arrive on the change
//! feed (its [`ElectionCopies`] impl) and are published at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use livevote_domain::ElectionId;
use livevote_http::BoxFuture;
use livevote_ports::ElectionCopies;
use moka::future::Cache;
use tokio::sync::{Notify, watch};

use crate::service::{ElectionResults, ResultsError};

/// Reads one election's results from the stores.
pub type Source =
    Arc<dyn Fn(ElectionId) -> BoxFuture<'static, Result<ElectionResults, ResultsError>> + Send + Sync>;

/// Most elections whose results are cached at once.
const MAX_CACHED: u64 = 4096;

/// What changed between two published results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// The first results of a feed.
    Snapshot,
    /// Only counts changed.
    Votes,
    /// Status, finality or embargo changed (counts may have too).
    Status,
}

/// One published state of an election's results.
#[derive(Debug, Clone)]
pub struct Published {
    /// Increases with every publication of this process, across elections.
    pub seq: u64,
    pub change: ChangeType,
    pub results: Arc<ElectionResults>,
    /// The stream's JSON of this publication, written by the first stream
    /// that sends it and reused by every other.
    pub rendered: std::sync::OnceLock<String>,
}

struct Feed {
    tx: watch::Sender<Arc<Published>>,
    poke: Notify,
}

/// The cache and the feeds. Share it behind an `Arc`.
pub struct LiveResults {
    source: Source,
    ttl: Duration,
    poll: Duration,
    cached: Cache<ElectionId, Arc<ElectionResults>>,
    feeds: Mutex<HashMap<ElectionId, Arc<Feed>>>,
    seq: AtomicU64,
}

impl std::fmt::Debug for LiveResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveResults")
            .field("ttl", &self.ttl)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `b` differs from `a` in status, finality or embargo.
fn status_changed(a: &ElectionResults, b: &ElectionResults) -> bool {
    a.status != b.status || a.is_final != b.is_final || a.embargoed != b.embargoed
}

/// Whether `b` shows anything `a` did not (what a viewer would see change).
fn content_changed(a: &ElectionResults, b: &ElectionResults) -> bool {
    status_changed(a, b)
        || a.tally != b.tally
        || a.election.version() != b.election.version()
        || a.source != b.source
}

impl LiveResults {
    /// `ttl`: how old cached results may be (keep it well under a second);
    /// `poll`: how often a feed looks for changes.
    pub fn new(source: Source, ttl: Duration, poll: Duration) -> Self {
        Self {
            source,
            ttl,
            poll,
            cached: Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(ttl)
                .build(),
            feeds: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        }
    }

    /// The results of `id`, at most `ttl` old.
    ///
    /// # Errors
    /// As the source; errors are not cached.
    pub async fn get(&self, id: ElectionId) -> Result<Arc<ElectionResults>, ResultsError> {
        self.cached
            .try_get_with(id, async { (self.source)(id).await.map(Arc::new) })
            .await
            .map_err(|shared: Arc<ResultsError>| {
                // Several waiters share one error; each gets its own copy.
                Arc::try_unwrap(shared).unwrap_or_else(|shared| match &*shared {
                    ResultsError::NotFound(id) => ResultsError::NotFound(*id),
                    ResultsError::Unavailable { what, source } => ResultsError::Unavailable {
                        what,
                        source: anyhow::anyhow!("{source:#}"),
                    },
                })
            })
    }

    /// The results of `id` read from the source now; the cache keeps them
    /// for the readers that come next. A feed reads this way, so its stream
    /// clients see counts at most one `poll` old, not `poll` plus `ttl`.
    async fn fresh(&self, id: ElectionId) -> Result<Arc<ElectionResults>, ResultsError> {
        let results = Arc::new((self.source)(id).await?);
        self.cached.insert(id, results.clone()).await;
        Ok(results)
    }

    /// Elections with a running feed.
    pub fn feeds(&self) -> usize {
        lock(&self.feeds).len()
    }

    /// Subscribes to the feed of `id`, starting it if needed. The receiver
    /// holds the latest publication at once.
    ///
    /// # Errors
    /// As [`LiveResults::get`] when the feed has to start and its first read fails.
    pub async fn subscribe(
        self: &Arc<Self>,
        id: ElectionId,
    ) -> Result<watch::Receiver<Arc<Published>>, ResultsError> {
        if let Some(feed) = lock(&self.feeds).get(&id) {
            return Ok(feed.tx.subscribe());
        }
        let first = self.get(id).await?;
        let mut feeds = lock(&self.feeds);
        // Another subscriber may have started it while we read.
        if let Some(feed) = feeds.get(&id) {
            return Ok(feed.tx.subscribe());
        }
        let (tx, rx) = watch::channel(Arc::new(Published {
            seq: self.next_seq(),
            change: ChangeType::Snapshot,
            results: first,
            rendered: std::sync::OnceLock::new(),
        }));
        let feed = Arc::new(Feed {
            tx,
            poke: Notify::new(),
        });
        feeds.insert(id, feed.clone());
        drop(feeds);
        tokio::spawn(self.clone().run_feed(id, feed));
        Ok(rx)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    async fn run_feed(self: Arc<Self>, id: ElectionId, feed: Arc<Feed>) {
        tracing::debug!(election_id = %id, "results feed started");
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                () = feed.poke.notified() => {}
            }
            {
                let mut feeds = lock(&self.feeds);
                if feed.tx.receiver_count() == 0 {
                    if feeds.get(&id).is_some_and(|f| Arc::ptr_eq(f, &feed)) {
                        feeds.remove(&id);
                    }
                    break;
                }
            }
            let results = match self.fresh(id).await {
                Ok(r) => r,
                Err(error) => {
                    // Subscribers keep the last good results; the next poll tries again.
                    tracing::debug!(election_id = %id, %error, "results feed could not read");
                    continue;
                }
            };
            let current = feed.tx.borrow().clone();
            if !content_changed(&current.results, &results) {
                continue;
            }
            let change = if status_changed(&current.results, &results) {
                ChangeType::Status
            } else {
                ChangeType::Votes
            };
            feed.tx.send_replace(Arc::new(Published {
                seq: self.next_seq(),
                change,
                results,
                rendered: std::sync::OnceLock::new(),
            }));
        }
        tracing::debug!(election_id = %id, "results feed stopped (no subscribers)");
    }
}

/// Admin changes arrive on the change feed: the election's results are
/// forgotten and its feed publishes at once.
impl ElectionCopies for LiveResults {
    async fn forget(&self, id: ElectionId) {
        self.cached.invalidate(&id).await;
        if let Some(feed) = lock(&self.feeds).get(&id) {
            feed.poke.notify_one();
        }
    }

    fn forget_all(&self) {
        self.cached.invalidate_all();
        for feed in lock(&self.feeds).values() {
            feed.poke.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livevote_domain::{Election, ElectionStatus, Tally};
    use livevote_testkit::fixtures::new_election;

    fn results(election: &Election, votes: u64) -> ElectionResults {
        let counts = vec![livevote_domain::CandidateCount {
            candidate_id: election.candidates()[0].id(),
            votes,
        }];
        let tally = Tally::for_election(election, &counts);
        ElectionResults {
            election: Arc::new(election.clone()),
            status: ElectionStatus::Active,
            percentages: tally.percentages(1),
            tally: Some(tally),
            source: crate::TallySource::Live,
            is_final: false,
            embargoed: false,
            generated_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_read_and_feeds_fan_out() {
        let now = chrono::Utc::now();
        let election = Election::create(
            livevote_domain::ElectionId::generate(),
            new_election(
                "Song contest",
                &["Ana", "Ben"],
                now,
                now + chrono::Duration::hours(1),
            ),
            now,
            livevote_domain::CandidateId::generate,
        )
        .unwrap();
        let reads = Arc::new(AtomicU64::new(0));
        let votes = Arc::new(AtomicU64::new(1));
        let source: Source = {
            let (reads, votes, election) = (reads.clone(), votes.clone(), election.clone());
            Arc::new(move |_id| {
                let (reads, votes, election) = (reads.clone(), votes.clone(), election.clone());
                Box::pin(async move {
                    reads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(results(&election, votes.load(Ordering::SeqCst)))
                })
            })
        };
        let live = Arc::new(LiveResults::new(
            source,
            Duration::from_secs(60),
            Duration::from_millis(20),
        ));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let live = live.clone();
            let id = election.id();
            set.spawn(async move { live.get(id).await.map(|r| r.tally.clone()) });
        }
        while let Some(r) = set.join_next().await {
            assert!(r.unwrap().is_ok());
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "50 concurrent readers, one read");

        let mut subscribers = Vec::new();
        for _ in 0..20 {
            subscribers.push(live.subscribe(election.id()).await.unwrap());
        }
        assert_eq!(live.feeds(), 1);
        let first_seq = subscribers[0].borrow().seq;
        votes.store(7, Ordering::SeqCst);
        live.forget(election.id()).await;
        for rx in &mut subscribers {
            rx.changed().await.unwrap();
            let p = rx.borrow_and_update().clone();
            assert!(p.seq > first_seq);
            assert_eq!(p.change, ChangeType::Votes);
            assert_eq!(p.results.tally.as_ref().unwrap().total(), 7);
        }
        drop(subscribers);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(live.feeds(), 0, "the feed stops with its last subscriber");
    }
}
