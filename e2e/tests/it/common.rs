//! The voting side of the end-to-end tests, shared by the in-memory and the
//! real-adapter pipelines.

use std::collections::HashMap;
use std::future::Future;

use livevote_domain::{CandidateId, CorrelationId, Election, VoteId, VoterId};
use livevote_ingestion::{CastReceipt, CastVote, CastVoteError};

/// A request from `voter` for the candidate at `candidate` in the election's list.
pub fn vote(election: &Election, voter: &str, candidate: usize) -> CastVote {
    CastVote {
        voter: VoterId::parse(voter).unwrap(),
        election_id: election.id(),
        candidate_id: election.candidates()[candidate].id(),
        captcha_token: None,
        idempotency_key: None,
        correlation_id: CorrelationId::generate(),
        remote_ip: None,
    }
}

/// 2,000 viewers vote at once for one of four candidates; a quarter of them
/// try again for another candidate with a new request, and must be refused
/// with their first vote. Returns every vote id answered "accepted", with the
/// candidate its viewer chose.
pub async fn two_thousand_voters_and_five_hundred_repeats<F, Fut>(
    election: &Election,
    cast: F,
) -> HashMap<VoteId, CandidateId>
where
    F: Fn(CastVote) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<CastReceipt, CastVoteError>> + Send + 'static,
{
    let mut voters = Vec::new();
    for i in 0..2000usize {
        let (cast, election) = (cast.clone(), election.clone());
        voters.push(tokio::spawn(async move {
            let name = format!("auth0|viewer-{i:04}");
            let candidate = (i * 7) % 4;
            let receipt = cast(vote(&election, &name, candidate))
                .await
                .expect("first vote accepted");
            let repeat = if i % 4 == 0 {
                Some(cast(vote(&election, &name, (candidate + 1) % 4)).await)
            } else {
                None
            };
            (receipt, candidate, repeat)
        }));
    }
    let mut accepted: HashMap<VoteId, CandidateId> = HashMap::new();
    let mut repeats = 0;
    for task in voters {
        let (receipt, candidate, repeat) = task.await.unwrap();
        assert!(
            accepted
                .insert(receipt.vote_id, election.candidates()[candidate].id())
                .is_none()
        );
        if let Some(repeat) = repeat {
            repeats += 1;
            match repeat {
                Err(CastVoteError::AlreadyVoted { vote_id, accepted_at }) => {
                    assert_eq!((vote_id, accepted_at), (receipt.vote_id, receipt.accepted_at));
                }
                other => panic!("a repeat attempt was not refused with the original vote: {other:?}"),
            }
        }
    }
    assert_eq!((repeats, accepted.len()), (500, 2000));
    accepted
}
