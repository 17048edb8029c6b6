//! Elections, their candidates and their lifecycle.
//!
//! Stored status moves `DRAFT -> SCHEDULED -> ACTIVE -> CLOSED`, and any of
//! `DRAFT | SCHEDULED | ACTIVE` may become `CANCELLED`. The window can move a
//! status on without anyone touching it: the *effective* status at an instant
//! treats a SCHEDULED election whose start has come as ACTIVE, and a SCHEDULED
//! or ACTIVE one whose end has come as CLOSED. Every rule below works on the
//! effective status, so an election never needs a timer to close on time.

use std::fmt;

use crate::ids::CandidateId;
use crate::policy::VotePolicy;
use crate::text::{CancelReason, CandidateName, Description, Party, Title};
use crate::window::{VotingWindow, WindowError};
use crate::{ElectionId, Timestamp};

/// Fewest candidates an election may have.
pub const MIN_CANDIDATES: usize = 2;
/// Most candidates an election may have.
pub const MAX_CANDIDATES: usize = 100;

/// Where an election is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElectionStatus {
    Draft,
    Scheduled,
    Active,
    Closed,
    Cancelled,
}

impl ElectionStatus {
    pub const ALL: [ElectionStatus; 5] = [
        ElectionStatus::Draft,
        ElectionStatus::Scheduled,
        ElectionStatus::Active,
        ElectionStatus::Closed,
        ElectionStatus::Cancelled,
    ];

    /// The stable upper-case name used in APIs, rows and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ElectionStatus::Draft => "DRAFT",
            ElectionStatus::Scheduled => "SCHEDULED",
            ElectionStatus::Active => "ACTIVE",
            ElectionStatus::Closed => "CLOSED",
            ElectionStatus::Cancelled => "CANCELLED",
        }
    }

    /// Parses the upper-case name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the lifecycle has an edge from `self` to `to`.
    pub fn can_move_to(self, to: ElectionStatus) -> bool {
        use ElectionStatus::*;
        matches!(
            (self, to),
            (Draft, Scheduled)
                | (Scheduled, Active)
                | (Active, Closed)
                | (Draft | Scheduled | Active, Cancelled)
        )
    }
}

impl fmt::Display for ElectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether public results show counts while voting runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultsVisibility {
    /// Counts are public as they come in.
    Live,
    /// Counts are embargoed until an admin reveals them.
    Hidden,
}

impl ResultsVisibility {
    pub fn as_str(&self) -> &'static str {
        match self {
            ResultsVisibility::Live => "LIVE",
            ResultsVisibility::Hidden => "HIDDEN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "LIVE" => Some(ResultsVisibility::Live),
            "HIDDEN" => Some(ResultsVisibility::Hidden),
            _ => None,
        }
    }
}

/// A candidate of one election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    id: CandidateId,
    name: CandidateName,
    party: Option<Party>,
}

impl Candidate {
    pub fn new(id: CandidateId, name: CandidateName, party: Option<Party>) -> Self {
        Self { id, name, party }
    }

    pub fn id(&self) -> CandidateId {
        self.id
    }

    pub fn name(&self) -> &CandidateName {
        &self.name
    }

    pub fn party(&self) -> Option<&Party> {
        self.party.as_ref()
    }
}

/// A request to add a candidate: the id is assigned when it is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateDraft {
    pub name: CandidateName,
    pub party: Option<Party>,
}

/// A request to create an election. It becomes an [`Election`] in DRAFT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewElection {
    pub title: Title,
    pub description: Description,
    pub window: VotingWindow,
    pub candidates: Vec<CandidateDraft>,
    pub visibility: ResultsVisibility,
    pub captcha_required: bool,
    pub policy: VotePolicy,
}

/// A request to change an election's settings before voting starts. `None`
/// leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElectionEdit {
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub window: Option<VotingWindow>,
    pub captcha_required: Option<bool>,
    pub policy: Option<VotePolicy>,
}

/// Why an election cannot be built or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionError {
    /// The lifecycle has no such edge (states are effective ones).
    InvalidTransition {
        from: ElectionStatus,
        to: ElectionStatus,
    },
    /// Settings and candidates are frozen once voting has started.
    Locked {
        status: ElectionStatus,
    },
    TooFewCandidates {
        min: usize,
        count: usize,
    },
    TooManyCandidates {
        max: usize,
        count: usize,
    },
    /// Two candidates would share a name (compared case-insensitively).
    DuplicateCandidateName(String),
    /// Two candidates would share an id.
    DuplicateCandidateId(CandidateId),
    /// The candidate is not one of this election's.
    UnknownCandidate(CandidateId),
    /// Cancelling an election that holds votes takes an explicit reason.
    CancelNeedsReason {
        votes: u64,
    },
    /// Scheduling an election whose window has already ended.
    WindowEnded {
        end: Timestamp,
    },
    Window(WindowError),
}

impl fmt::Display for ElectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElectionError::InvalidTransition { from, to } => {
                write!(f, "cannot move an election from {from} to {to}")
            }
            ElectionError::Locked { status } => write!(
                f,
                "election is {status}: settings and candidates can only change before voting starts"
            ),
            ElectionError::TooFewCandidates { min, count } => {
                write!(f, "an election needs at least {min} candidates, got {count}")
            }
            ElectionError::TooManyCandidates { max, count } => {
                write!(f, "an election takes at most {max} candidates, got {count}")
            }
            ElectionError::DuplicateCandidateName(name) => {
                write!(f, "two candidates are named {name:?}")
            }
            ElectionError::DuplicateCandidateId(id) => write!(f, "candidate id {id} appears twice"),
            ElectionError::UnknownCandidate(id) => {
                write!(f, "candidate {id} is not part of this election")
            }
            ElectionError::CancelNeedsReason { votes } => write!(
                f,
                "election holds {votes} votes: cancelling it takes a status change to CANCELLED with a reason"
            ),
            ElectionError::WindowEnded { end } => {
                write!(f, "the voting window already ended at {}", end.to_rfc3339())
            }
            ElectionError::Window(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ElectionError {}

impl From<WindowError> for ElectionError {
    fn from(e: WindowError) -> Self {
        ElectionError::Window(e)
    }
}

/// Everything an election is made of, as a store reads it back. Passing it
/// through [`Election::restore`] re-checks the invariants, so a corrupted row
/// cannot become an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionParts {
    pub id: ElectionId,
    pub title: Title,
    pub description: Description,
    pub window: VotingWindow,
    pub candidates: Vec<Candidate>,
    pub status: ElectionStatus,
    pub visibility: ResultsVisibility,
    pub captcha_required: bool,
    pub policy: VotePolicy,
    pub version: u64,
    pub created_at: Timestamp,
}

/// An election: its settings, candidates, stored status and the version a
/// store uses for optimistic concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    id: ElectionId,
    title: Title,
    description: Description,
    window: VotingWindow,
    candidates: Vec<Candidate>,
    status: ElectionStatus,
    visibility: ResultsVisibility,
    captcha_required: bool,
    policy: VotePolicy,
    version: u64,
    created_at: Timestamp,
}

fn check_candidates(candidates: &[Candidate]) -> Result<(), ElectionError> {
    let count = candidates.len();
    if count < MIN_CANDIDATES {
        return Err(ElectionError::TooFewCandidates {
            min: MIN_CANDIDATES,
            count,
        });
    }
    if count > MAX_CANDIDATES {
        return Err(ElectionError::TooManyCandidates {
            max: MAX_CANDIDATES,
            count,
        });
    }
    for (i, a) in candidates.iter().enumerate() {
        for b in &candidates[i + 1..] {
            if a.id == b.id {
                return Err(ElectionError::DuplicateCandidateId(a.id));
            }
            if a.name.as_str().to_lowercase() == b.name.as_str().to_lowercase() {
                return Err(ElectionError::DuplicateCandidateName(b.name.as_str().to_owned()));
            }
        }
    }
    Ok(())
}

impl Election {
    /// Builds a DRAFT election at version 1; each candidate gets the next id of `candidate_id` (the caller owns the id source: the domain reads no clock and no random numbers).
    ///
    /// # Errors
    /// Candidate count or name rules ([`ElectionError`]).
    pub fn create(
        id: ElectionId,
        new: NewElection,
        now: Timestamp,
        mut candidate_id: impl FnMut() -> CandidateId,
    ) -> Result<Self, ElectionError> {
        let candidates: Vec<Candidate> = new
            .candidates
            .into_iter()
            .map(|d| Candidate::new(candidate_id(), d.name, d.party))
            .collect();
        check_candidates(&candidates)?;
        Ok(Self {
            id,
            title: new.title,
            description: new.description,
            window: new.window,
            candidates,
            status: ElectionStatus::Draft,
            visibility: new.visibility,
            captcha_required: new.captcha_required,
            policy: new.policy,
            version: 1,
            created_at: now,
        })
    }

    /// Rebuilds an election a store read back, checking its invariants again.
    ///
    /// # Errors
    /// Candidate count, id or name rules ([`ElectionError`]).
    pub fn restore(parts: ElectionParts) -> Result<Self, ElectionError> {
        check_candidates(&parts.candidates)?;
        Ok(Self {
            id: parts.id,
            title: parts.title,
            description: parts.description,
            window: parts.window,
            candidates: parts.candidates,
            status: parts.status,
            visibility: parts.visibility,
            captcha_required: parts.captcha_required,
            policy: parts.policy,
            version: parts.version,
            created_at: parts.created_at,
        })
    }

    pub fn id(&self) -> ElectionId {
        self.id
    }
    pub fn title(&self) -> &Title {
        &self.title
    }
    pub fn description(&self) -> &Description {
        &self.description
    }
    pub fn window(&self) -> VotingWindow {
        self.window
    }
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }
    /// The status as stored; see [`Election::effective_status`] for the one that counts.
    pub fn stored_status(&self) -> ElectionStatus {
        self.status
    }
    pub fn visibility(&self) -> ResultsVisibility {
        self.visibility
    }
    pub fn captcha_required(&self) -> bool {
        self.captcha_required
    }
    /// How many votes a viewer has: fixed once voting starts.
    pub fn policy(&self) -> VotePolicy {
        self.policy
    }
    /// The version this value was read at; stores bump it on every saved change.
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// Everything the election is made of, for stores to write (and, with
    /// another version, to rebuild through [`Election::restore`]).
    pub fn to_parts(&self) -> ElectionParts {
        ElectionParts {
            id: self.id,
            title: self.title.clone(),
            description: self.description.clone(),
            window: self.window,
            candidates: self.candidates.clone(),
            status: self.status,
            visibility: self.visibility,
            captcha_required: self.captcha_required,
            policy: self.policy,
            version: self.version,
            created_at: self.created_at,
        }
    }

    pub fn candidate(&self, id: CandidateId) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.id == id)
    }

    /// Whether results are embargoed (hidden until an admin reveals them).
    pub fn is_embargoed(&self) -> bool {
        self.visibility == ResultsVisibility::Hidden
    }

    /// The status at `now`, with the window applied: a SCHEDULED election is
    /// ACTIVE from its start, and a SCHEDULED or ACTIVE one is CLOSED from its end.
    pub fn effective_status(&self, now: Timestamp) -> ElectionStatus {
        match self.status {
            ElectionStatus::Scheduled | ElectionStatus::Active if self.window.has_ended(now) => {
                ElectionStatus::Closed
            }
            ElectionStatus::Scheduled if self.window.has_started(now) => ElectionStatus::Active,
            status => status,
        }
    }

    fn ensure_transition(&self, to: ElectionStatus, now: Timestamp) -> Result<(), ElectionError> {
        let from = self.effective_status(now);
        if from.can_move_to(to) {
            Ok(())
        } else {
            Err(ElectionError::InvalidTransition { from, to })
        }
    }

    /// DRAFT -> SCHEDULED. Voting then starts by itself at the window's start.
    ///
    /// # Errors
    /// [`ElectionError::InvalidTransition`], or [`ElectionError::WindowEnded`]
    /// when the window is already over.
    pub fn schedule(&mut self, now: Timestamp) -> Result<(), ElectionError> {
        self.ensure_transition(ElectionStatus::Scheduled, now)?;
        if self.window.has_ended(now) {
            return Err(ElectionError::WindowEnded {
                end: self.window.end(),
            });
        }
        self.status = ElectionStatus::Scheduled;
        Ok(())
    }

    /// SCHEDULED -> ACTIVE at once ("lines are open"): a start still ahead moves to `now`.
    ///
    /// # Errors
    /// [`ElectionError::InvalidTransition`] unless the effective status is SCHEDULED.
    pub fn open(&mut self, now: Timestamp) -> Result<(), ElectionError> {
        self.ensure_transition(ElectionStatus::Active, now)?;
        if now < self.window.start() {
            self.window = VotingWindow::new(now, self.window.end())?;
        }
        self.status = ElectionStatus::Active;
        Ok(())
    }

    /// ACTIVE -> CLOSED at once ("lines are closed"): the end moves to `now`, so
    /// the end is always the close watermark and votes accepted before it count.
    ///
    /// # Errors
    /// [`ElectionError::InvalidTransition`] unless the effective status is
    /// ACTIVE; a window error if `now` is not after the start (a clock behind the
    /// start of an open election).
    pub fn close(&mut self, now: Timestamp) -> Result<(), ElectionError> {
        self.close_with_grace(now, chrono::Duration::zero())
    }

    /// ACTIVE -> CLOSED, with the end (the close watermark) `grace` after
    /// `now`: the longest an ingestion host may go on accepting before it
    /// learns of the close. Every vote a host accepts in that time is then
    /// stamped before the end and counts, and none is stamped after it.
    ///
    /// # Errors
    /// As [`Election::close`].
    pub fn close_with_grace(&mut self, now: Timestamp, grace: chrono::Duration) -> Result<(), ElectionError> {
        self.ensure_transition(ElectionStatus::Closed, now)?;
        let watermark = now + grace.max(chrono::Duration::zero());
        if watermark < self.window.end() {
            self.window = VotingWindow::new(self.window.start(), watermark)?;
        }
        self.status = ElectionStatus::Closed;
        Ok(())
    }

    /// DRAFT | SCHEDULED | ACTIVE -> CANCELLED. An election that holds
    /// votes (`votes_held`, accepted or stored) is cancelled only with a
    /// reason: one unexplained request must not take a live show's votes away.
    ///
    /// # Errors
    /// [`ElectionError::InvalidTransition`] from CLOSED or CANCELLED;
    /// [`ElectionError::CancelNeedsReason`] with votes and no reason.
    pub fn cancel(
        &mut self,
        now: Timestamp,
        votes_held: u64,
        reason: Option<&CancelReason>,
    ) -> Result<(), ElectionError> {
        self.ensure_transition(ElectionStatus::Cancelled, now)?;
        if votes_held > 0 && reason.is_none() {
            return Err(ElectionError::CancelNeedsReason { votes: votes_held });
        }
        self.status = ElectionStatus::Cancelled;
        Ok(())
    }

    /// Moves to SCHEDULED, ACTIVE or CLOSED through the matching command.
    /// DRAFT is never a target, and CANCELLED goes through [`Election::cancel`],
    /// which needs the votes the election holds.
    ///
    /// # Errors
    /// As the command for `to`; [`ElectionError::InvalidTransition`] for DRAFT and CANCELLED.
    pub fn transition(&mut self, to: ElectionStatus, now: Timestamp) -> Result<(), ElectionError> {
        match to {
            ElectionStatus::Scheduled => self.schedule(now),
            ElectionStatus::Active => self.open(now),
            ElectionStatus::Closed => self.close(now),
            // A cancel needs the votes held and maybe a reason: `cancel` takes them.
            ElectionStatus::Cancelled | ElectionStatus::Draft => Err(ElectionError::InvalidTransition {
                from: self.effective_status(now),
                to,
            }),
        }
    }

    /// Whether settings and candidates may still change: only before voting starts.
    pub fn is_editable(&self, now: Timestamp) -> bool {
        matches!(
            self.effective_status(now),
            ElectionStatus::Draft | ElectionStatus::Scheduled
        )
    }

    fn ensure_editable(&self, now: Timestamp) -> Result<(), ElectionError> {
        if self.is_editable(now) {
            Ok(())
        } else {
            Err(ElectionError::Locked {
                status: self.effective_status(now),
            })
        }
    }

    /// Changes settings before voting starts. A SCHEDULED election may not be
    /// given a window that has already ended.
    ///
    /// # Errors
    /// [`ElectionError::Locked`] once voting started; [`ElectionError::WindowEnded`].
    pub fn edit(&mut self, edit: ElectionEdit, now: Timestamp) -> Result<(), ElectionError> {
        self.ensure_editable(now)?;
        if let Some(window) = edit.window {
            if self.status == ElectionStatus::Scheduled && window.has_ended(now) {
                return Err(ElectionError::WindowEnded { end: window.end() });
            }
            self.window = window;
        }
        if let Some(title) = edit.title {
            self.title = title;
        }
        if let Some(description) = edit.description {
            self.description = description;
        }
        if let Some(captcha) = edit.captcha_required {
            self.captcha_required = captcha;
        }
        if let Some(policy) = edit.policy {
            self.policy = policy;
        }
        Ok(())
    }

    /// Adds a candidate with id `id` before voting starts and returns that id.
    ///
    /// # Errors
    /// [`ElectionError::Locked`], too many candidates, or a duplicate name.
    pub fn add_candidate(
        &mut self,
        draft: CandidateDraft,
        now: Timestamp,
        id: CandidateId,
    ) -> Result<CandidateId, ElectionError> {
        self.ensure_editable(now)?;
        let candidate = Candidate::new(id, draft.name, draft.party);
        let id = candidate.id;
        let mut next = self.candidates.clone();
        next.push(candidate);
        check_candidates(&next)?;
        self.candidates = next;
        Ok(id)
    }

    /// Renames a candidate or changes its party before voting starts.
    ///
    /// # Errors
    /// [`ElectionError::Locked`], unknown candidate, or a duplicate name.
    pub fn update_candidate(
        &mut self,
        id: CandidateId,
        draft: CandidateDraft,
        now: Timestamp,
    ) -> Result<(), ElectionError> {
        self.ensure_editable(now)?;
        let mut next = self.candidates.clone();
        let slot = next
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or(ElectionError::UnknownCandidate(id))?;
        slot.name = draft.name;
        slot.party = draft.party;
        check_candidates(&next)?;
        self.candidates = next;
        Ok(())
    }

    /// Removes a candidate before voting starts.
    ///
    /// # Errors
    /// [`ElectionError::Locked`], unknown candidate, or too few candidates left.
    pub fn remove_candidate(&mut self, id: CandidateId, now: Timestamp) -> Result<(), ElectionError> {
        self.ensure_editable(now)?;
        if self.candidate(id).is_none() {
            return Err(ElectionError::UnknownCandidate(id));
        }
        let next: Vec<Candidate> = self.candidates.iter().filter(|c| c.id != id).cloned().collect();
        check_candidates(&next)?;
        self.candidates = next;
        Ok(())
    }

    /// Hides or reveals results; allowed at any point of the lifecycle.
    /// Returns whether anything changed.
    pub fn set_visibility(&mut self, visibility: ResultsVisibility) -> bool {
        let changed = self.visibility != visibility;
        self.visibility = visibility;
        changed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};
    use proptest::prelude::*;

    pub(crate) fn at(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    pub(crate) fn draft(name: &str) -> CandidateDraft {
        CandidateDraft {
            name: CandidateName::parse(name).unwrap(),
            party: None,
        }
    }

    /// A DRAFT election with `n` candidates and the window `[start, end)` in seconds.
    pub(crate) fn election(n: usize, start: i64, end: i64) -> Election {
        let new = NewElection {
            title: Title::parse("Song of the Year").unwrap(),
            description: Description::parse("").unwrap(),
            window: VotingWindow::new(at(start), at(end)).unwrap(),
            candidates: (0..n).map(|i| draft(&format!("Candidate {i}"))).collect(),
            visibility: ResultsVisibility::Live,
            captcha_required: false,
            policy: VotePolicy::Single,
        };
        Election::create(ElectionId::generate(), new, at(-1000), CandidateId::generate).unwrap()
    }

    #[test]
    fn status_names_round_trip() {
        for status in ElectionStatus::ALL {
            assert_eq!(ElectionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ElectionStatus::parse("active"), None);
    }

    #[test]
    fn candidate_count_bounds() {
        let mut new = NewElection {
            title: Title::parse("Final").unwrap(),
            description: Description::parse("").unwrap(),
            window: VotingWindow::new(at(0), at(10)).unwrap(),
            candidates: vec![draft("Only")],
            visibility: ResultsVisibility::Live,
            captcha_required: false,
            policy: VotePolicy::Single,
        };
        assert_eq!(
            Election::create(ElectionId::generate(), new.clone(), at(0), CandidateId::generate),
            Err(ElectionError::TooFewCandidates { min: 2, count: 1 })
        );
        new.candidates = (0..101).map(|i| draft(&format!("C{i}"))).collect();
        assert_eq!(
            Election::create(ElectionId::generate(), new.clone(), at(0), CandidateId::generate),
            Err(ElectionError::TooManyCandidates { max: 100, count: 101 })
        );
        new.candidates = (0..100).map(|i| draft(&format!("C{i}"))).collect();
        let e = Election::create(ElectionId::generate(), new.clone(), at(0), CandidateId::generate).unwrap();
        assert_eq!(e.candidates().len(), 100);
        assert_eq!(e.stored_status(), ElectionStatus::Draft);
        assert_eq!(e.version(), 1);
        new.candidates = vec![draft("Alice"), draft("ALICE")];
        assert_eq!(
            Election::create(ElectionId::generate(), new, at(0), CandidateId::generate),
            Err(ElectionError::DuplicateCandidateName("ALICE".into()))
        );
    }

    #[test]
    fn restore_rechecks_invariants() {
        let e = election(2, 0, 10);
        let dup = e.candidates()[0].clone();
        let parts = ElectionParts {
            id: e.id(),
            title: e.title().clone(),
            description: e.description().clone(),
            window: e.window(),
            candidates: vec![
                dup.clone(),
                Candidate::new(dup.id(), CandidateName::parse("Other").unwrap(), None),
            ],
            status: ElectionStatus::Active,
            visibility: ResultsVisibility::Hidden,
            captcha_required: true,
            policy: VotePolicy::Changeable,
            version: 7,
            created_at: at(0),
        };
        assert_eq!(
            Election::restore(parts.clone()),
            Err(ElectionError::DuplicateCandidateId(dup.id()))
        );
        let ok = ElectionParts {
            candidates: e.candidates().to_vec(),
            ..parts
        };
        let restored = Election::restore(ok).unwrap();
        assert_eq!(restored.version(), 7);
        assert!(restored.is_embargoed());
        assert!(restored.captcha_required());
    }

    #[test]
    fn happy_lifecycle_follows_the_window() {
        let mut e = election(3, 100, 200);
        assert_eq!(
            e.effective_status(at(150)),
            ElectionStatus::Draft,
            "a draft never opens by itself"
        );
        e.schedule(at(0)).unwrap();
        assert_eq!(e.effective_status(at(99)), ElectionStatus::Scheduled);
        assert_eq!(e.effective_status(at(100)), ElectionStatus::Active);
        assert_eq!(e.effective_status(at(199)), ElectionStatus::Active);
        assert_eq!(e.effective_status(at(200)), ElectionStatus::Closed);
    }

    #[test]
    fn opening_early_moves_the_start_to_now() {
        let mut e = election(2, 100, 200);
        e.schedule(at(0)).unwrap();
        e.open(at(50)).unwrap();
        assert_eq!(e.window().start(), at(50));
        assert_eq!(e.window().end(), at(200));
        assert_eq!(e.effective_status(at(50)), ElectionStatus::Active);
    }

    #[test]
    fn closing_early_moves_the_end_to_now() {
        let mut e = election(2, 0, 200);
        e.schedule(at(-10)).unwrap();
        e.close(at(120)).unwrap();
        assert_eq!(e.window().end(), at(120), "the end is the close watermark");
        assert_eq!(e.effective_status(at(119)), ElectionStatus::Closed);
        assert_eq!(e.stored_status(), ElectionStatus::Closed);
    }

    #[test]
    fn invalid_transitions_name_both_states() {
        let mut e = election(2, 100, 200);
        let err = e.open(at(0)).unwrap_err();
        assert_eq!(
            err,
            ElectionError::InvalidTransition {
                from: ElectionStatus::Draft,
                to: ElectionStatus::Active
            }
        );
        assert_eq!(err.to_string(), "cannot move an election from DRAFT to ACTIVE");
        e.schedule(at(0)).unwrap();
        // Already effectively active: opening again is not a transition.
        assert_eq!(
            e.open(at(150)),
            Err(ElectionError::InvalidTransition {
                from: ElectionStatus::Active,
                to: ElectionStatus::Active
            })
        );
        assert_eq!(
            e.close(at(50)),
            Err(ElectionError::InvalidTransition {
                from: ElectionStatus::Scheduled,
                to: ElectionStatus::Closed
            })
        );
        assert_eq!(
            e.transition(ElectionStatus::Cancelled, at(300)),
            Err(ElectionError::InvalidTransition {
                from: ElectionStatus::Closed,
                to: ElectionStatus::Cancelled
            })
        );
        assert_eq!(
            e.cancel(at(300), 0, None),
            Err(ElectionError::InvalidTransition {
                from: ElectionStatus::Closed,
                to: ElectionStatus::Cancelled
            })
        );
        assert!(matches!(
            e.transition(ElectionStatus::Draft, at(0)),
            Err(ElectionError::InvalidTransition { .. })
        ));
    }

    #[test]
    fn scheduling_an_ended_window_is_refused() {
        let mut e = election(2, 0, 10);
        assert_eq!(
            e.schedule(at(10)),
            Err(ElectionError::WindowEnded { end: at(10) })
        );
    }

    #[test]
    fn edits_only_before_voting_starts() {
        let mut e = election(2, 100, 200);
        let title = Title::parse("Renamed").unwrap();
        e.edit(
            ElectionEdit {
                title: Some(title.clone()),
                ..Default::default()
            },
            at(0),
        )
        .unwrap();
        assert_eq!(e.title(), &title);
        let added = e
            .add_candidate(draft("Late entry"), at(0), CandidateId::generate())
            .unwrap();
        assert!(e.candidate(added).is_some());
        e.update_candidate(added, draft("Late Entry II"), at(0)).unwrap();
        e.remove_candidate(added, at(0)).unwrap();
        assert_eq!(e.candidates().len(), 2);
        assert_eq!(
            e.remove_candidate(e.candidates()[0].id(), at(0)),
            Err(ElectionError::TooFewCandidates { min: 2, count: 1 })
        );
        e.schedule(at(0)).unwrap();
        e.edit(
            ElectionEdit {
                captcha_required: Some(true),
                ..Default::default()
            },
            at(99),
        )
        .unwrap();
        assert!(e.captcha_required());
        let changeable = ElectionEdit {
            policy: Some(VotePolicy::Changeable),
            ..Default::default()
        };
        e.edit(changeable.clone(), at(99)).unwrap();
        assert_eq!(e.policy(), VotePolicy::Changeable);
        let locked = Err(ElectionError::Locked {
            status: ElectionStatus::Active,
        });
        assert_eq!(e.edit(ElectionEdit::default(), at(100)), locked);
        // The policy is locked once voting starts.
        let single = ElectionEdit {
            policy: Some(VotePolicy::Single),
            ..Default::default()
        };
        assert_eq!(e.edit(single, at(100)), locked);
        assert_eq!(e.policy(), VotePolicy::Changeable);
        assert_eq!(
            e.add_candidate(draft("Too late"), at(100), CandidateId::generate())
                .map(|_| ()),
            locked
        );
        let first = e.candidates()[0].id();
        assert_eq!(e.update_candidate(first, draft("X"), at(100)), locked);
        assert_eq!(e.remove_candidate(first, at(100)), locked);
        // Visibility is not a setting of the vote: it may change at any time.
        assert!(e.set_visibility(ResultsVisibility::Hidden));
        assert!(!e.set_visibility(ResultsVisibility::Hidden));
        assert!(e.is_embargoed());
    }

    #[test]
    fn a_scheduled_election_cannot_be_moved_into_the_past() {
        let mut e = election(2, 100, 200);
        e.schedule(at(0)).unwrap();
        let past = VotingWindow::new(at(-20), at(-10)).unwrap();
        assert_eq!(
            e.edit(
                ElectionEdit {
                    window: Some(past),
                    ..Default::default()
                },
                at(0)
            ),
            Err(ElectionError::WindowEnded { end: at(-10) })
        );
    }

    #[test]
    fn unknown_candidate_edits_are_refused() {
        let mut e = election(2, 100, 200);
        let stranger = CandidateId::generate();
        assert_eq!(
            e.remove_candidate(stranger, at(0)),
            Err(ElectionError::UnknownCandidate(stranger))
        );
        assert_eq!(
            e.update_candidate(stranger, draft("X"), at(0)),
            Err(ElectionError::UnknownCandidate(stranger))
        );
    }

    fn any_status() -> impl Strategy<Value = ElectionStatus> {
        prop::sample::select(ElectionStatus::ALL.to_vec())
    }

    /// An election with window `[0, len)` brought to `stored` by the real commands.
    fn in_status(stored: ElectionStatus, len: i64) -> Election {
        let mut e = election(2, 0, len);
        let before = at(-1);
        match stored {
            ElectionStatus::Draft => {}
            ElectionStatus::Scheduled => e.schedule(before).unwrap(),
            ElectionStatus::Active => {
                e.schedule(before).unwrap();
                e.open(before).unwrap();
            }
            ElectionStatus::Closed => {
                e.schedule(before).unwrap();
                e.open(before).unwrap();
                e.close(at(0)).unwrap();
            }
            ElectionStatus::Cancelled => e.cancel(before, 0, None).unwrap(),
        }
        e
    }

    proptest! {
        /// Every command either follows a lifecycle edge from the effective
        /// status or fails naming exactly that edge, and never breaks the window.
        #[test]
        fn transitions_follow_the_lifecycle(
            stored in any_status(),
            to in any_status(),
            len in 2i64..500,
            t in -100i64..1000,
        ) {
            let mut e = in_status(stored, len);
            let before = e.clone();
            let from = e.effective_status(at(t));
            let moved = if to == ElectionStatus::Cancelled {
                e.cancel(at(t), 0, None)
            } else {
                e.transition(to, at(t))
            };
            match moved {
                Ok(()) => {
                    prop_assert!(from.can_move_to(to), "{from} -> {to} was allowed");
                    prop_assert_eq!(e.stored_status(), to);
                    prop_assert!(e.window().start() < e.window().end());
                    match to {
                        ElectionStatus::Active => prop_assert_eq!(e.effective_status(at(t)), ElectionStatus::Active),
                        ElectionStatus::Closed => {
                            prop_assert!(e.window().end() <= at(t).max(before.window().end()));
                            prop_assert_eq!(e.effective_status(at(t)), ElectionStatus::Closed);
                        }
                        _ => {}
                    }
                }
                Err(ElectionError::InvalidTransition { from: f, to: tt }) => {
                    prop_assert_eq!(f, from);
                    prop_assert_eq!(tt, to);
                    prop_assert!(!from.can_move_to(to));
                    prop_assert_eq!(&e, &before, "a refused transition changes nothing");
                }
                Err(other) => {
                    // Only scheduling an ended window and a close at the very start may fail otherwise.
                    prop_assert!(matches!(other, ElectionError::WindowEnded { .. } | ElectionError::Window(_)), "{other}");
                    prop_assert_eq!(&e, &before);
                }
            }
        }

        /// The effective status is a function of the stored status and where `t`
        /// falls relative to the window, as the lifecycle describes.
        #[test]
        fn effective_status_follows_the_window(stored in any_status(), start in -500i64..500, len in 1i64..500, t in -1000i64..1000) {
            let mut e = election(2, start, start + len);
            // Force the stored status through restore, so every pairing is covered.
            let parts = ElectionParts { status: stored, ..e.to_parts() };
            e = Election::restore(parts).unwrap();
            let w = e.window();
            let expected = match stored {
                ElectionStatus::Scheduled | ElectionStatus::Active if w.has_ended(at(t)) => ElectionStatus::Closed,
                ElectionStatus::Scheduled if w.has_started(at(t)) => ElectionStatus::Active,
                s => s,
            };
            prop_assert_eq!(e.effective_status(at(t)), expected);
            // Only ACTIVE-and-inside-the-window or SCHEDULED-reached-start can be effectively active.
            if e.effective_status(at(t)) == ElectionStatus::Active && stored == ElectionStatus::Scheduled {
                prop_assert!(w.contains(at(t)));
            }
            prop_assert_eq!(e.is_editable(at(t)), matches!(expected, ElectionStatus::Draft | ElectionStatus::Scheduled));
        }

        #[test]
        fn a_close_is_monotonic(len in 10i64..1000, close_at in 0i64..2000) {
            let mut e = in_status(ElectionStatus::Active, len);
            let end_before = e.window().end();
            if e.close(at(close_at) + Duration::microseconds(1)).is_ok() {
                prop_assert!(e.window().end() <= end_before);
                prop_assert!(e.effective_status(e.window().end()) == ElectionStatus::Closed);
            }
        }

        #[test]
        fn a_close_with_grace_ends_grace_later_but_never_extends(len in 10i64..1000, close_at in 0i64..2000, grace in 0i64..100) {
            let mut e = in_status(ElectionStatus::Active, len);
            let end_before = e.window().end();
            let now = at(close_at) + Duration::microseconds(1);
            if e.close_with_grace(now, Duration::seconds(grace)).is_ok() {
                prop_assert_eq!(e.window().end(), (now + Duration::seconds(grace)).min(end_before));
                // Closed at once, whatever the end: no host that knows accepts another vote.
                prop_assert_eq!(e.effective_status(now), ElectionStatus::Closed);
            }
        }
    }

    #[test]
    fn an_election_with_votes_is_cancelled_only_with_a_reason() {
        let now = at(100);
        let mut e = election(2, 0, 3600);
        e.schedule(at(-10)).unwrap();
        assert_eq!(e.effective_status(now), ElectionStatus::Active);
        let before = e.clone();
        assert_eq!(
            e.cancel(now, 442, None),
            Err(ElectionError::CancelNeedsReason { votes: 442 })
        );
        assert_eq!(e, before, "a refused cancel changes nothing");
        let reason = CancelReason::parse("  the studio lost power  ").unwrap();
        assert_eq!(reason.as_str(), "the studio lost power");
        e.cancel(now, 442, Some(&reason)).unwrap();
        assert_eq!(e.effective_status(now), ElectionStatus::Cancelled);
        // Without votes no reason is needed.
        let mut empty = election(2, 0, 3600);
        empty.cancel(now, 0, None).unwrap();
        assert!(CancelReason::parse("no").is_err());
    }
}
