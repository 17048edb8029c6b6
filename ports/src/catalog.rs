//! The read side of elections, and the feed that announces their changes.
//!
//! Ingestion keeps elections in memory and must stop accepting votes within
//! one second of an operator closing an election. It reads through
//! [`ElectionCatalog`] and listens on [`ElectionChangeFeed`]; the admin side
//! announces every change through [`ElectionAnnouncer`].

use std::future::Future;

use livevote_domain::{Election, ElectionId};

/// Why the catalog or the feed failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("election catalog unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// Reads elections.
pub trait ElectionCatalog: Send + Sync + 'static {
    /// The election as currently stored, or `None` if there is no such election.
    ///
    /// # Errors
    /// [`CatalogError::Unavailable`] when the backing store cannot be reached.
    /// Adapters MUST NOT answer `Ok(None)` for an election they failed to read.
    fn get(&self, id: ElectionId) -> impl Future<Output = Result<Option<Election>, CatalogError>> + Send;
}

/// What happened to an election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Created,
    Edited,
    Scheduled,
    Opened,
    Closed,
    Cancelled,
    VisibilityChanged,
}

impl ChangeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Edited => "edited",
            ChangeKind::Scheduled => "scheduled",
            ChangeKind::Opened => "opened",
            ChangeKind::Closed => "closed",
            ChangeKind::Cancelled => "cancelled",
            ChangeKind::VisibilityChanged => "visibility_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ChangeKind::Created,
            ChangeKind::Edited,
            ChangeKind::Scheduled,
            ChangeKind::Opened,
            ChangeKind::Closed,
            ChangeKind::Cancelled,
            ChangeKind::VisibilityChanged,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One item of the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionChange {
    /// This election changed: drop or refresh any cached copy.
    Changed {
        election_id: ElectionId,
        kind: ChangeKind,
    },
    /// The feed may have missed changes (a reconnect, a lagging subscriber):
    /// refresh every cached election.
    Resync,
}

/// A live subscription to election changes.
pub trait ElectionChanges: Send + 'static {
    /// The next change. `None` means the subscription ended for good (the
    /// adapter shut down); callers subscribe again. Adapters MUST yield
    /// [`ElectionChange::Resync`] after any gap in which changes may have been
    /// missed, rather than skipping them silently.
    fn next(&mut self) -> impl Future<Output = Option<ElectionChange>> + Send;
}

/// Subscribes to election changes.
pub trait ElectionChangeFeed: Send + Sync + 'static {
    type Changes: ElectionChanges;

    /// A new subscription that sees every change announced after this returns.
    ///
    /// # Errors
    /// [`CatalogError::Unavailable`] when the feed cannot be reached.
    fn subscribe(&self) -> impl Future<Output = Result<Self::Changes, CatalogError>> + Send;
}

/// Holds copies of elections, or of what is derived from them, that an
/// election change makes stale (ingestion's election cache, the results cache).
pub trait ElectionCopies: Send + Sync {
    /// Drops what is held of `id`: the next read goes to the source.
    fn forget(&self, id: ElectionId) -> impl Future<Output = ()> + Send;
    /// Drops everything held (changes may have been missed).
    fn forget_all(&self);
}

/// Announces election changes to every subscriber, in every process.
pub trait ElectionAnnouncer: Send + Sync + 'static {
    /// Announces that `election_id` changed. Adapters MUST deliver to every
    /// live subscription or fail.
    ///
    /// # Errors
    /// [`CatalogError::Unavailable`] when the feed cannot be reached.
    fn announce(
        &self,
        election_id: ElectionId,
        kind: ChangeKind,
    ) -> impl Future<Output = Result<(), CatalogError>> + Send;
}
