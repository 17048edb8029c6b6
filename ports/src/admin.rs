//! Election administration: the authoritative write side, with optimistic
//! concurrency and an append-only audit log.

use std::future::Future;

use livevote_domain::{ActorId, Election, ElectionId, ElectionStatus, Timestamp};

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("election {0} not found")]
    NotFound(ElectionId),
    #[error("election {0} already exists")]
    AlreadyExists(ElectionId),
    /// Someone saved the election since it was read.
    #[error("election {id} changed concurrently: read at version {expected}, now at {actual}")]
    VersionConflict {
        id: ElectionId,
        expected: u64,
        actual: u64,
    },
    #[error("election store unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// What an admin did, as recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminAction {
    Created,
    Edited,
    Scheduled,
    Opened,
    Closed,
    Cancelled,
    CandidateAdded,
    CandidateUpdated,
    CandidateRemoved,
    ResultsRevealed,
    ResultsHidden,
}

impl AdminAction {
    pub const ALL: [AdminAction; 11] = [
        AdminAction::Created,
        AdminAction::Edited,
        AdminAction::Scheduled,
        AdminAction::Opened,
        AdminAction::Closed,
        AdminAction::Cancelled,
        AdminAction::CandidateAdded,
        AdminAction::CandidateUpdated,
        AdminAction::CandidateRemoved,
        AdminAction::ResultsRevealed,
        AdminAction::ResultsHidden,
    ];

    /// The stable name stored in the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            AdminAction::Created => "ELECTION_CREATED",
            AdminAction::Edited => "ELECTION_EDITED",
            AdminAction::Scheduled => "ELECTION_SCHEDULED",
            AdminAction::Opened => "ELECTION_OPENED",
            AdminAction::Closed => "ELECTION_CLOSED",
            AdminAction::Cancelled => "ELECTION_CANCELLED",
            AdminAction::CandidateAdded => "CANDIDATE_ADDED",
            AdminAction::CandidateUpdated => "CANDIDATE_UPDATED",
            AdminAction::CandidateRemoved => "CANDIDATE_REMOVED",
            AdminAction::ResultsRevealed => "RESULTS_REVEALED",
            AdminAction::ResultsHidden => "RESULTS_HIDDEN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log; increases with every entry.
    pub seq: u64,
    pub election_id: ElectionId,
    pub actor: ActorId,
    pub action: AdminAction,
    pub at: Timestamp,
    /// The election's version after the change.
    pub version: u64,
    /// A short human-readable account of the change.
    pub details: String,
}

/// A 0-based page of at most `size` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub size: u32,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        u64::from(self.page) * u64::from(self.size)
    }
}

/// A page of results and the total across all pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub content: Vec<T>,
    pub page: u32,
    pub size: u32,
    pub total_elements: u64,
}

impl<T> Page<T> {
    pub fn total_pages(&self) -> u64 {
        if self.size == 0 {
            0
        } else {
            self.total_elements.div_ceil(u64::from(self.size))
        }
    }
}

/// The authoritative store of elections.
pub trait ElectionAdmin: Send + Sync + 'static {
    /// Stores a new election (as built by `Election::create`) and writes a
    /// `Created` audit entry, atomically.
    ///
    /// # Errors
    /// [`AdminError::AlreadyExists`] if the id is taken.
    fn create(
        &self,
        election: &Election,
        actor: &ActorId,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), AdminError>> + Send;

    /// Reads an election for changing it.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    fn load(&self, id: ElectionId) -> impl Future<Output = Result<Election, AdminError>> + Send;

    /// Saves a changed election if the stored version still equals
    /// `election.version()`, bumps the version, and appends an audit entry,
    /// all atomically. Returns the election as saved (new version).
    ///
    /// # Errors
    /// [`AdminError::VersionConflict`] if someone saved it in between (nothing
    /// is written); [`AdminError::NotFound`].
    fn update(
        &self,
        election: &Election,
        action: AdminAction,
        actor: &ActorId,
        details: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<Election, AdminError>> + Send;

    /// Elections, newest first, optionally only those whose *effective* status
    /// at `now` is `status`.
    ///
    /// # Errors
    /// [`AdminError::Unavailable`].
    fn list(
        &self,
        status: Option<ElectionStatus>,
        now: Timestamp,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Election>, AdminError>> + Send;

    /// The audit log of one election, oldest first.
    ///
    /// # Errors
    /// [`AdminError::Unavailable`].
    fn audit_log(
        &self,
        id: ElectionId,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<AuditEntry>, AdminError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for a in AdminAction::ALL {
            assert_eq!(AdminAction::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn total_pages_rounds_up() {
        let page = |total| Page::<()> {
            content: vec![],
            page: 0,
            size: 10,
            total_elements: total,
        };
        assert_eq!(page(0).total_pages(), 0);
        assert_eq!(page(10).total_pages(), 1);
        assert_eq!(page(11).total_pages(), 2);
        assert_eq!(PageRequest { page: 3, size: 20 }.offset(), 60);
    }
}
