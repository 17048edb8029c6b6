//! Claims, confirms, releases and live tallies on a real Redis server.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{PrivateRedis, store, test_config};
use chrono::{DateTime, Utc};
use fred::prelude::{Builder, ClientLike, Config, KeysInterface};
use livevote_domain::{Ballot, CandidateCount, CandidateId, ElectionId, IdempotencyKey, VoteId, VoterId};
use livevote_ports::{Claim, ClaimOutcome, ClaimState, ConfirmOutcome, DedupError, LiveTallies, VoteDedup};
use livevote_redis::{ConnectError, RedisConfig, RedisStore};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn claim(election: ElectionId, voter: &str, candidate: CandidateId, key: Option<&str>) -> Claim {
    Claim {
        vote: Ballot {
            vote_id: VoteId::generate(),
            election_id: election,
            candidate_id: candidate,
            voter_id: VoterId::parse(voter).unwrap(),
            accepted_at: now(),
            slot: livevote_domain::VoteSlot::FIRST,
        },
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        policy: livevote_domain::VotePolicy::Single,
    }
}

async fn totals(s: &RedisStore, e: ElectionId) -> BTreeMap<CandidateId, u64> {
    s.accepted_counts(e)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.candidate_id, c.votes))
        .collect()
}

async fn raw_client(url: &str) -> fred::prelude::Client {
    let client = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

#[tokio::test]
async fn claim_confirm_and_a_second_attempt_sees_the_first_vote() {
    let config = test_config();
    let s = store(config.clone()).await;
    let (e, a, b) = (
        ElectionId::generate(),
        CandidateId::generate(),
        CandidateId::generate(),
    );
    let first = claim(e, "auth0|viewer", a, Some("key-1"));
    assert_eq!(
        s.claim(&first).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );

    let second = claim(e, "auth0|viewer", b, None);
    let ClaimOutcome::Held(held) = s.claim(&second).await.unwrap() else {
        panic!("the second claim must find the first")
    };
    assert_eq!(
        (held.vote_id, held.accepted_at, held.state),
        (first.vote.vote_id, first.vote.accepted_at, ClaimState::Reserved)
    );
    assert!(held.is_retry_of(first.idempotency_key.as_ref()));
    assert!(!held.is_retry_of(None));
    // The claim keeps its candidate: a retry is checked against the vote it retries.
    assert_eq!(held.candidate_id, Some(a));
    assert!(held.is_same_vote(a) && !held.is_same_vote(b));

    assert_eq!(s.confirm(&first).await.unwrap(), ConfirmOutcome::Confirmed);
    // Confirming again (a retried command) changes nothing.
    assert_eq!(s.confirm(&first).await.unwrap(), ConfirmOutcome::Confirmed);
    assert_eq!(totals(&s, e).await, BTreeMap::from([(a, 1)]));
    // Another vote's confirm never counts.
    assert_eq!(s.confirm(&second).await.unwrap(), ConfirmOutcome::NotHeld);
    assert_eq!(totals(&s, e).await, BTreeMap::from([(a, 1)]));

    let looked = s.lookup(e, &first.vote.voter_id).await.unwrap().unwrap();
    assert_eq!(looked.state, ClaimState::Accepted);
    assert_eq!(looked.vote_id, first.vote.vote_id);
    // The accepted claim is kept for the long TTL; a claim's retry of itself counts as claimed.
    assert!(
        !s.release(&first).await.unwrap(),
        "an accepted claim is never released"
    );
    assert_eq!(
        s.claim(&first).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );

    let raw = raw_client(&config.url).await;
    let keys: Vec<String> = raw_keys(&raw, &config.key_prefix).await;
    let claim_key = keys.iter().find(|k| k.contains(":v:")).unwrap();
    let ttl_ms: i64 = raw.pttl(claim_key.as_str()).await.unwrap();
    assert!(
        ttl_ms > 47 * 3600 * 1000,
        "accepted TTL is 48 h, found {ttl_ms} ms"
    );
    assert!(
        s.lookup(e, &VoterId::parse("nobody").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn raw_keys(raw: &fred::prelude::Client, prefix: &str) -> Vec<String> {
    let found: fred::types::Value = raw
        .custom(
            fred::types::CustomCommand::new_static("KEYS", fred::types::ClusterHash::FirstKey, false),
            vec![format!("{prefix}:*")],
        )
        .await
        .unwrap();
    found.convert().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_a_hundred_concurrent_claims_for_one_voter_exactly_one_wins() {
    let s = Arc::new(store(test_config()).await);
    let (e, c) = (ElectionId::generate(), CandidateId::generate());
    let attempts: Vec<Claim> = (0..100).map(|_| claim(e, "auth0|eager", c, None)).collect();
    let tasks: Vec<_> = attempts
        .iter()
        .cloned()
        .map(|a| {
            let s = s.clone();
            tokio::spawn(async move { s.claim(&a).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut held_by = HashSet::new();
    for (attempt, task) in attempts.iter().zip(tasks) {
        match task.await.unwrap().unwrap() {
            ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST) => winners.push(attempt.vote.vote_id),
            ClaimOutcome::Held(existing) => {
                held_by.insert(existing.vote_id);
            }
            other => panic!("a single claim answered {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    assert_eq!(
        held_by,
        HashSet::from([winners[0]]),
        "every loser sees the winner"
    );
    // Every attempt confirms concurrently: only the winner counts.
    let confirms: Vec<_> = attempts
        .into_iter()
        .map(|a| {
            let s = s.clone();
            tokio::spawn(async move { (a.vote.vote_id, s.confirm(&a).await.unwrap()) })
        })
        .collect();
    for task in confirms {
        let (id, outcome) = task.await.unwrap();
        let expected = if id == winners[0] {
            ConfirmOutcome::Confirmed
        } else {
            ConfirmOutcome::NotHeld
        };
        assert_eq!(outcome, expected);
    }
    assert_eq!(totals(&s, e).await, BTreeMap::from([(c, 1)]));
}

#[tokio::test]
async fn a_confirm_after_the_pending_claim_expired_does_not_count() {
    let s = store(RedisConfig {
        pending_ttl: Duration::from_millis(150),
        ..test_config()
    })
    .await;
    let (e, c) = (ElectionId::generate(), CandidateId::generate());
    let slow = claim(e, "auth0|slow", c, None);
    assert_eq!(
        s.claim(&slow).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        s.lookup(e, &slow.vote.voter_id).await.unwrap().is_none(),
        "the claim lapsed"
    );
    assert_eq!(s.confirm(&slow).await.unwrap(), ConfirmOutcome::NotHeld);
    assert!(totals(&s, e).await.is_empty(), "nothing counted");

    // Lapsed and taken by another attempt: the first can neither confirm nor release it.
    assert_eq!(
        s.claim(&slow).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let retry = claim(e, "auth0|slow", c, None);
    assert_eq!(
        s.claim(&retry).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );
    assert_eq!(s.confirm(&slow).await.unwrap(), ConfirmOutcome::NotHeld);
    // The other attempt's claim is left as it was: its vote, still pending.
    let held = s.lookup(e, &slow.vote.voter_id).await.unwrap().unwrap();
    assert_eq!(
        (held.vote_id, held.state),
        (retry.vote.vote_id, ClaimState::Reserved)
    );
    assert!(!s.release(&slow).await.unwrap());
    assert_eq!(s.confirm(&retry).await.unwrap(), ConfirmOutcome::Confirmed);
    // Nor does a late confirm touch the other's accepted claim.
    assert_eq!(s.confirm(&slow).await.unwrap(), ConfirmOutcome::NotHeld);
    let held = s.lookup(e, &slow.vote.voter_id).await.unwrap().unwrap();
    assert_eq!(
        (held.vote_id, held.state),
        (retry.vote.vote_id, ClaimState::Accepted)
    );
    assert_eq!(totals(&s, e).await, BTreeMap::from([(c, 1)]));
}

#[tokio::test]
async fn release_frees_only_its_own_pending_claim() {
    let s = store(test_config()).await;
    let (e, c) = (ElectionId::generate(), CandidateId::generate());
    let mine = claim(e, "auth0|r", c, None);
    let other = claim(e, "auth0|r", c, None);
    assert_eq!(
        s.claim(&mine).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );
    assert!(
        !s.release(&other).await.unwrap(),
        "not the other vote's to release"
    );
    assert!(s.lookup(e, &mine.vote.voter_id).await.unwrap().is_some());
    assert!(s.release(&mine).await.unwrap());
    assert!(s.lookup(e, &mine.vote.voter_id).await.unwrap().is_none());
    assert!(!s.release(&mine).await.unwrap(), "releasing twice is a no-op");
    // The voter may try again at once.
    assert_eq!(
        s.claim(&other).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_tallies_sum_every_shard_and_a_rebuild_replaces_them() {
    let config = test_config();
    let s = Arc::new(store(config.clone()).await);
    let e = ElectionId::generate();
    let candidates: Vec<CandidateId> = (0..3).map(|_| CandidateId::generate()).collect();
    let mut expected: BTreeMap<CandidateId, u64> = BTreeMap::new();
    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let candidate = candidates[(i * 7) % 3];
        *expected.entry(candidate).or_default() += 1;
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let c = claim(e, &format!("auth0|viewer-{i}"), candidate, None);
            assert_eq!(
                s.claim(&c).await.unwrap(),
                ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
            );
            assert_eq!(s.confirm(&c).await.unwrap(), ConfirmOutcome::Confirmed);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(totals(&s, e).await, expected);
    let raw = raw_client(&config.url).await;
    let tally_keys: Vec<String> = raw_keys(&raw, &config.key_prefix)
        .await
        .into_iter()
        .filter(|k| k.ends_with(":tally"))
        .collect();
    assert_eq!(tally_keys.len(), 64, "1,000 voters spread over all 64 shards");
    // Another election's tallies are apart.
    assert!(totals(&s, ElectionId::generate()).await.is_empty());

    let rebuilt = vec![
        CandidateCount {
            candidate_id: candidates[0],
            votes: 5,
        },
        CandidateCount {
            candidate_id: candidates[2],
            votes: 7,
        },
    ];
    s.replace_counts(e, &rebuilt).await.unwrap();
    assert_eq!(
        totals(&s, e).await,
        BTreeMap::from([(candidates[0], 5), (candidates[2], 7)])
    );
    let after: Vec<String> = raw_keys(&raw, &config.key_prefix)
        .await
        .into_iter()
        .filter(|k| k.ends_with(":tally"))
        .collect();
    assert_eq!(after.len(), 1, "the rebuild keeps one shard: {after:?}");
}

#[tokio::test]
async fn an_unreachable_or_stopped_redis_is_a_clear_unavailable_error() {
    let mut redis = PrivateRedis::start();
    let s = store(RedisConfig {
        url: redis.url(),
        command_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let (e, c) = (ElectionId::generate(), CandidateId::generate());
    let v = claim(e, "auth0|x", c, None);
    assert_eq!(
        s.claim(&v).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );
    redis.stop();
    let started = std::time::Instant::now();
    let err = s.claim(&claim(e, "auth0|y", c, None)).await.unwrap_err();
    assert!(matches!(err, DedupError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fails fast: {:?}",
        started.elapsed()
    );
    assert!(matches!(s.confirm(&v).await, Err(DedupError::Unavailable(_))));
    assert!(matches!(
        s.accepted_counts(e).await,
        Err(DedupError::Unavailable(_))
    ));
    assert!(s.ping().await.is_err());

    // Back, empty (as after a restart without persistence): the store reconnects by itself
    // and the scripts are loaded again on first use.
    redis.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if s.ping().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "reconnected after the restart");
    let again = claim(e, "auth0|z", c, None);
    assert_eq!(
        s.claim(&again).await.unwrap(),
        ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST)
    );
    assert_eq!(s.confirm(&again).await.unwrap(), ConfirmOutcome::Confirmed);
    assert_eq!(totals(&s, e).await, BTreeMap::from([(c, 1)]));
    s.close().await;

    // Nothing listening at all: connect says so.
    redis.stop();
    let err = RedisStore::connect(RedisConfig {
        url: redis.url(),
        ..test_config()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn a_prefix_with_braces_is_refused() {
    let err = RedisStore::connect(RedisConfig {
        key_prefix: "lv{x}".into(),
        ..test_config()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn the_server_clock_is_read_as_the_reference_and_an_unreachable_server_is_an_error() {
    use livevote_ports::ReferenceClock;
    let s = store(test_config()).await;
    let before = Utc::now();
    let server = s.reference_now().await.unwrap();
    let after = Utc::now();
    // The same machine's clock: the reading falls within the call, give or take a millisecond.
    let slack = chrono::Duration::milliseconds(1);
    assert!(
        before - slack <= server && server <= after + slack,
        "{before} <= {server} <= {after}"
    );
    let mut private = PrivateRedis::start();
    let other = store(RedisConfig {
        url: private.url(),
        ..test_config()
    })
    .await;
    assert!(other.reference_now().await.is_ok());
    private.stop();
    assert!(
        other.reference_now().await.is_err(),
        "a stopped server has no time to tell"
    );
}

/// `calls` of one command in `INFO commandstats` (0 when it never ran).
async fn command_calls(raw: &fred::prelude::Client, command: &str) -> u64 {
    let info: String = raw
        .custom(fred::cmd!("INFO"), vec!["commandstats"])
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_share_pipelines_batched_confirms_share_script_calls_and_each_voter_counts_once() {
    // A server of its own, so its command statistics are this test's alone.
    let redis = PrivateRedis::start();
    let s = Arc::new(
        store(RedisConfig {
            url: redis.url(),
            pool_size: 2,
            ..test_config()
        })
        .await,
    );
    let raw = raw_client(&redis.url()).await;
    let (e, a, b) = (
        ElectionId::generate(),
        CandidateId::generate(),
        CandidateId::generate(),
    );
    // 2,000 viewers, each trying twice (another vote id) at the same moment.
    let attempts: Vec<Claim> = (0..4000)
        .map(|i| {
            claim(
                e,
                &format!("auth0|viewer-{}", i / 2),
                if i % 4 < 2 { a } else { b },
                None,
            )
        })
        .collect();
    let tasks: Vec<_> = attempts
        .iter()
        .cloned()
        .map(|c| {
            let s = s.clone();
            tokio::spawn(async move { s.claim(&c).await.unwrap() })
        })
        .collect();
    let mut winners = Vec::new();
    for (attempt, task) in attempts.iter().zip(tasks) {
        match task.await.unwrap() {
            ClaimOutcome::Claimed(livevote_domain::VoteSlot::FIRST) => winners.push(attempt.clone()),
            ClaimOutcome::Held(existing) => assert_ne!(existing.vote_id, attempt.vote.vote_id),
            other => panic!("a single claim answered {other:?}"),
        }
    }
    assert_eq!(winners.len(), 2000, "one claim per viewer");
    // 4,000 claims, each one native command (never a script), sent in far
    // fewer round trips than commands: measured by the server's own count.
    assert_eq!(command_calls(&raw, "evalsha").await, 0);
    assert_eq!(
        command_calls(&raw, "set").await,
        4000 + 1,
        "the claims and the start-up probe"
    );
    // Every attempt confirms in batches of 100 (as the publisher does), the
    // winners twice: only each winner's first confirm counts.
    let won: HashSet<VoteId> = winners.iter().map(|w| w.vote.vote_id).collect();
    let all: Vec<Claim> = attempts.iter().chain(&winners).cloned().collect();
    let batches: Vec<_> = all
        .chunks(100)
        .map(|chunk| {
            let (s, chunk) = (s.clone(), chunk.to_vec());
            tokio::spawn(async move { (chunk.clone(), s.confirm_many(&chunk).await) })
        })
        .collect();
    for task in batches {
        let (chunk, answers) = task.await.unwrap();
        assert_eq!(answers.len(), chunk.len());
        for (c, answer) in chunk.iter().zip(answers) {
            let expected = if won.contains(&c.vote.vote_id) {
                ConfirmOutcome::Confirmed
            } else {
                ConfirmOutcome::NotHeld
            };
            assert_eq!(answer.unwrap(), expected);
        }
    }
    assert_eq!(totals(&s, e).await, BTreeMap::from([(a, 1000), (b, 1000)]));
    for w in winners.iter().take(50) {
        let held = s.lookup(e, &w.vote.voter_id).await.unwrap().unwrap();
        assert_eq!((held.vote_id, held.state), (w.vote.vote_id, ClaimState::Accepted));
    }
    // One script call per batch of 100 on a single server (plus, at most
    // once per batch, the first try that finds the script not loaded yet).
    let scripts = command_calls(&raw, "evalsha").await;
    assert!(
        (60..=120).contains(&scripts),
        "{scripts} script calls for 60 batches"
    );
    // Inside the scripts, one SET per confirm, and one more for each loser
    // (its own value written, then the winner's put back); the tally bumps
    // summed per candidate: at most two HINCRBY per call.
    assert_eq!(
        command_calls(&raw, "set").await,
        4001 + 6000 + 2000,
        "one SET a confirm, a second to put back another vote's claim"
    );
    let hincrby = command_calls(&raw, "hincrby").await;
    assert!(
        (20..=80).contains(&hincrby),
        "{hincrby} HINCRBY calls for 2,000 counted votes in 60 script calls"
    );
}
