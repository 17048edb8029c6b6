//! Claims (pipelined), the confirm and release scripts and the sharded live tallies.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use fred::prelude::{Error as FredError, Expiration, HashesInterface, KeysInterface, SetOptions};
use fred::types::scripts::Script;
use livevote_domain::{CandidateCount, CandidateId, ElectionId, IdempotencyKey, VoteId, VoterId};
use livevote_ports::{
    Claim, ClaimOutcome, ClaimState, ConfirmOutcome, DedupError, ExistingClaim, LiveTallies, VoteDedup,
};

use crate::{RedisStore, format_time, parse_time, to_dedup_error};

/// Confirm many: for each claim, pending -> accepted, only for the claim's
/// own vote, each claim in one atomic step; then the live tally bumps of the
/// votes confirmed now, summed per candidate (one `HINCRBY` per candidate
/// and call instead of one per vote).
///
/// KEYS: the claims, then the tally shard the bumps go to (one per call: every
/// key of a call shares its hash tag under Redis Cluster). ARGV: accepted TTL
/// in ms, pending TTL in ms, then per claim its accepted value and its
/// candidate. Returns one number per claim: 2 (confirmed now), 1 (already
/// confirmed by this vote), 0 (not this vote's: gone, or another vote's).
///
/// One command per claim: `SET claim <accepted> XX PX <accepted ttl> GET`
/// writes the accepted value and returns what was there. Gone: `XX` wrote
/// nothing. Another vote's (its claim expired and another attempt took the
/// voter, or Redis lost its data in between): that value is put back at
/// once, inside the same script, so nobody ever sees ours there; its TTL
/// restarts (pending or accepted, as it was), which only lengthens a pending
/// claim that its own attempt confirms or releases anyway.
pub const CONFIRM_MANY_LUA: &str = r"
local n = #KEYS - 1
local out = {}
local bumps = {}
for i = 1, n do
  local mine = ARGV[2 * i + 1]
  local old = redis.call('SET', KEYS[i], mine, 'XX', 'PX', ARGV[1], 'GET')
  if not old then
    out[i] = 0
  elseif string.sub(old, 3, 38) ~= string.sub(mine, 3, 38) then
    local ttl = ARGV[2]
    if string.sub(old, 1, 1) == 'A' then ttl = ARGV[1] end
    redis.call('SET', KEYS[i], old, 'PX', ttl)
    out[i] = 0
  elseif string.sub(old, 1, 1) == 'A' then
    out[i] = 1
  else
    local candidate = ARGV[2 * i + 2]
    bumps[candidate] = (bumps[candidate] or 0) + 1
    out[i] = 2
  end
end
for candidate, count in pairs(bumps) do
  redis.call('HINCRBY', KEYS[n + 1], candidate, count)
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
    confirm: Script,
    release: Script,
    replace: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            confirm: Script::from_lua(CONFIRM_MANY_LUA),
            release: Script::from_lua(RELEASE_LUA),
            replace: Script::from_lua(REPLACE_LUA),
        }
    }
}

/// The hash tag of a key (`e:E:S` of `P:{e:E:S}:...`).
fn hash_tag(key: &str) -> Option<&str> {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
}

/// The value of a claim key (format in the crate docs).
pub fn encode_claim(state: ClaimState, claim: &Claim) -> String {
    let v = &claim.vote;
    let tag = match state {
        ClaimState::Reserved => 'P',
        ClaimState::Accepted => 'A',
    };
    format!(
        "{tag}:{}:{}:{}:{}",
        v.vote_id.as_uuid().hyphenated(),
        format_time(v.accepted_at),
        v.candidate_id.as_uuid().hyphenated(),
        claim.idempotency_key.as_ref().map(|k| k.as_str()).unwrap_or("")
    )
}

/// Length of a hyphenated UUID.
const UUID_LEN: usize = 36;

/// Splits `<candidate id>:<idempotency key>` from the rest of a claim's
/// value; a value of the earlier format, `<idempotency key>` alone, has no
/// candidate.
fn candidate_and_key(rest: &str) -> (Option<CandidateId>, &str) {
    if rest.len() > UUID_LEN
        && rest.as_bytes()[UUID_LEN] == b':'
        && let Ok(candidate) = CandidateId::parse(&rest[..UUID_LEN])
    {
        return (Some(candidate), &rest[UUID_LEN + 1..]);
    }
    (None, rest)
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
    let (candidate_id, key) = candidate_and_key(next("idempotency key")?);
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
        candidate_id,
    })
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl VoteDedup for RedisStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, DedupError> {
        self.claim_many(std::slice::from_ref(claim))
            .await
            .pop()
            .unwrap_or_else(|| Err(DedupError::Unknown(anyhow!("no answer for the claim"))))
    }

    /// `SET claim <pending> NX PX <pending ttl> GET` per claim, one native
    /// (atomic) command each, all handed to one connection at once: fred
    /// writes commands queued together with one flush (its automatic
    /// pipelining) and routes each to the node owning its key, so a batch
    /// is one round trip per node, on a Redis Cluster as on a single server.
    /// (fred's explicit `pipeline()` flushes after every command when nothing
    /// else is queued: measured with `ingest-bench`, five times the socket
    /// reads on the server for the same commands.) Commands on one
    /// connection run in order, so two claims of one voter in a batch are
    /// decided in order.
    async fn claim_many(&self, claims: &[Claim]) -> Vec<Result<ClaimOutcome, DedupError>> {
        let client = self.pool.next();
        let ttl = millis(self.config.pending_ttl);
        // Each command's future is a few KiB: boxed one by one they come from
        // the allocator's reused blocks, where one slice of them all would be
        // a fresh large block (page faults) for every batch.
        let sets = claims.iter().map(|claim| {
            let v = &claim.vote;
            Box::pin(client.set::<Option<String>, _, _>(
                self.keys.claim(v.election_id, &v.voter_id),
                encode_claim(ClaimState::Reserved, claim),
                Some(Expiration::PX(ttl)),
                Some(SetOptions::NX),
                true,
            ))
        });
        let answers = futures_util::future::join_all(sets).await;
        claims
            .iter()
            .zip(answers)
            .map(|(claim, answer)| {
                let Some(previous) = answer.map_err(to_dedup_error)? else {
                    return Ok(ClaimOutcome::Claimed);
                };
                let existing = decode_claim(&previous).map_err(DedupError::Unknown)?;
                if existing.vote_id == claim.vote.vote_id {
                    // Our own claim: the first attempt succeeded and its reply
                    // was lost, then the client library sent the command again.
                    return Ok(ClaimOutcome::Claimed);
                }
                Ok(ClaimOutcome::Held(existing))
            })
            .collect()
    }

    async fn confirm(&self, claim: &Claim) -> Result<ConfirmOutcome, DedupError> {
        self.confirm_many(std::slice::from_ref(claim))
            .await
            .pop()
            .unwrap_or_else(|| Err(DedupError::Unknown(anyhow!("no answer for the confirm"))))
    }

    /// One script call for all the claims on a single server; one per hash
    /// tag (slot) under Redis Cluster, run at once. The tally bumps of a call
    /// go to the tally shard of its first claim: readers sum every shard, so
    /// which shard holds a count does not matter, and one shard per call
    /// lets the script add each candidate's votes with one `HINCRBY`.
    async fn confirm_many(&self, claims: &[Claim]) -> Vec<Result<ConfirmOutcome, DedupError>> {
        let keys: Vec<String> = claims
            .iter()
            .map(|c| self.keys.claim(c.vote.election_id, &c.vote.voter_id))
            .collect();
        let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let tag = if self.clustered { hash_tag(key) } else { None };
            match groups.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, members)) => members.push(i),
                None => groups.push((tag, vec![i])),
            }
        }
        let calls = groups.iter().map(|(_, members)| {
            let first = &claims[members[0]].vote;
            let mut call_keys = Vec::with_capacity(members.len() + 1);
            let mut args = Vec::with_capacity(2 * members.len() + 2);
            args.push(millis(self.config.accepted_ttl).to_string());
            args.push(millis(self.config.pending_ttl).to_string());
            for &i in members {
                call_keys.push(keys[i].clone());
                args.push(encode_claim(ClaimState::Accepted, &claims[i]));
                args.push(claims[i].vote.candidate_id.to_string());
            }
            call_keys.push(
                self.keys
                    .tally(first.election_id, self.keys.shard_of(&first.voter_id)),
            );
            let client = self.pool.next().clone();
            async move {
                let answers: Result<Vec<i64>, FredError> = self
                    .scripts
                    .confirm
                    .evalsha_with_reload(&client, call_keys, args)
                    .await;
                answers
            }
        });
        let results = futures_util::future::join_all(calls).await;
        let mut out: Vec<Option<Result<ConfirmOutcome, DedupError>>> = claims.iter().map(|_| None).collect();
        for ((_, members), result) in groups.iter().zip(results) {
            match result {
                Ok(answers) if answers.len() == members.len() => {
                    for (&i, answer) in members.iter().zip(answers) {
                        out[i] = Some(match answer {
                            1 | 2 => Ok(ConfirmOutcome::Confirmed),
                            0 => Ok(ConfirmOutcome::NotHeld),
                            other => Err(DedupError::Unknown(anyhow!("confirm script answered {other}"))),
                        });
                    }
                }
                Ok(answers) => {
                    for &i in members {
                        out[i] = Some(Err(DedupError::Unknown(anyhow!(
                            "confirm script answered {} values for {} claims",
                            answers.len(),
                            members.len()
                        ))));
                    }
                }
                Err(e) => {
                    for &i in members {
                        out[i] = Some(Err(to_dedup_error(e.clone())));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(DedupError::Unknown(anyhow!("no answer for the confirm")))))
            .collect()
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
            assert_eq!(decoded.candidate_id, Some(c.vote.candidate_id));
            let accepted = decode_claim(&encode_claim(ClaimState::Accepted, &c)).unwrap();
            assert_eq!(accepted.state, ClaimState::Accepted);
        }
    }

    #[test]
    fn a_claim_value_of_the_earlier_format_reads_with_its_candidate_unknown() {
        let vote = "0190b1a8-0000-7000-8000-000000000000";
        for (value, key) in [
            (format!("A:{vote}:1.000000002:"), None),
            (format!("A:{vote}:1.000000002:retry:1"), Some("retry:1")),
            // A key that happens to be a UUID, with nothing after it.
            (format!("A:{vote}:1.000000002:{vote}"), Some(vote)),
        ] {
            let decoded = decode_claim(&value).unwrap();
            assert_eq!(decoded.candidate_id, None, "{value}");
            assert_eq!(
                decoded.idempotency_key.as_ref().map(|k| k.as_str()),
                key,
                "{value}"
            );
            assert!(decoded.is_same_vote(CandidateId::generate()));
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
