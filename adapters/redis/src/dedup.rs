//! Claims (pipelined), the confirm and release scripts and the sharded live tallies.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use fred::prelude::{Error as FredError, Expiration, HashesInterface, KeysInterface, SetOptions};
use fred::types::scripts::Script;
use livevote_domain::{
    CandidateCount, CandidateId, ElectionId, IdempotencyKey, VoteId, VoteLimitReached, VotePolicy, VoteSlot,
    VoterId,
};
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

/// `multi` claim: the lowest free slot of the voter, within the limits.
///
/// KEYS: the voter's slots hash (fields `<n>` or `<n>/<k>`, `k` the
/// per-candidate slot; values are claim values). ARGV: max votes, max per
/// candidate (0: none), pending TTL ms, accepted TTL ms, vote id, candidate,
/// the pending claim value, idempotency key (may be empty). A pending slot
/// older than the pending TTL (by its accepted-at time against the server's
/// clock) is dropped first. Returns `{code, a, b, value}`: code 0 claimed
/// slot `a`/`b` (b = 0: no per-candidate slot); 1 this vote already holds
/// slot a/b (a retried command); 2 the claim of the same idempotency key
/// holds slot a/b with `value`; 3 limit reached, `a` used of `b`, value
/// `c` when it is the per-candidate limit.
pub const MULTI_CLAIM_LUA: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local used, used_k = {}, {}
local count, mine = 0, 0
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  local state, vote, at, cand, key = string.match(value, '^(%u):([^:]*):([^:]*):([^:]*):(.*)$')
  local n, k = string.match(field, '^(%d+)/?(%d*)$')
  if state == 'P' and tonumber(at) * 1000 + tonumber(ARGV[3]) <= now_ms then
    redis.call('HDEL', KEYS[1], field)
  else
    if k == '' then k = '0' end
    if vote == ARGV[5] then return {'1', n, k, value} end
    if ARGV[8] ~= '' and key == ARGV[8] then return {'2', n, k, value} end
    used[tonumber(n)] = true
    count = count + 1
    if cand == ARGV[6] then
      mine = mine + 1
      used_k[tonumber(k)] = true
    end
  end
end
local slot = nil
for n = 1, tonumber(ARGV[1]) do
  if not used[n] then slot = n break end
end
if not slot then return {'3', tostring(count), ARGV[1], ''} end
local field = tostring(slot)
local per = 0
if tonumber(ARGV[2]) > 0 then
  for k = 1, tonumber(ARGV[2]) do
    if not used_k[k] then per = k break end
  end
  if per == 0 then return {'3', tostring(mine), ARGV[2], 'c'} end
  field = field .. '/' .. per
end
redis.call('HSET', KEYS[1], field, ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'0', tostring(slot), tostring(per), ''}
";

/// `changeable` claim: the voter's next change number.
///
/// KEYS: the voter's slots hash (fields `seq`: last number given; `cur`:
/// `<n>:<candidate>` of the newest confirmed change; `s:<n>`: claim values).
/// ARGV: accepted TTL ms, vote id, the pending claim value, idempotency key
/// (may be empty), pending TTL ms. A change 32 or more numbers behind the
/// newest is forgotten once it is accepted (or its pending claim lapsed), so
/// the hash stays small while every change still in flight keeps its claim;
/// a retry with the key of a forgotten change is taken as a new change.
/// Returns `{code, n, value}`: 0 claimed change `n`; 1 this vote already
/// holds `n`; 2 the claim of the same idempotency key holds `n` with `value`.
pub const CHANGE_CLAIM_LUA: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') + 1
for i = 1, #all, 2 do
  local n = string.match(all[i], '^s:(%d+)$')
  if n then
    local state, vote, at, cand, key = string.match(all[i + 1], '^(%u):([^:]*):([^:]*):([^:]*):(.*)$')
    if vote == ARGV[2] then return {'1', n, all[i + 1]} end
    if ARGV[4] ~= '' and key == ARGV[4] then return {'2', n, all[i + 1]} end
    local settled = state == 'A' or tonumber(at) * 1000 + tonumber(ARGV[5]) <= now_ms
    if tonumber(n) <= seq - 32 and settled then redis.call('HDEL', KEYS[1], all[i]) end
  end
end
redis.call('HSET', KEYS[1], 'seq', seq, 's:' .. seq, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {'0', tostring(seq), ''}
";

/// `multi` confirm: pending -> accepted for this vote's slot, and one more
/// for its candidate on the voter's tally shard, in one step.
///
/// KEYS: slots hash, tally shard. ARGV: field, accepted value, candidate,
/// vote id. Returns 2 (confirmed now), 1 (already), 0 (not this vote's).
pub const MULTI_CONFIRM_LUA: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old or string.sub(old, 3, 38) ~= ARGV[4] then return 0 end
if string.sub(old, 1, 1) == 'A' then return 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
return 2
";

/// `changeable` confirm: pending -> accepted for this change; if it is newer
/// than the voter's current confirmed change, the voter's live count moves
/// from the old candidate to this one (both on the voter's own tally shard,
/// so no shard goes below zero) and the old one counts as replaced;
/// otherwise this change counts as replaced at once.
///
/// KEYS: slots hash, tally shard, replaced counter. ARGV: change number,
/// accepted value, candidate, vote id. Returns 2, 1 or 0 as the others.
pub const CHANGE_CONFIRM_LUA: &str = r"
local field = 's:' .. ARGV[1]
local old = redis.call('HGET', KEYS[1], field)
if not old or string.sub(old, 3, 38) ~= ARGV[4] then return 0 end
if string.sub(old, 1, 1) == 'A' then return 1 end
redis.call('HSET', KEYS[1], field, ARGV[2])
local cur = redis.call('HGET', KEYS[1], 'cur')
if cur then
  local seq, candidate = string.match(cur, '^(%d+):(.*)$')
  if tonumber(seq) > tonumber(ARGV[1]) then
    redis.call('INCR', KEYS[3])
    return 2
  end
  redis.call('HINCRBY', KEYS[2], candidate, -1)
  redis.call('INCR', KEYS[3])
end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HSET', KEYS[1], 'cur', ARGV[1] .. ':' .. ARGV[3])
return 2
";

/// Release of a `multi` or `changeable` slot: delete it only while it is
/// pending and this vote's. KEYS: slots hash. ARGV: field, vote id.
pub const SLOT_RELEASE_LUA: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, 1) == 'P' and string.sub(v, 3, 38) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// The scripts, loaded once per process and run by SHA-1.
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    confirm: Script,
    release: Script,
    replace: Script,
    multi_claim: Script,
    change_claim: Script,
    multi_confirm: Script,
    change_confirm: Script,
    slot_release: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            confirm: Script::from_lua(CONFIRM_MANY_LUA),
            release: Script::from_lua(RELEASE_LUA),
            replace: Script::from_lua(REPLACE_LUA),
            multi_claim: Script::from_lua(MULTI_CLAIM_LUA),
            change_claim: Script::from_lua(CHANGE_CLAIM_LUA),
            multi_confirm: Script::from_lua(MULTI_CONFIRM_LUA),
            change_confirm: Script::from_lua(CHANGE_CONFIRM_LUA),
            slot_release: Script::from_lua(SLOT_RELEASE_LUA),
        }
    }
}

/// A batch that mixes policies, split: the positions of its `single`
/// claims (sent together as native commands) and of the others (one script
/// call each).
fn split_by_policy(claims: &[Claim]) -> (Vec<usize>, Vec<usize>) {
    (0..claims.len()).partition(|&i| claims[i].policy == VotePolicy::Single)
}

/// The positions of one part of a split batch, with that part's answers.
type Part<T> = (Vec<usize>, Vec<Result<T, DedupError>>);

/// The answers of the parts of a split batch, back in the batch's order.
fn merge_answers<T>(len: usize, parts: [Part<T>; 2], what: &str) -> Vec<Result<T, DedupError>> {
    let mut out: Vec<Option<Result<T, DedupError>>> = (0..len).map(|_| None).collect();
    for (positions, answers) in parts {
        for (i, answer) in positions.into_iter().zip(answers) {
            out[i] = Some(answer);
        }
    }
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Err(DedupError::Unknown(anyhow!("no answer for the {what}")))))
        .collect()
}

/// The field of a `multi` or `changeable` slot in the voter's slots hash.
fn slot_field(policy: VotePolicy, slot: VoteSlot) -> String {
    match (policy, slot.per_candidate) {
        (VotePolicy::Changeable, _) => format!("s:{}", slot.number),
        (_, Some(k)) => format!("{}/{k}", slot.number),
        (_, None) => slot.number.to_string(),
    }
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, DedupError> {
    s.parse()
        .map_err(|_| DedupError::Unknown(anyhow!("claim script answered {what} {s:?}")))
}

/// An existing claim found by a slot claim script, with its slot.
fn held(value: &str, slot: VoteSlot) -> Result<ClaimOutcome, DedupError> {
    let mut existing = decode_claim(value).map_err(DedupError::Unknown)?;
    existing.slot = slot;
    Ok(ClaimOutcome::Held(existing))
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
        slot: VoteSlot::FIRST,
    })
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl RedisStore {
    /// One `multi` or `changeable` claim: one script call.
    async fn claim_slot(&self, claim: &Claim) -> Result<ClaimOutcome, DedupError> {
        let v = &claim.vote;
        let key = self.keys.slots(v.election_id, &v.voter_id);
        let pending = encode_claim(ClaimState::Reserved, claim);
        let idempotency = claim
            .idempotency_key
            .as_ref()
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default();
        let vote_id = v.vote_id.as_uuid().hyphenated().to_string();
        let accepted_ttl = millis(self.config.accepted_ttl).to_string();
        match claim.policy {
            VotePolicy::Multi(limits) => {
                let args = vec![
                    limits.max_votes().to_string(),
                    limits.max_per_candidate().unwrap_or(0).to_string(),
                    millis(self.config.pending_ttl).to_string(),
                    accepted_ttl,
                    vote_id,
                    v.candidate_id.to_string(),
                    pending,
                    idempotency,
                ];
                let answer: Vec<String> = self
                    .scripts
                    .multi_claim
                    .evalsha_with_reload(self.pool.next(), key, args)
                    .await
                    .map_err(to_dedup_error)?;
                let [code, a, b, value] = answer.as_slice() else {
                    return Err(DedupError::Unknown(anyhow!("multi claim answered {answer:?}")));
                };
                let slot = || -> Result<VoteSlot, DedupError> {
                    let k: u16 = number(b, "slot")?;
                    Ok(VoteSlot {
                        number: number(a, "slot")?,
                        per_candidate: (k > 0).then_some(k),
                    })
                };
                match code.as_str() {
                    "0" | "1" => Ok(ClaimOutcome::Claimed(slot()?)),
                    "2" => held(value, slot()?),
                    "3" => Ok(ClaimOutcome::LimitReached(VoteLimitReached {
                        used: number(a, "used")?,
                        max: number(b, "limit")?,
                        per_candidate: value == "c",
                    })),
                    other => Err(DedupError::Unknown(anyhow!(
                        "multi claim answered code {other:?}"
                    ))),
                }
            }
            VotePolicy::Changeable => {
                let answer: Vec<String> = self
                    .scripts
                    .change_claim
                    .evalsha_with_reload(
                        self.pool.next(),
                        key,
                        vec![
                            accepted_ttl,
                            vote_id,
                            pending,
                            idempotency,
                            millis(self.config.pending_ttl).to_string(),
                        ],
                    )
                    .await
                    .map_err(to_dedup_error)?;
                let [code, n, value] = answer.as_slice() else {
                    return Err(DedupError::Unknown(anyhow!("change claim answered {answer:?}")));
                };
                let slot = VoteSlot::sequence(number(n, "change number")?);
                match code.as_str() {
                    "0" | "1" => Ok(ClaimOutcome::Claimed(slot)),
                    "2" => held(value, slot),
                    other => Err(DedupError::Unknown(anyhow!(
                        "change claim answered code {other:?}"
                    ))),
                }
            }
            VotePolicy::Single => Err(DedupError::Unknown(anyhow!("a single claim is not a slot claim"))),
        }
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
    async fn claim_singles(&self, claims: &[Claim]) -> Vec<Result<ClaimOutcome, DedupError>> {
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
                    return Ok(ClaimOutcome::Claimed(VoteSlot::FIRST));
                };
                let existing = decode_claim(&previous).map_err(DedupError::Unknown)?;
                if existing.vote_id == claim.vote.vote_id {
                    // Our own claim: the first attempt succeeded and its reply
                    // was lost, then the client library sent the command again.
                    return Ok(ClaimOutcome::Claimed(VoteSlot::FIRST));
                }
                Ok(ClaimOutcome::Held(existing))
            })
            .collect()
    }

    /// One script call for all the claims on a single server; one per hash
    /// tag (slot) under Redis Cluster, run at once. The tally bumps of a call
    /// go to the tally shard of its first claim: readers sum every shard, so
    /// which shard holds a count does not matter, and one shard per call
    /// lets the script add each candidate's votes with one `HINCRBY`.
    async fn confirm_singles(&self, claims: &[Claim]) -> Vec<Result<ConfirmOutcome, DedupError>> {
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

    /// A batch with claims of other policies than `single`: the `single`
    /// ones as one batch of native commands, the others one script call
    /// each, all at once; answers in the order of `claims`.
    async fn claim_mixed(&self, claims: &[Claim]) -> Vec<Result<ClaimOutcome, DedupError>> {
        let (single, slotted) = split_by_policy(claims);
        let single_claims: Vec<Claim> = single.iter().map(|&i| claims[i].clone()).collect();
        let (single_answers, slot_answers) = futures_util::future::join(
            Box::pin(self.claim_singles(&single_claims)),
            futures_util::future::join_all(slotted.iter().map(|&i| Box::pin(self.claim_slot(&claims[i])))),
        )
        .await;
        merge_answers(
            claims.len(),
            [(single, single_answers), (slotted, slot_answers)],
            "claim",
        )
    }

    /// One `multi` or `changeable` confirm: one script call.
    async fn confirm_slot(&self, claim: &Claim) -> Result<ConfirmOutcome, DedupError> {
        let v = &claim.vote;
        let shard = self.keys.shard_of(&v.voter_id);
        let accepted = encode_claim(ClaimState::Accepted, claim);
        let vote_id = v.vote_id.as_uuid().hyphenated().to_string();
        let mut keys = vec![
            self.keys.slots(v.election_id, &v.voter_id),
            self.keys.tally(v.election_id, shard),
        ];
        let answer: i64 = if claim.policy.replaces() {
            keys.push(self.keys.replaced(v.election_id, shard));
            let args = vec![
                v.slot.number.to_string(),
                accepted,
                v.candidate_id.to_string(),
                vote_id,
            ];
            self.scripts
                .change_confirm
                .evalsha_with_reload(self.pool.next(), keys, args)
                .await
        } else {
            let args = vec![
                slot_field(claim.policy, v.slot),
                accepted,
                v.candidate_id.to_string(),
                vote_id,
            ];
            self.scripts
                .multi_confirm
                .evalsha_with_reload(self.pool.next(), keys, args)
                .await
        }
        .map_err(to_dedup_error)?;
        match answer {
            1 | 2 => Ok(ConfirmOutcome::Confirmed),
            0 => Ok(ConfirmOutcome::NotHeld),
            other => Err(DedupError::Unknown(anyhow!("confirm script answered {other}"))),
        }
    }
}

impl VoteDedup for RedisStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, DedupError> {
        self.claim_many(std::slice::from_ref(claim))
            .await
            .pop()
            .unwrap_or_else(|| Err(DedupError::Unknown(anyhow!("no answer for the claim"))))
    }

    async fn claim_many(&self, claims: &[Claim]) -> Vec<Result<ClaimOutcome, DedupError>> {
        if claims.iter().any(|c| c.policy != VotePolicy::Single) {
            return self.claim_mixed(claims).await;
        }
        self.claim_singles(claims).await
    }

    async fn confirm(&self, claim: &Claim) -> Result<ConfirmOutcome, DedupError> {
        self.confirm_many(std::slice::from_ref(claim))
            .await
            .pop()
            .unwrap_or_else(|| Err(DedupError::Unknown(anyhow!("no answer for the confirm"))))
    }

    async fn confirm_many(&self, claims: &[Claim]) -> Vec<Result<ConfirmOutcome, DedupError>> {
        if claims.iter().any(|c| c.policy != VotePolicy::Single) {
            let (single, slotted) = split_by_policy(claims);
            let single_claims: Vec<Claim> = single.iter().map(|&i| claims[i].clone()).collect();
            let (single_answers, slot_answers) = futures_util::future::join(
                Box::pin(self.confirm_singles(&single_claims)),
                futures_util::future::join_all(
                    slotted.iter().map(|&i| Box::pin(self.confirm_slot(&claims[i]))),
                ),
            )
            .await;
            return merge_answers(
                claims.len(),
                [(single, single_answers), (slotted, slot_answers)],
                "confirm",
            );
        }
        self.confirm_singles(claims).await
    }

    async fn release(&self, claim: &Claim) -> Result<bool, DedupError> {
        let v = &claim.vote;
        if claim.policy != VotePolicy::Single {
            let answer: i64 = self
                .scripts
                .slot_release
                .evalsha_with_reload(
                    self.pool.next(),
                    self.keys.slots(v.election_id, &v.voter_id),
                    vec![
                        slot_field(claim.policy, v.slot),
                        v.vote_id.as_uuid().hyphenated().to_string(),
                    ],
                )
                .await
                .map_err(to_dedup_error)?;
            return Ok(answer == 1);
        }
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

    async fn replaced_votes(&self, election: ElectionId) -> Result<u64, DedupError> {
        let pipeline = self.pool.next().pipeline();
        for shard in 0..self.keys.shard_count() {
            let () = pipeline
                .get(self.keys.replaced(election, shard))
                .await
                .map_err(to_dedup_error)?;
        }
        let shards: Vec<Option<u64>> = pipeline.all().await.map_err(to_dedup_error)?;
        Ok(shards.into_iter().flatten().sum())
    }

    /// The count goes to shard 0 and the other shards are deleted, in one
    /// pipeline (readers may over-count for that moment, as in `replace_counts`).
    async fn replace_replaced(&self, election: ElectionId, replaced: u64) -> Result<(), DedupError> {
        let client = self.pool.next();
        let () = client
            .set(self.keys.replaced(election, 0), replaced, None, None, false)
            .await
            .map_err(to_dedup_error)?;
        for shard in 1..self.keys.shard_count() {
            let _: i64 = client
                .del(self.keys.replaced(election, shard))
                .await
                .map_err(to_dedup_error)?;
        }
        Ok(())
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
                slot: VoteSlot::FIRST,
            },
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
            policy: VotePolicy::Single,
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
