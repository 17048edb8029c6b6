//! Ready-made elections and votes for tests and the embedded demo.

use chrono::Duration;
use livevote_domain::{
    ActorId, Ballot, CandidateDraft, CandidateName, CorrelationId, Description, Election, ElectionId,
    NewElection, Party, ResultsVisibility, Timestamp, Title, VoteId, VotePolicy, VoteRecord, VoteSlot,
    VoterId, VotingWindow,
};
use livevote_ports::{AdminAction, ElectionAdmin};

/// `new` as a DRAFT election with fresh election and candidate ids.
///
/// # Panics
/// When the domain refuses `new`: fixtures are meant to be valid.
pub fn create(new: NewElection, now: Timestamp) -> livevote_domain::Election {
    livevote_domain::Election::create(
        livevote_domain::ElectionId::generate(),
        new,
        now,
        livevote_domain::CandidateId::generate,
    )
    .expect("a valid election")
}

/// A request for an election with candidates named `names`, voting in `[start, end)`.
///
/// # Panics
/// On names or a window the domain refuses: fixtures are meant to be valid.
pub fn new_election(title: &str, names: &[&str], start: Timestamp, end: Timestamp) -> NewElection {
    NewElection {
        title: Title::parse(title).expect("valid title"),
        description: Description::parse("").expect("valid description"),
        window: VotingWindow::new(start, end).expect("valid window"),
        candidates: names
            .iter()
            .map(|n| CandidateDraft {
                name: CandidateName::parse(n).expect("valid candidate name"),
                party: Some(Party::parse("Independent").expect("valid party")),
            })
            .collect(),
        visibility: ResultsVisibility::Live,
        captcha_required: false,
        policy: VotePolicy::Single,
    }
}

/// The actor fixtures act as.
pub fn operator() -> ActorId {
    ActorId::parse("auth0|operator").expect("valid actor")
}

/// Creates and schedules an election that votes in `[now - 1 min, now + length)`.
///
/// # Panics
/// If the admin store refuses: a test set-up failure.
pub async fn active_election<A: ElectionAdmin>(
    admin: &A,
    names: &[&str],
    now: Timestamp,
    length: Duration,
    customise: impl FnOnce(&mut NewElection),
) -> Election {
    let mut new = new_election("Live Final", names, now - Duration::minutes(1), now + length);
    customise(&mut new);
    let mut election = Election::create(
        ElectionId::generate(),
        new,
        now,
        livevote_domain::CandidateId::generate,
    )
    .expect("valid election");
    admin
        .create(&election, &operator(), now)
        .await
        .expect("create election");
    election.schedule(now).expect("schedule");
    admin
        .update(
            &election,
            AdminAction::Scheduled,
            &operator(),
            "scheduled by fixture",
            now,
        )
        .await
        .expect("save")
}

/// A vote record for `voter` choosing the candidate at `candidate` in the election's list.
///
/// # Panics
/// On an invalid voter id or candidate index.
pub fn record(election: &Election, voter: &str, candidate: usize, at: Timestamp) -> VoteRecord {
    VoteRecord {
        vote: Ballot {
            vote_id: VoteId::generate(),
            election_id: election.id(),
            candidate_id: election.candidates()[candidate].id(),
            voter_id: VoterId::parse(voter).expect("valid voter"),
            accepted_at: at,
            slot: VoteSlot::FIRST,
        },
        correlation_id: CorrelationId::generate(),
    }
}
