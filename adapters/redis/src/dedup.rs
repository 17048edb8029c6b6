//! Claims, confirm/release scripts and the sharded live tallies.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use fred::prelude::{HashesInterface, KeysInterface};
use fred::types::scripts::Script;
use fred::types::{Expiration, SetOptions};
use livevote_domain::{CandidateCount, CandidateId, ElectionId, IdempotencyKey, VoteId, VoterId};
use livevote_ports::{
    Claim, ClaimOutcome, ClaimState, ConfirmOutcome, DedupError, ExistingClaim, LiveTallies, VoteDedup,
};

use crate::{RedisStore, format_time, parse_time, to_dedup_error};

/// Confirm: pending -> accepted plus the tally bump, only for the claim's own vote.
/// KEYS: claim, tally shard. ARGV: vote id, candidate id, accepted TTL in ms.
/// Returns 2 (confirmed now), 1 (already confirmed by this vote), 0 (not this vote's).
pub const CONFIRM_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 3, 38) ~= ARGV[1] then return 0 end
if string.sub(v, 1, 1) == 'A' then return 1 end
redis.call('SET', KEYS[1], 'A' .. string.sub(v, 2), 'PX', ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return 2
";

/// Release: delete the claim only while it is pending and this vote's.
/// KEYS: claim. ARGV: vote id. Returns 1 if deleted, else 0.
pub const RELEASE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'P' and string.sub(v, 3, 38) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Replace one tally shard: delete it, then write the given counts.
/// KEYS: tally shard. ARGV: candidate, count, candidate, count, ...
pub const REPLACE_LUA: &str = r"
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return #ARGV / 2
";

/// The three scripts, loaded once per process and run by SHA-1.
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    confirm: Script,
    release: Script,
    replace: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            confirm: Script::from_lua(CONFIRM_LUA),
            release: Script::from_lua(RELEASE_LUA),
            replace: Script::from_lua(REPLACE_LUA),
        }
    }
}

fn encode_claim(state: ClaimState, claim: &Claim) -> String {
    let v = &claim.vote;
    let tag = match state {
        ClaimState::Reserved => 'P',
        ClaimState::Accepted => 'A',
    };
    format!(
        "{tag}:{}:{}:{}",
        v.vote_id.as_uuid().hyphenated(),
        format_time(v.accepted_at),
        claim.idempotency_key.as_ref().map(|k| k.as_str()).unwrap_or("")
    )
}

fn decode_claim(value: &str) -> anyhow::Result<ExistingClaim> {
    let mut parts = value.splitn(4, ':');
    let mut next = |what: &str| {
        parts
            .next()
            .with_context(|| format!("claim {value:?} has no {what}"))
    };
    let state = match next("state")? {
        "P" => ClaimState::Reserved,
        "A" => ClaimState::Accepted,
        other => return Err(anyhow!("claim {value:?} has unknown state {other:?}")),
    };
    let vote_id = VoteId::parse(next("vote id")?).with_context(|| format!("claim {value:?}"))?;
    let accepted_at = parse_time(next("timestamp")?).with_context(|| format!("claim {value:?}"))?;
    let key = next("idempotency key")?;
    let idempotency_key = if key.is_empty() {
        None
    } else {
        Some(IdempotencyKey::parse(key).with_context(|| format!("claim {value:?}"))?)
    };
    Ok(ExistingClaim {
        vote_id,
        accepted_at,
        state,
        idempotency_key,
    })
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl VoteDedup for RedisStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, DedupError> {
        let v = &claim.vote;
        let key = self.keys.claim(v.election_id, &v.voter_id);
        let previous: Option<String> = self
            .pool
            .set(
                key,
                encode_claim(ClaimState::Reserved, claim),
                Some(Expiration::PX(millis(self.config.pending_ttl))),
                Some(SetOptions::NX),
                true,
            )
            .await
            .map_err(to_dedup_error)?;
        let Some(previous) = previous else {
            return Ok(ClaimOutcome::Claimed);
        };
        let existing = decode_claim(&previous).map_err(DedupError::Unknown)?;
        if existing.vote_id == v.vote_id {
            // Our own claim: the first attempt succeeded and its reply was
            // lost, then the client library sent the command again.
            return Ok(ClaimOutcome::Claimed);
        }
        Ok(ClaimOutcome::Held(existing))
    }

    async fn confirm(&self, claim: &Claim) -> Result<ConfirmOutcome, DedupError> {
        let v = &claim.vote;
        let shard = self.keys.shard_of(&v.voter_id);
        let keys = vec![
            self.keys.claim(v.election_id, &v.voter_id),
            self.keys.tally(v.election_id, shard),
        ];
        let args = vec![
            v.vote_id.as_uuid().hyphenated().to_string(),
            v.candidate_id.to_string(),
            millis(self.config.accepted_ttl).to_string(),
        ];
        let answer: i64 = self
            .scripts
            .confirm
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await
            .map_err(to_dedup_error)?;
        match answer {
            1 | 2 => Ok(ConfirmOutcome::Confirmed),
            0 => Ok(ConfirmOutcome::NotHeld),
            other => Err(DedupError::Unknown(anyhow!("confirm script answered {other}"))),
        }
    }

    async fn release(&self, claim: &Claim) -> Result<bool, DedupError> {
        let v = &claim.vote;
        let answer: i64 = self
            .scripts
            .release
            .evalsha_with_reload(
                self.pool.next(),
                self.keys.claim(v.election_id, &v.voter_id),
                v.vote_id.as_uuid().hyphenated().to_string(),
            )
            .await
            .map_err(to_dedup_error)?;
        Ok(answer == 1)
    }

    async fn lookup(
        &self,
        election: ElectionId,
        voter: &VoterId,
    ) -> Result<Option<ExistingClaim>, DedupError> {
        let value: Option<String> = self
            .pool
            .get(self.keys.claim(election, voter))
            .await
            .map_err(to_dedup_error)?;
        value
            .map(|v| decode_claim(&v).map_err(DedupError::Unknown))
            .transpose()
    }
}

impl LiveTallies for RedisStore {
    async fn accepted_counts(&self, election: ElectionId) -> Result<Vec<CandidateCount>, DedupError> {
        let pipeline = self.pool.next().pipeline();
        for shard in 0..self.keys.shard_count() {
            let () = pipeline
                .hgetall(self.keys.tally(election, shard))
                .await
                .map_err(to_dedup_error)?;
        }
        let shards: Vec<HashMap<String, u64>> = pipeline.all().await.map_err(to_dedup_error)?;
        let mut sums: HashMap<CandidateId, u64> = HashMap::new();
        for (field, count) in shards.into_iter().flatten() {
            let candidate = CandidateId::parse(&field).map_err(|e| {
                DedupError::Unknown(anyhow!("tally field {field:?} of election {election}: {e}"))
            })?;
            *sums.entry(candidate).or_default() += count;
        }
        let mut counts: Vec<CandidateCount> = sums
            .into_iter()
            .map(|(candidate_id, votes)| CandidateCount { candidate_id, votes })
            .collect();
        counts.sort_by_key(|c| c.candidate_id);
        Ok(counts)
    }

    async fn replace_counts(
        &self,
        election: ElectionId,
        counts: &[CandidateCount],
    ) -> Result<(), DedupError> {
        let mut merged: HashMap<CandidateId, u64> = HashMap::new();
        for c in counts {
            *merged.entry(c.candidate_id).or_default() += c.votes;
        }
        let args: Vec<String> = merged
            .iter()
            .filter(|(_, votes)| **votes > 0)
            .flat_map(|(candidate, votes)| [candidate.to_string(), votes.to_string()])
            .collect();
        // Shard 0 first: readers may over-count for a moment, never see a
        // half-written shard (crate docs).
        for shard in 0..self.keys.shard_count() {
            let shard_args = if shard == 0 { args.clone() } else { Vec::new() };
            let _: i64 = self
                .scripts
                .replace
                .evalsha_with_reload(self.pool.next(), self.keys.tally(election, shard), shard_args)
                .await
                .map_err(to_dedup_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use livevote_domain::Ballot;

    fn claim(key: Option<&str>) -> Claim {
        Claim {
            vote: Ballot {
                vote_id: VoteId::generate(),
                election_id: ElectionId::generate(),
                candidate_id: CandidateId::generate(),
                voter_id: VoterId::parse("auth0|x").unwrap(),
                accepted_at: Utc::now(),
            },
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        }
    }

    #[test]
    fn a_claim_value_round_trips_with_and_without_a_key_and_puts_the_vote_id_where_the_scripts_look() {
        for key in [None, Some("retry:1:with:colons")] {
            let c = claim(key);
            let encoded = encode_claim(ClaimState::Reserved, &c);
            assert_eq!(&encoded[2..38], c.vote.vote_id.as_uuid().hyphenated().to_string());
            let decoded = decode_claim(&encoded).unwrap();
            assert_eq!(decoded.vote_id, c.vote.vote_id);
            assert_eq!(decoded.accepted_at, c.vote.accepted_at);
            assert_eq!(decoded.state, ClaimState::Reserved);
            assert_eq!(decoded.idempotency_key, c.idempotency_key);
            let accepted = decode_claim(&encode_claim(ClaimState::Accepted, &c)).unwrap();
            assert_eq!(accepted.state, ClaimState::Accepted);
        }
    }

    #[test]
    fn a_corrupt_claim_value_is_an_error_not_a_guess() {
        for bad in [
            "",
            "X:1",
            "P:not-a-uuid:1:",
            "P:0190b1a8-0000-7000-8000-000000000000:soon:",
            "P:0190b1a8-0000-7000-8000-000000000000:1.2000000000:",
        ] {
            assert!(decode_claim(bad).is_err(), "{bad:?}");
        }
    }
}
