//! Claims, confirm/release scripts and the sharded live tallies.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use fred::prelude::{Error as FredError, HashesInterface, KeysInterface, Pool};
use fred::types::scripts::Script;
use livevote_domain::{CandidateCount, CandidateId, ElectionId, IdempotencyKey, VoteId, VoterId};
use livevote_ports::{
    Claim, ClaimOutcome, ClaimState, ConfirmOutcome, DedupError, ExistingClaim, LiveTallies, VoteDedup,
};

use crate::batch::{BatchError, BatchLimits, Batcher};
use crate::{RedisConfig, RedisStore, format_time, parse_time, to_dedup_error};

/// Claim many: for each claim key, `SET NX PX GET` as one atomic step.
/// KEYS: claim keys. ARGV: pending TTL in ms, then one claim value per key.
/// Returns one string per key: empty when the claim was made, else the
/// existing claim's value (left untouched).
pub const CLAIM_MANY_LUA: &str = r"
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('SET', KEYS[i], ARGV[i + 1], 'NX', 'PX', ARGV[1], 'GET') or ''
end
return out
";

/// Confirm many: for each claim, pending -> accepted plus the tally bump,
/// only for the claim's own vote, each claim in one atomic step.
/// KEYS: claim, tally shard, claim, tally shard, ... ARGV: accepted TTL in ms,
/// then vote id, candidate id per claim. Returns one number per claim:
/// 2 (confirmed now), 1 (already confirmed by this vote), 0 (not this vote's).
pub const CONFIRM_MANY_LUA: &str = r"
local out = {}
for i = 1, #KEYS / 2 do
  local claim = KEYS[2 * i - 1]
  local id = ARGV[2 * i]
  local v = redis.call('GET', claim)
  if not v or string.sub(v, 3, 38) ~= id then
    out[i] = 0
  elseif string.sub(v, 1, 1) == 'A' then
    out[i] = 1
  else
    redis.call('SET', claim, 'A' .. string.sub(v, 2), 'PX', ARGV[1])
    redis.call('HINCRBY', KEYS[2 * i], ARGV[2 * i + 1], 1)
    out[i] = 2
  end
end
return out
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

/// The scripts, loaded once per process and run by SHA-1.
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    release: Script,
    replace: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            release: Script::from_lua(RELEASE_LUA),
            replace: Script::from_lua(REPLACE_LUA),
        }
    }
}

/// One claim on its way to [`CLAIM_MANY_LUA`]: key and value.
pub(crate) struct ClaimItem {
    key: String,
    value: String,
}

/// One confirm on its way to [`CONFIRM_MANY_LUA`].
pub(crate) struct ConfirmItem {
    claim_key: String,
    tally_key: String,
    vote_id: String,
    candidate: String,
}

/// A claim's answer: `None` when made, else the existing claim's value.
pub(crate) type ClaimBatcher = Batcher<ClaimItem, Option<String>, FredError>;
/// A confirm's answer: the script's 0, 1 or 2.
pub(crate) type ConfirmBatcher = Batcher<ConfirmItem, i64, FredError>;

/// Starts the claim and confirm batchers over `pool` (crate docs, "Batching").
pub(crate) fn start_batchers(
    pool: &Pool,
    config: &RedisConfig,
    clustered: bool,
) -> (ClaimBatcher, ConfirmBatcher) {
    let limits = BatchLimits {
        queue: 8192,
        max_batch: config.max_batch,
        // One drain at a time (its groups run in parallel): measured with
        // ingest-bench, 4 at once made batches a third as big and cost Redis
        // more CPU per vote for no gain in throughput.
        in_flight: 1,
    };
    // In a cluster every script must stay in one hash slot: one group per
    // `{e:E:S}` tag. A single server takes any keys in one call.
    let tag = move |key: &str| {
        clustered
            .then(|| {
                key.split_once('{')
                    .and_then(|(_, rest)| rest.split_once('}'))
                    .map(|(tag, _)| tag.to_owned())
            })
            .flatten()
    };
    let claims = {
        let (pool, script, ttl) = (
            pool.clone(),
            Script::from_lua(CLAIM_MANY_LUA),
            millis(config.pending_ttl),
        );
        Batcher::start(
            limits,
            move |item: &ClaimItem| tag(&item.key),
            move |items: Vec<ClaimItem>| {
                let (pool, script) = (pool.clone(), script.clone());
                async move {
                    let mut keys = Vec::with_capacity(items.len());
                    let mut args = Vec::with_capacity(items.len() + 1);
                    args.push(ttl.to_string());
                    for item in items {
                        keys.push(item.key);
                        args.push(item.value);
                    }
                    let answers: Vec<String> = script.evalsha_with_reload(pool.next(), keys, args).await?;
                    Ok(answers
                        .into_iter()
                        .map(|a| (!a.is_empty()).then_some(a))
                        .collect())
                }
            },
        )
    };
    let confirms = {
        let (pool, script, ttl) = (
            pool.clone(),
            Script::from_lua(CONFIRM_MANY_LUA),
            millis(config.accepted_ttl),
        );
        Batcher::start(
            limits,
            move |item: &ConfirmItem| tag(&item.claim_key),
            move |items: Vec<ConfirmItem>| {
                let (pool, script) = (pool.clone(), script.clone());
                async move {
                    let mut keys = Vec::with_capacity(items.len() * 2);
                    let mut args = Vec::with_capacity(items.len() * 2 + 1);
                    args.push(ttl.to_string());
                    for item in items {
                        keys.extend([item.claim_key, item.tally_key]);
                        args.extend([item.vote_id, item.candidate]);
                    }
                    script.evalsha_with_reload(pool.next(), keys, args).await
                }
            },
        )
    };
    (claims, confirms)
}

fn batch_error(e: BatchError<FredError>) -> DedupError {
    match e {
        BatchError::Call(e) => to_dedup_error(e),
        BatchError::Stopped => DedupError::Unavailable(anyhow!("the Redis batching task has stopped")),
    }
}

/// The value of a claim key (format in the crate docs).
pub fn encode_claim(state: ClaimState, claim: &Claim) -> String {
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

/// Reads a claim key's value back; anything not in the format is an error.
pub fn decode_claim(value: &str) -> anyhow::Result<ExistingClaim> {
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
        let item = ClaimItem {
            key: self.keys.claim(v.election_id, &v.voter_id),
            value: encode_claim(ClaimState::Reserved, claim),
        };
        let Some(previous) = self.claims.call(item).await.map_err(batch_error)? else {
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
        let item = ConfirmItem {
            claim_key: self.keys.claim(v.election_id, &v.voter_id),
            tally_key: self.keys.tally(v.election_id, self.keys.shard_of(&v.voter_id)),
            vote_id: v.vote_id.as_uuid().hyphenated().to_string(),
            candidate: v.candidate_id.to_string(),
        };
        match self.confirms.call(item).await.map_err(batch_error)? {
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
