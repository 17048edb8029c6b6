//! Election administration use cases: every change is checked by the domain,
//! saved with optimistic concurrency together with its audit entry (actor's
//! `sub`), and then announced on the change feed so every ingestion and
//! results instance refreshes within a second.

use std::time::Duration;

use backon::Retryable;

use livevote_domain::{
    ActorId, CancelReason, CandidateDraft, CandidateId, Election, ElectionEdit, ElectionError, ElectionId,
    ElectionStatus, NewElection, ResultsVisibility,
};
use livevote_ports::{
    AdminAction, AdminError, AuditEntry, ChangeKind, Clock, ElectionAdmin, ElectionAnnouncer, Page,
    PageRequest,
};

/// Why an admin operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminServiceError {
    #[error("election {0} not found")]
    NotFound(ElectionId),
    /// The domain refused the change (locked, invalid transition, bad candidates...).
    #[error(transparent)]
    Rejected(ElectionError),
    /// Another admin saved the election between our read and our write.
    #[error("election {0} was changed by someone else at the same time; reload and retry")]
    Concurrent(ElectionId),
    #[error("election store unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Saved, but the other instances could not be told: they pick the change
    /// up when their cached copy expires.
    #[error("the change is saved (version {version}) but could not be announced")]
    NotAnnounced {
        version: u64,
        #[source]
        source: anyhow::Error,
    },
}

impl From<AdminError> for AdminServiceError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound(id) => AdminServiceError::NotFound(id),
            AdminError::VersionConflict { id, .. } => AdminServiceError::Concurrent(id),
            other => AdminServiceError::Unavailable(anyhow::Error::new(other)),
        }
    }
}

/// How many times an announcement is tried before the caller is told.
const ANNOUNCE_ATTEMPTS: usize = 3;

/// Election administration. Cheap to clone when its parts are.
#[derive(Debug, Clone)]
pub struct AdminService<Elections, Announcer, Time> {
    store: Elections,
    announcer: Announcer,
    clock: Time,
    /// How far after a "close now" the election's end is set ([`Election::close_with_grace`]).
    close_grace: chrono::Duration,
}

impl<Elections, Announcer, Time> AdminService<Elections, Announcer, Time>
where
    Elections: ElectionAdmin,
    Announcer: ElectionAnnouncer,
    Time: Clock,
{
    pub fn new(store: Elections, announcer: Announcer, clock: Time) -> Self {
        Self {
            store,
            announcer,
            clock,
            close_grace: chrono::Duration::zero(),
        }
    }

    /// Sets the close grace: the longest an ingestion host may take to learn
    /// of a close (its election cache age plus the clock skew it tolerates).
    pub fn with_close_grace(mut self, grace: std::time::Duration) -> Self {
        self.close_grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
        self
    }

    /// Creates an election in DRAFT with its candidates.
    ///
    /// # Errors
    /// [`AdminServiceError`].
    pub async fn create(&self, actor: &ActorId, new: NewElection) -> Result<Election, AdminServiceError> {
        let now = self.clock.now();
        let election = Election::create(
            ElectionId::generate(),
            new,
            now,
            livevote_domain::CandidateId::generate,
        )
        .map_err(AdminServiceError::Rejected)?;
        self.store.create(&election, actor, now).await?;
        tracing::info!(
            election_id = %election.id(),
            actor = %actor,
            action = AdminAction::Created.as_str(),
            version = election.version(),
            "election changed"
        );
        self.announce(election.id(), ChangeKind::Created, election.version())
            .await?;
        Ok(election)
    }

    /// One election as stored.
    ///
    /// # Errors
    /// [`AdminServiceError::NotFound`].
    pub async fn get(&self, id: ElectionId) -> Result<Election, AdminServiceError> {
        Ok(self.store.load(id).await?)
    }

    /// Elections, newest first, optionally of one effective status.
    ///
    /// # Errors
    /// [`AdminServiceError::Unavailable`].
    pub async fn list(
        &self,
        status: Option<ElectionStatus>,
        page: PageRequest,
    ) -> Result<Page<Election>, AdminServiceError> {
        Ok(self.store.list(status, self.clock.now(), page).await?)
    }

    /// The audit log of one election, oldest first.
    ///
    /// # Errors
    /// [`AdminServiceError::NotFound`] for an unknown election.
    pub async fn audit_log(
        &self,
        id: ElectionId,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, AdminServiceError> {
        self.store.load(id).await?;
        Ok(self.store.audit_log(id, page).await?)
    }

    /// Changes settings before voting starts.
    ///
    /// # Errors
    /// [`AdminServiceError`]; `Rejected(Locked)` once voting started.
    pub async fn edit(
        &self,
        actor: &ActorId,
        id: ElectionId,
        edit: ElectionEdit,
    ) -> Result<Election, AdminServiceError> {
        let details = describe_edit(&edit);
        self.change(actor, id, AdminAction::Edited, ChangeKind::Edited, |e, now| {
            e.edit(edit, now).map(|()| details)
        })
        .await
    }

    /// Moves an election through its lifecycle.
    ///
    /// # Errors
    /// [`AdminServiceError`]; `Rejected(InvalidTransition)`.
    pub async fn transition(
        &self,
        actor: &ActorId,
        id: ElectionId,
        to: ElectionStatus,
    ) -> Result<Election, AdminServiceError> {
        let (action, kind) = match to {
            ElectionStatus::Scheduled => (AdminAction::Scheduled, ChangeKind::Scheduled),
            ElectionStatus::Active => (AdminAction::Opened, ChangeKind::Opened),
            ElectionStatus::Closed => (AdminAction::Closed, ChangeKind::Closed),
            // The domain refuses DRAFT and CANCELLED (see `cancel`) here; let it say so.
            ElectionStatus::Cancelled | ElectionStatus::Draft => (AdminAction::Edited, ChangeKind::Edited),
        };
        let grace = self.close_grace;
        self.change(actor, id, action, kind, |e, now| {
            let from = e.effective_status(now);
            let moved = match to {
                ElectionStatus::Closed => e.close_with_grace(now, grace),
                _ => e.transition(to, now),
            };
            moved.map(|()| format!("{from} -> {to}"))
        })
        .await
    }

    /// Cancels an election. `votes_held` is what the election holds now
    /// (accepted or stored); with any, the domain wants a `reason`, which
    /// the audit log keeps.
    ///
    /// # Errors
    /// [`AdminServiceError`]; `Rejected(CancelNeedsReason)` for votes without a reason,
    /// `Rejected(InvalidTransition)` once closed or cancelled.
    pub async fn cancel(
        &self,
        actor: &ActorId,
        id: ElectionId,
        votes_held: u64,
        reason: Option<CancelReason>,
    ) -> Result<Election, AdminServiceError> {
        self.change(
            actor,
            id,
            AdminAction::Cancelled,
            ChangeKind::Cancelled,
            |e, now| {
                let from = e.effective_status(now);
                e.cancel(now, votes_held, reason.as_ref())?;
                Ok(match &reason {
                    Some(r) => format!("{from} -> CANCELLED ({votes_held} votes held): {r}"),
                    None => format!("{from} -> CANCELLED ({votes_held} votes held)"),
                })
            },
        )
        .await
    }

    /// Adds a candidate before voting starts; returns the election and the new candidate's id.
    ///
    /// # Errors
    /// [`AdminServiceError`].
    pub async fn add_candidate(
        &self,
        actor: &ActorId,
        id: ElectionId,
        draft: CandidateDraft,
    ) -> Result<(Election, CandidateId), AdminServiceError> {
        let name = draft.name.as_str().to_owned();
        let mut added = None;
        let election = self
            .change(
                actor,
                id,
                AdminAction::CandidateAdded,
                ChangeKind::Edited,
                |e, now| {
                    let candidate = e.add_candidate(draft, now, livevote_domain::CandidateId::generate())?;
                    added = Some(candidate);
                    Ok(format!("added candidate {candidate} ({name})"))
                },
            )
            .await?;
        let candidate = added.ok_or_else(|| {
            AdminServiceError::Unavailable(anyhow::anyhow!("candidate id missing after a saved change"))
        })?;
        Ok((election, candidate))
    }

    /// Renames a candidate or changes its party before voting starts.
    ///
    /// # Errors
    /// [`AdminServiceError`]; `Rejected(UnknownCandidate)`.
    pub async fn update_candidate(
        &self,
        actor: &ActorId,
        id: ElectionId,
        candidate: CandidateId,
        draft: CandidateDraft,
    ) -> Result<Election, AdminServiceError> {
        let name = draft.name.as_str().to_owned();
        self.change(
            actor,
            id,
            AdminAction::CandidateUpdated,
            ChangeKind::Edited,
            |e, now| {
                e.update_candidate(candidate, draft, now)
                    .map(|()| format!("updated candidate {candidate} ({name})"))
            },
        )
        .await
    }

    /// Removes a candidate before voting starts.
    ///
    /// # Errors
    /// [`AdminServiceError`]; `Rejected(UnknownCandidate)`.
    pub async fn remove_candidate(
        &self,
        actor: &ActorId,
        id: ElectionId,
        candidate: CandidateId,
    ) -> Result<Election, AdminServiceError> {
        self.change(
            actor,
            id,
            AdminAction::CandidateRemoved,
            ChangeKind::Edited,
            |e, now| {
                e.remove_candidate(candidate, now)
                    .map(|()| format!("removed candidate {candidate}"))
            },
        )
        .await
    }

    /// Hides (embargo) or reveals results, at any point of the lifecycle.
    /// Asking for the visibility the election already has changes nothing
    /// and writes no audit entry.
    ///
    /// # Errors
    /// [`AdminServiceError`].
    pub async fn set_visibility(
        &self,
        actor: &ActorId,
        id: ElectionId,
        visibility: ResultsVisibility,
    ) -> Result<Election, AdminServiceError> {
        let mut election = self.store.load(id).await?;
        if !election.set_visibility(visibility) {
            return Ok(election);
        }
        let action = match visibility {
            ResultsVisibility::Live => AdminAction::ResultsRevealed,
            ResultsVisibility::Hidden => AdminAction::ResultsHidden,
        };
        let details = format!("results {}", visibility.as_str());
        let saved = self
            .store
            .update(&election, action, actor, &details, self.clock.now())
            .await?;
        self.announce(id, ChangeKind::VisibilityChanged, saved.version())
            .await?;
        Ok(saved)
    }

    /// Load, apply `f` (which returns the audit details), save with the
    /// version read, announce.
    async fn change<F>(
        &self,
        actor: &ActorId,
        id: ElectionId,
        action: AdminAction,
        kind: ChangeKind,
        f: F,
    ) -> Result<Election, AdminServiceError>
    where
        F: FnOnce(&mut Election, livevote_domain::Timestamp) -> Result<String, ElectionError>,
    {
        let now = self.clock.now();
        let mut election = self.store.load(id).await?;
        let details = f(&mut election, now).map_err(AdminServiceError::Rejected)?;
        let saved = self.store.update(&election, action, actor, &details, now).await?;
        tracing::info!(
            election_id = %id,
            actor = %actor,
            action = action.as_str(),
            version = saved.version(),
            details = %details,
            "election changed"
        );
        self.announce(id, kind, saved.version()).await?;
        Ok(saved)
    }

    async fn announce(
        &self,
        id: ElectionId,
        kind: ChangeKind,
        version: u64,
    ) -> Result<(), AdminServiceError> {
        let delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(1))
            .with_jitter()
            .with_max_times(ANNOUNCE_ATTEMPTS - 1);
        (|| self.announcer.announce(id, kind))
            .retry(delays)
            .notify(|e, delay| {
                tracing::warn!(election_id = %id, error = %e, retry_in_ms = delay.as_millis() as u64, "announcement failed, retrying");
            })
            .await
            .map_err(|e| AdminServiceError::NotAnnounced {
                version,
                source: anyhow::Error::new(e),
            })
    }
}

fn describe_edit(edit: &ElectionEdit) -> String {
    let mut fields = Vec::new();
    if let Some(t) = &edit.title {
        fields.push(format!("title={:?}", t.as_str()));
    }
    if edit.description.is_some() {
        fields.push("description".to_owned());
    }
    if let Some(w) = &edit.window {
        fields.push(format!(
            "window={}..{}",
            w.start().to_rfc3339(),
            w.end().to_rfc3339()
        ));
    }
    if let Some(c) = edit.captcha_required {
        fields.push(format!("captchaRequired={c}"));
    }
    if fields.is_empty() {
        "no fields changed".to_owned()
    } else {
        format!("edited {}", fields.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livevote_domain::{CandidateName, Title};
    use livevote_hosting::SystemClock;
    use livevote_memory::{MemoryBus, MemoryDatabase};
    use livevote_ports::{ElectionChangeFeed, ElectionChanges};
    use livevote_testkit::fixtures::{new_election, operator};

    fn service() -> (AdminService<MemoryDatabase, MemoryBus, SystemClock>, MemoryBus) {
        let db = MemoryDatabase::new(SystemClock);
        let bus = MemoryBus::new(64);
        (AdminService::new(db, bus.clone(), SystemClock), bus)
    }

    fn draft() -> NewElection {
        let now = chrono::Utc::now();
        new_election(
            "Song contest",
            &["Ana", "Ben", "Cleo"],
            now + chrono::Duration::hours(1),
            now + chrono::Duration::hours(2),
        )
    }

    #[tokio::test]
    async fn every_change_is_audited_with_the_actor_and_announced() {
        let (admin, bus) = service();
        let mut changes = bus.subscribe().await.unwrap();
        let actor = operator();
        let new = draft();
        let e = admin.create(&actor, new).await.unwrap();
        let edit = ElectionEdit {
            title: Some(Title::parse("Final night").unwrap()),
            ..ElectionEdit::default()
        };
        admin.edit(&actor, e.id(), edit).await.unwrap();
        let (_, added) = admin
            .add_candidate(
                &actor,
                e.id(),
                CandidateDraft {
                    name: CandidateName::parse("Newcomer").unwrap(),
                    party: None,
                },
            )
            .await
            .unwrap();
        admin.remove_candidate(&actor, e.id(), added).await.unwrap();
        admin
            .set_visibility(&actor, e.id(), ResultsVisibility::Hidden)
            .await
            .unwrap();
        // Same visibility again: nothing to record.
        admin
            .set_visibility(&actor, e.id(), ResultsVisibility::Hidden)
            .await
            .unwrap();
        let log = admin
            .audit_log(e.id(), PageRequest { page: 0, size: 100 })
            .await
            .unwrap();
        let actions: Vec<_> = log.content.iter().map(|a| a.action).collect();
        assert_eq!(
            actions,
            vec![
                AdminAction::Created,
                AdminAction::Edited,
                AdminAction::CandidateAdded,
                AdminAction::CandidateRemoved,
                AdminAction::ResultsHidden
            ]
        );
        assert!(log.content.iter().all(|a| a.actor == actor));
        let mut kinds = Vec::new();
        for _ in 0..5 {
            match changes.next().await {
                Some(livevote_ports::ElectionChange::Changed { election_id, kind }) => {
                    assert_eq!(election_id, e.id());
                    kinds.push(kind);
                }
                other => panic!("unexpected change {other:?}"),
            }
        }
        assert_eq!(
            kinds,
            vec![
                ChangeKind::Created,
                ChangeKind::Edited,
                ChangeKind::Edited,
                ChangeKind::Edited,
                ChangeKind::VisibilityChanged
            ]
        );
    }

    #[tokio::test]
    async fn refused_changes_write_nothing() {
        let (admin, _bus) = service();
        let actor = operator();
        let e = admin.create(&actor, draft()).await.unwrap();
        let err = admin
            .transition(&actor, e.id(), ElectionStatus::Closed)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AdminServiceError::Rejected(ElectionError::InvalidTransition { .. })
        ));
        let err = admin
            .transition(&actor, ElectionId::generate(), ElectionStatus::Closed)
            .await
            .unwrap_err();
        assert!(matches!(err, AdminServiceError::NotFound(_)));
        let log = admin
            .audit_log(e.id(), PageRequest { page: 0, size: 10 })
            .await
            .unwrap();
        assert_eq!(log.total_elements, 1, "only the creation is logged");
    }
}
