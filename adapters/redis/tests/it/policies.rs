//! `multi` and `changeable` claims, confirms and releases on a real Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::{store, test_config};
use chrono::{DateTime, Utc};
use livevote_domain::{
    Ballot, CandidateId, ElectionId, IdempotencyKey, VoteId, VoteLimitReached, VotePolicy, VoteSlot, VoterId,
};
use livevote_ports::{Claim, ClaimOutcome, ConfirmOutcome, LiveTallies, VoteDedup};
use livevote_redis::RedisStore;

fn claim(
    policy: VotePolicy,
    election: ElectionId,
    voter: &str,
    candidate: CandidateId,
    key: Option<&str>,
) -> Claim {
    Claim {
        vote: Ballot {
            vote_id: VoteId::generate(),
            election_id: election,
            candidate_id: candidate,
            voter_id: VoterId::parse(voter).unwrap(),
            accepted_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
            slot: VoteSlot::FIRST,
        },
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        policy,
    }
}

/// The claim with the slot its claim gave, as the vote pipeline keeps it.
fn with_slot(mut c: Claim, outcome: &ClaimOutcome) -> Claim {
    match outcome {
        ClaimOutcome::Claimed(slot) => c.vote.slot = *slot,
        other => panic!("expected a claimed slot, got {other:?}"),
    }
    c
}

async fn totals(s: &RedisStore, e: ElectionId) -> BTreeMap<CandidateId, u64> {
    s.accepted_counts(e)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.votes > 0)
        .map(|c| (c.candidate_id, c.votes))
        .collect()
}

fn multi(max: i64, per: Option<i64>) -> VotePolicy {
    VotePolicy::from_parts("multi", Some(max), per).unwrap()
}

/// The case: 50 parallel requests of one viewer in a `multi`
/// election of 5 votes give exactly five slots, 1 to 5, and 45 refusals
/// that say 5 of 5 are used.
#[tokio::test]
async fn fifty_parallel_multi_claims_of_one_viewer_take_exactly_five_slots() {
    let s = store(test_config()).await;
    let (e, a) = (ElectionId::generate(), CandidateId::generate());
    let policy = multi(5, None);
    let claims: Vec<Claim> = (0..50).map(|_| claim(policy, e, "fan", a, None)).collect();
    let tasks: Vec<_> = claims
        .iter()
        .cloned()
        .map(|c| {
            let s = s.clone();
            tokio::spawn(async move { s.claim(&c).await.unwrap() })
        })
        .collect();
    let mut won = Vec::new();
    let mut refused = 0;
    for (c, t) in claims.into_iter().zip(tasks) {
        match t.await.unwrap() {
            outcome @ ClaimOutcome::Claimed(_) => won.push(with_slot(c, &outcome)),
            ClaimOutcome::LimitReached(limit) => {
                assert_eq!(
                    limit,
                    VoteLimitReached {
                        used: 5,
                        max: 5,
                        per_candidate: false
                    }
                );
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(won.len(), 5);
    assert_eq!(refused, 45);
    let slots: BTreeSet<u32> = won.iter().map(|c| c.vote.slot.number).collect();
    assert_eq!(slots, (1..=5).collect());
    for answer in s.confirm_many(&won).await {
        assert_eq!(answer.unwrap(), ConfirmOutcome::Confirmed);
    }
    // Confirming again counts nothing more.
    for answer in s.confirm_many(&won).await {
        assert_eq!(answer.unwrap(), ConfirmOutcome::Confirmed);
    }
    assert_eq!(totals(&s, e).await, BTreeMap::from([(a, 5)]));
}

#[tokio::test]
async fn a_released_slot_is_free_again_and_the_per_candidate_limit_holds() {
    let s = store(test_config()).await;
    let (e, a, b) = (
        ElectionId::generate(),
        CandidateId::generate(),
        CandidateId::generate(),
    );
    let policy = multi(3, Some(2));
    let first = claim(policy, e, "fan", a, None);
    let out = s.claim(&first).await.unwrap();
    assert_eq!(
        out,
        ClaimOutcome::Claimed(VoteSlot {
            number: 1,
            per_candidate: Some(1)
        })
    );
    let first = with_slot(first, &out);
    let second = claim(policy, e, "fan", a, None);
    let out = s.claim(&second).await.unwrap();
    let second = with_slot(second, &out);
    assert_eq!(second.vote.slot.per_candidate, Some(2));
    // A third vote for A: the per-candidate limit.
    assert_eq!(
        s.claim(&claim(policy, e, "fan", a, None)).await.unwrap(),
        ClaimOutcome::LimitReached(VoteLimitReached {
            used: 2,
            max: 2,
            per_candidate: true
        })
    );
    // The publish of the second failed: its slot comes back, once.
    assert!(s.release(&second).await.unwrap());
    assert!(!s.release(&second).await.unwrap());
    let again = claim(policy, e, "fan", a, None);
    let out = s.claim(&again).await.unwrap();
    assert_eq!(
        out,
        ClaimOutcome::Claimed(VoteSlot {
            number: 2,
            per_candidate: Some(2)
        })
    );
    // The released attempt can no longer confirm; the first can.
    assert_eq!(s.confirm(&second).await.unwrap(), ConfirmOutcome::NotHeld);
    assert_eq!(s.confirm(&first).await.unwrap(), ConfirmOutcome::Confirmed);
    assert!(
        !s.release(&first).await.unwrap(),
        "an accepted slot is never released"
    );
    let for_b = claim(policy, e, "fan", b, None);
    assert_eq!(
        s.claim(&for_b).await.unwrap(),
        ClaimOutcome::Claimed(VoteSlot {
            number: 3,
            per_candidate: Some(1)
        })
    );
    assert_eq!(totals(&s, e).await, BTreeMap::from([(a, 1)]));
}

#[tokio::test]
async fn a_retry_with_the_same_key_takes_no_second_slot() {
    let s = store(test_config()).await;
    let (e, a) = (ElectionId::generate(), CandidateId::generate());
    for policy in [multi(3, None), VotePolicy::Changeable] {
        let voter = format!("retrier-{}", policy.as_str());
        let first = claim(policy, e, &voter, a, Some("tap-1"));
        let out = s.claim(&first).await.unwrap();
        let first = with_slot(first, &out);
        let retry = claim(policy, e, &voter, a, Some("tap-1"));
        match s.claim(&retry).await.unwrap() {
            ClaimOutcome::Held(existing) => {
                assert_eq!(existing.vote_id, first.vote.vote_id);
                assert_eq!(existing.slot, first.vote.slot);
                assert!(existing.is_retry_of(retry.idempotency_key.as_ref()));
            }
            other => panic!("{policy}: {other:?}"),
        }
        let next = claim(policy, e, &voter, a, Some("tap-2"));
        match s.claim(&next).await.unwrap() {
            ClaimOutcome::Claimed(slot) => assert_eq!(slot.number, 2, "{policy}"),
            other => panic!("{policy}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_pending_multi_slot_lapses_after_the_pending_ttl() {
    let mut config = test_config();
    config.pending_ttl = Duration::from_millis(300);
    let s = store(config).await;
    let (e, a) = (ElectionId::generate(), CandidateId::generate());
    let policy = multi(1, None);
    let crashed = claim(policy, e, "fan", a, None);
    let out = s.claim(&crashed).await.unwrap();
    let crashed = with_slot(crashed, &out);
    assert!(matches!(
        s.claim(&claim(policy, e, "fan", a, None)).await.unwrap(),
        ClaimOutcome::LimitReached(_)
    ));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        s.claim(&claim(policy, e, "fan", a, None)).await.unwrap(),
        ClaimOutcome::Claimed(VoteSlot::FIRST)
    );
    assert_eq!(s.confirm(&crashed).await.unwrap(), ConfirmOutcome::NotHeld);
    assert!(totals(&s, e).await.is_empty());
}

#[tokio::test]
async fn changeable_counts_the_newest_confirmed_change_whatever_the_confirm_order() {
    let s = store(test_config()).await;
    let e = ElectionId::generate();
    let cands: Vec<CandidateId> = (0..3).map(|_| CandidateId::generate()).collect();
    let policy = VotePolicy::Changeable;
    let mut changes = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let change = claim(policy, e, "fan", *c, None);
        let out = s.claim(&change).await.unwrap();
        assert_eq!(out, ClaimOutcome::Claimed(VoteSlot::sequence(i as u32 + 1)));
        changes.push(with_slot(change, &out));
    }
    // The newest confirmed first: the older ones count as replaced at once.
    for i in [2, 0, 1] {
        assert_eq!(s.confirm(&changes[i]).await.unwrap(), ConfirmOutcome::Confirmed);
        assert_eq!(totals(&s, e).await, BTreeMap::from([(cands[2], 1)]), "after {i}");
    }
    assert_eq!(s.replaced_votes(e).await.unwrap(), 2);
    // A fourth change, confirmed: the count moves.
    let fourth = claim(policy, e, "fan", cands[0], None);
    let out = s.claim(&fourth).await.unwrap();
    let fourth = with_slot(fourth, &out);
    s.confirm(&fourth).await.unwrap();
    assert_eq!(totals(&s, e).await, BTreeMap::from([(cands[0], 1)]));
    assert_eq!(s.replaced_votes(e).await.unwrap(), 3);
}

/// 50 parallel changes of one viewer, each claimed and confirmed: exactly
/// one current vote, for the candidate of the highest change number, and
/// the other 49 replaced.
#[tokio::test]
async fn fifty_parallel_changes_end_with_one_current_vote() {
    let s = store(test_config()).await;
    let e = ElectionId::generate();
    let cands: Vec<CandidateId> = (0..4).map(|_| CandidateId::generate()).collect();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            let c = claim(VotePolicy::Changeable, e, "fan", cands[i % 4], None);
            tokio::spawn(async move {
                let out = s.claim(&c).await.unwrap();
                let c = with_slot(c, &out);
                assert_eq!(s.confirm(&c).await.unwrap(), ConfirmOutcome::Confirmed);
                c
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    let newest = done.iter().max_by_key(|c| c.vote.slot.number).unwrap();
    assert_eq!(newest.vote.slot.number, 50);
    assert_eq!(
        totals(&s, e).await,
        BTreeMap::from([(newest.vote.candidate_id, 1)])
    );
    assert_eq!(s.replaced_votes(e).await.unwrap(), 49);
}
