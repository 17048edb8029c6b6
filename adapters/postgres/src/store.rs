//! The vote store on PostgreSQL.
//!
//! `persist_batch` is one transaction:
//! 1. `SET LOCAL synchronous_commit = on`: the commit is durable before the
//!    processor deletes the batch's messages, whatever the server default
//!    (sent with the `BEGIN`, one round trip);
//! 2. one `INSERT ... SELECT FROM UNNEST(...) WITH ORDINALITY ORDER BY ord
//!    ON CONFLICT DO NOTHING RETURNING vote_id` inserts every new vote; the
//!    order makes the first vote of a voter in the batch the one that wins.
//!    The votes' foreign key checks each election and candidate as the rows
//!    go in; when it refuses one, the transaction is dropped and one join
//!    names the votes at fault (`UnknownReference`), nothing written;
//! 3. the votes not inserted are classified with one lookup: same vote id
//!    already stored (a redelivery, counted apart), or another vote of the
//!    same voter (a conflict, recorded once per vote id for auditors);
//! 4. tallies grow by exactly the inserted rows, on one counter shard per
//!    batch chosen from the batch's first vote id, rows touched in a fixed
//!    order so concurrent batches cannot deadlock.
//!
//! Vote policies (ARCHITECTURE.md, "Vote policies"): before the insert, each
//! vote's slot is checked against its election's policy (read once per
//! election and remembered once voting started: a policy is fixed from
//! then on); a slot the policy does not give refuses the batch like an
//! unknown reference. The unique slot per voter (and per voter and
//! candidate) decides conflicts for every policy. Under `changeable`, step 4
//! moves the tallies instead: each voter's `current_votes` row is upserted
//! with the batch's highest slot, only where it is higher than the stored
//! one (the row lock serialises concurrent batches of one voter), and the
//! tallies move from the replaced candidate to the new one; every stored
//! vote that is not current is counted in `replaced_shards`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use livevote_domain::{
    Arrival, Ballot, CandidateCount, CandidateId, CorrelationId, ElectionId, VoteId, VotePolicy, VoteRecord,
    VoteSlot, VoterId, arrival,
};
use livevote_ports::{
    HourlyCount, PersistOutcome, PersistReport, StoreCounts, StoreError, StoredVote, VoteActivity, VoteStore,
};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::is_unavailable;

/// Vote store settings.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// Counter rows per (election, candidate) for persisted tallies.
    pub tally_shards: u16,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { tally_shards: 64 }
    }
}

/// The vote store over a connection pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgVoteStore {
    pool: PgPool,
    config: StoreConfig,
    /// Policies of elections whose voting has started (fixed from then on).
    policies: Arc<Mutex<HashMap<Uuid, VotePolicy>>>,
    /// Fault builds only: commit with the server's `synchronous_commit` instead of forcing it on.
    #[cfg(feature = "fault-injection")]
    server_commit_mode: bool,
}

fn store_error(e: sqlx::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(anyhow::Error::new(e))
    } else {
        StoreError::Unknown(anyhow::Error::new(e))
    }
}

/// SQLSTATE 23503: a row names an election or candidate that does not exist.
fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23503"))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unknown(anyhow::anyhow!("stored {what} is invalid: {e}"))
}

/// The batch as parallel arrays, the shape `UNNEST` takes.
struct Columns {
    vote_ids: Vec<Uuid>,
    election_ids: Vec<Uuid>,
    candidate_ids: Vec<Uuid>,
    voter_ids: Vec<String>,
    accepted_at: Vec<DateTime<Utc>>,
    correlation_ids: Vec<String>,
    slots: Vec<i32>,
    candidate_slots: Vec<Option<i16>>,
}

impl Columns {
    fn of(votes: &[VoteRecord]) -> Self {
        let mut c = Columns {
            vote_ids: Vec::with_capacity(votes.len()),
            election_ids: Vec::with_capacity(votes.len()),
            candidate_ids: Vec::with_capacity(votes.len()),
            voter_ids: Vec::with_capacity(votes.len()),
            accepted_at: Vec::with_capacity(votes.len()),
            correlation_ids: Vec::with_capacity(votes.len()),
            slots: Vec::with_capacity(votes.len()),
            candidate_slots: Vec::with_capacity(votes.len()),
        };
        for r in votes {
            let v = &r.vote;
            c.vote_ids.push(v.vote_id.as_uuid());
            c.election_ids.push(v.election_id.as_uuid());
            c.candidate_ids.push(v.candidate_id.as_uuid());
            c.voter_ids.push(v.voter_id.as_str().to_owned());
            c.accepted_at.push(v.accepted_at);
            c.correlation_ids.push(r.correlation_id.as_str().to_owned());
            // Slots past the column's range are refused before the insert.
            c.slots.push(i32::try_from(v.slot.number).unwrap_or(i32::MAX));
            c.candidate_slots
                .push(v.slot.per_candidate.map(|n| i16::try_from(n).unwrap_or(i16::MAX)));
        }
        c
    }
}

impl PgVoteStore {
    pub fn new(pool: PgPool, config: StoreConfig) -> Self {
        Self {
            pool,
            config,
            policies: Arc::default(),
            #[cfg(feature = "fault-injection")]
            server_commit_mode: false,
        }
    }

    /// Fault builds only: stops forcing `synchronous_commit = on`, so a server
    /// set to `off` acknowledges commits it has not written (the negative
    /// control of the fault suite, which must then report the loss).
    #[cfg(feature = "fault-injection")]
    pub fn with_server_commit_mode(mut self) -> Self {
        self.server_commit_mode = true;
        self
    }

    fn forces_durable_commit(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        if self.server_commit_mode {
            return false;
        }
        true
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The shard a batch adds to: spread by the random bits of its first vote id.
    fn shard_for(&self, votes: &[VoteRecord]) -> i16 {
        let seed = votes
            .first()
            .map_or(0, |v| v.vote.vote_id.as_uuid().as_u128() as u64);
        (seed % u64::from(self.config.tally_shards.max(1))) as i16
    }

    async fn persist(&self, votes: &[VoteRecord]) -> Result<PersistReport, StoreError> {
        let cols = Columns::of(votes);
        // `BEGIN` and the durable-commit setting in one round trip.
        let begin = if self.forces_durable_commit() {
            "BEGIN; SET LOCAL synchronous_commit = on"
        } else {
            "BEGIN"
        };
        let mut tx = self.pool.begin_with(begin).await.map_err(store_error)?;
        // The votes' foreign key checks every reference as the rows go in;
        // only when it refuses one is the batch looked at again to name them.
        let policies = self.policies_of(&mut tx, &cols.election_ids).await?;
        let refused: Vec<VoteId> = votes
            .iter()
            .filter(|r| {
                policies
                    .get(&r.vote.election_id.as_uuid())
                    .is_some_and(|p| !p.admits(r.vote.slot) || r.vote.slot.number > i32::MAX as u32)
            })
            .map(|r| r.vote.vote_id)
            .collect();
        if !refused.is_empty() {
            return Err(StoreError::UnknownReference(refused));
        }
        let inserted: Vec<Uuid> = match sqlx::query_scalar(
            "INSERT INTO votes (vote_id, election_id, candidate_id, voter_id, accepted_at, correlation_id, slot, candidate_slot)
             SELECT vote_id, election_id, candidate_id, voter_id, accepted_at, correlation_id, slot, candidate_slot
               FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[], $7::int4[], $8::int2[])
                    WITH ORDINALITY AS t(vote_id, election_id, candidate_id, voter_id, accepted_at, correlation_id, slot, candidate_slot, ord)
              ORDER BY ord
             ON CONFLICT DO NOTHING
             RETURNING vote_id",
        )
        .bind(&cols.vote_ids)
        .bind(&cols.election_ids)
        .bind(&cols.candidate_ids)
        .bind(&cols.voter_ids)
        .bind(&cols.accepted_at)
        .bind(&cols.correlation_ids)
        .bind(&cols.slots)
        .bind(&cols.candidate_slots)
        .fetch_all(&mut *tx)
        .await
        {
            Ok(ids) => ids,
            Err(e) if is_foreign_key_violation(&e) => {
                drop(tx);
                return Err(self.unknown_references(&cols, e).await);
            }
            Err(e) => return Err(store_error(e)),
        };
        let inserted: HashSet<Uuid> = inserted.into_iter().collect();

        let mut outcomes = vec![PersistOutcome::Inserted; votes.len()];
        let rest: Vec<usize> = (0..votes.len())
            .filter(|&i| !inserted.contains(&cols.vote_ids[i]))
            .collect();
        // Inserted in this very statement: a later copy in the same batch is a redelivery too.
        let mut claimed: HashSet<Uuid> = HashSet::new();
        for (i, id) in cols.vote_ids.iter().enumerate() {
            if inserted.contains(id) && !claimed.insert(*id) {
                outcomes[i] = PersistOutcome::AlreadyPersisted;
            }
        }
        if !rest.is_empty() {
            self.classify(&mut tx, &cols, &rest, &mut outcomes).await?;
        }
        self.add_tallies(&mut tx, votes, &outcomes, &claimed, &policies)
            .await?;
        tx.commit().await.map_err(store_error)?;
        Ok(PersistReport { outcomes })
    }

    /// The votes of a batch the foreign key refused, named: the batch's
    /// transaction is gone, so this is read outside it. Empty only if the
    /// missing election or candidate appeared since; then the original error.
    async fn unknown_references(&self, cols: &Columns, refused: sqlx::Error) -> StoreError {
        let unknown: Result<Vec<Uuid>, sqlx::Error> = sqlx::query_scalar(
            "SELECT t.vote_id
               FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) AS t(vote_id, election_id, candidate_id)
               LEFT JOIN candidates c ON c.election_id = t.election_id AND c.candidate_id = t.candidate_id
              WHERE c.candidate_id IS NULL",
        )
        .bind(&cols.vote_ids)
        .bind(&cols.election_ids)
        .bind(&cols.candidate_ids)
        .fetch_all(&self.pool)
        .await;
        match unknown {
            Ok(ids) if !ids.is_empty() => StoreError::UnknownReference(
                ids.into_iter()
                    .filter_map(|u| VoteId::from_uuid(u).ok())
                    .collect(),
            ),
            Ok(_) => store_error(refused),
            Err(e) => store_error(e),
        }
    }

    /// Sorts the votes that were not inserted into redeliveries and conflicts,
    /// records conflicts and counts redeliveries.
    async fn classify(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        cols: &Columns,
        rest: &[usize],
        outcomes: &mut [PersistOutcome],
    ) -> Result<(), StoreError> {
        let rest_elections: Vec<Uuid> = rest.iter().map(|&i| cols.election_ids[i]).collect();
        let rest_voters: Vec<String> = rest.iter().map(|&i| cols.voter_ids[i].clone()).collect();
        let rest_ids: Vec<Uuid> = rest.iter().map(|&i| cols.vote_ids[i]).collect();
        let rest_slots: Vec<i32> = rest.iter().map(|&i| cols.slots[i]).collect();
        let rest_candidates: Vec<Uuid> = rest.iter().map(|&i| cols.candidate_ids[i]).collect();
        let rest_candidate_slots: Vec<Option<i16>> = rest.iter().map(|&i| cols.candidate_slots[i]).collect();
        // What holds each vote's place: itself (a redelivery), or another vote
        // in its slot, or in its per-candidate slot.
        let rows = sqlx::query(
            "SELECT v.vote_id, v.election_id, v.voter_id, v.slot, v.candidate_id, v.candidate_slot
               FROM votes v
              WHERE v.vote_id = ANY($3)
                 OR (v.election_id, v.voter_id, v.slot) IN (SELECT * FROM UNNEST($1::uuid[], $2::text[], $4::int4[]))
                 OR (v.candidate_slot IS NOT NULL AND (v.election_id, v.voter_id, v.candidate_id, v.candidate_slot)
                     IN (SELECT * FROM UNNEST($1::uuid[], $2::text[], $5::uuid[], $6::int2[])))",
        )
        .bind(&rest_elections)
        .bind(&rest_voters)
        .bind(&rest_ids)
        .bind(&rest_slots)
        .bind(&rest_candidates)
        .bind(&rest_candidate_slots)
        .fetch_all(&mut **tx)
        .await
        .map_err(store_error)?;
        let mut stored_ids: HashSet<Uuid> = HashSet::new();
        let mut by_slot: HashMap<(Uuid, String, i32), Uuid> = HashMap::new();
        let mut by_candidate_slot: HashMap<(Uuid, String, Uuid, i16), Uuid> = HashMap::new();
        for row in rows {
            let id: Uuid = row.get(0);
            stored_ids.insert(id);
            by_slot.insert((row.get(1), row.get(2), row.get(3)), id);
            if let Some(n) = row.get::<Option<i16>, _>(5) {
                by_candidate_slot.insert((row.get(1), row.get(2), row.get(4), n), id);
            }
        }
        let mut conflicts: Vec<usize> = Vec::new();
        let mut existing_ids: Vec<Uuid> = Vec::new();
        let mut redeliveries: BTreeMap<Uuid, i64> = BTreeMap::new();
        for &i in rest {
            let id = cols.vote_ids[i];
            // What the table holds for this vote: itself, or its voter's vote (a row of
            // this batch that lost to the constraint is held by neither: an error).
            let held = if stored_ids.contains(&id) {
                Some(id)
            } else {
                let (e, voter) = (cols.election_ids[i], cols.voter_ids[i].clone());
                by_slot
                    .get(&(e, voter.clone(), cols.slots[i]))
                    .copied()
                    .or_else(|| {
                        cols.candidate_slots[i].and_then(|n| {
                            by_candidate_slot
                                .get(&(e, voter, cols.candidate_ids[i], n))
                                .copied()
                        })
                    })
            };
            let Some(held) = held else {
                return Err(StoreError::Unknown(anyhow::anyhow!(
                    "vote {id} was neither inserted nor found"
                )));
            };
            let vote = VoteId::from_uuid(id).map_err(|e| corrupt("vote id", e))?;
            let held_id = VoteId::from_uuid(held).map_err(|e| corrupt("vote id", e))?;
            match arrival(vote, Some(held_id)) {
                Arrival::Redelivery => {
                    outcomes[i] = PersistOutcome::AlreadyPersisted;
                    *redeliveries.entry(cols.election_ids[i]).or_default() += 1;
                }
                Arrival::SecondVote { existing } => {
                    outcomes[i] = PersistOutcome::Conflict { existing };
                    conflicts.push(i);
                    existing_ids.push(held);
                }
                Arrival::First => {
                    return Err(StoreError::Unknown(anyhow::anyhow!(
                        "vote {id}: a held vote classified as a first vote"
                    )));
                }
            }
        }
        if !conflicts.is_empty() {
            let pick = |v: &Vec<Uuid>| conflicts.iter().map(|&i| v[i]).collect::<Vec<Uuid>>();
            let voters: Vec<String> = conflicts.iter().map(|&i| cols.voter_ids[i].clone()).collect();
            let accepted: Vec<DateTime<Utc>> = conflicts.iter().map(|&i| cols.accepted_at[i]).collect();
            let correlation: Vec<String> = conflicts
                .iter()
                .map(|&i| cols.correlation_ids[i].clone())
                .collect();
            sqlx::query(
                "INSERT INTO vote_conflicts
                     (vote_id, election_id, candidate_id, voter_id, existing_vote_id, accepted_at, correlation_id)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::timestamptz[], $7::text[])
                 ON CONFLICT (vote_id) DO NOTHING",
            )
            .bind(pick(&cols.vote_ids))
            .bind(pick(&cols.election_ids))
            .bind(pick(&cols.candidate_ids))
            .bind(&voters)
            .bind(&existing_ids)
            .bind(&accepted)
            .bind(&correlation)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        }
        if !redeliveries.is_empty() {
            let (elections, copies): (Vec<Uuid>, Vec<i64>) = redeliveries.into_iter().unzip();
            let shard =
                (cols.vote_ids[rest[0]].as_u128() as u64 % u64::from(self.config.tally_shards.max(1))) as i16;
            sqlx::query(
                "INSERT INTO redelivery_shards (election_id, shard, copies)
                 SELECT e, $2, c FROM UNNEST($1::uuid[], $3::int8[]) AS t(e, c)
                 ON CONFLICT (election_id, shard) DO UPDATE SET copies = redelivery_shards.copies + EXCLUDED.copies",
            )
            .bind(&elections)
            .bind(shard)
            .bind(&copies)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        }
        Ok(())
    }

    /// The policies of the batch's elections: remembered ones, the rest
    /// read in the batch's transaction. An election the store does not know
    /// is left out (the votes' foreign key refuses its votes).
    async fn policies_of(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        elections: &[Uuid],
    ) -> Result<HashMap<Uuid, VotePolicy>, StoreError> {
        let mut out: HashMap<Uuid, VotePolicy> = HashMap::new();
        let mut missing: Vec<Uuid> = Vec::new();
        {
            let known = self.policies.lock().expect("policies lock");
            for e in elections {
                if out.contains_key(e) || missing.contains(e) {
                    continue;
                }
                match known.get(e) {
                    Some(p) => {
                        out.insert(*e, *p);
                    }
                    None => missing.push(*e),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let rows = sqlx::query(
            "SELECT election_id, policy, max_votes, max_per_candidate,
                    status NOT IN ('DRAFT', 'SCHEDULED') OR starts_at <= now() AS started
               FROM elections WHERE election_id = ANY($1)",
        )
        .bind(&missing)
        .fetch_all(&mut **tx)
        .await
        .map_err(store_error)?;
        let mut known = self.policies.lock().expect("policies lock");
        for row in rows {
            let id: Uuid = row.get(0);
            let name: String = row.get(1);
            let max_votes: Option<i16> = row.get(2);
            let per_candidate: Option<i16> = row.get(3);
            let policy =
                VotePolicy::from_parts(&name, max_votes.map(i64::from), per_candidate.map(i64::from))
                    .map_err(|e| corrupt("policy", e))?;
            if row.get::<bool, _>(4) {
                known.insert(id, policy);
            }
            out.insert(id, policy);
        }
        Ok(out)
    }

    /// Counts the inserted votes into the tallies on one shard, rows in
    /// (election, candidate) order; under `changeable`, moves them instead
    /// ([`PgVoteStore::move_current_votes`]).
    async fn add_tallies(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        votes: &[VoteRecord],
        outcomes: &[PersistOutcome],
        inserted: &HashSet<Uuid>,
        policies: &HashMap<Uuid, VotePolicy>,
    ) -> Result<(), StoreError> {
        let mut counts: BTreeMap<(Uuid, Uuid), i64> = BTreeMap::new();
        let mut changes: Vec<&Ballot> = Vec::new();
        let mut seen: HashSet<Uuid> = HashSet::new();
        for (record, outcome) in votes.iter().zip(outcomes) {
            let v = &record.vote;
            let id = v.vote_id.as_uuid();
            if matches!(outcome, PersistOutcome::Inserted) && inserted.contains(&id) && seen.insert(id) {
                if policies
                    .get(&v.election_id.as_uuid())
                    .is_some_and(VotePolicy::replaces)
                {
                    changes.push(v);
                } else {
                    *counts
                        .entry((v.election_id.as_uuid(), v.candidate_id.as_uuid()))
                        .or_default() += 1;
                }
            }
        }
        let shard = self.shard_for(votes);
        let mut replaced: BTreeMap<Uuid, i64> = BTreeMap::new();
        if !changes.is_empty() {
            self.move_current_votes(tx, &changes, &mut counts, &mut replaced)
                .await?;
        }
        counts.retain(|_, n| *n != 0);
        if !counts.is_empty() {
            let mut elections = Vec::with_capacity(counts.len());
            let mut candidates = Vec::with_capacity(counts.len());
            let mut deltas = Vec::with_capacity(counts.len());
            for ((e, c), n) in counts {
                elections.push(e);
                candidates.push(c);
                deltas.push(n);
            }
            sqlx::query(
                "INSERT INTO tally_shards (election_id, candidate_id, shard, votes)
                 SELECT e, c, $3, n FROM UNNEST($1::uuid[], $2::uuid[], $4::int8[]) WITH ORDINALITY AS t(e, c, n, ord)
                  ORDER BY ord
                 ON CONFLICT (election_id, candidate_id, shard) DO UPDATE SET votes = tally_shards.votes + EXCLUDED.votes",
            )
            .bind(&elections)
            .bind(&candidates)
            .bind(shard)
            .bind(&deltas)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        }
        replaced.retain(|_, n| *n != 0);
        if !replaced.is_empty() {
            let (elections, deltas): (Vec<Uuid>, Vec<i64>) = replaced.into_iter().unzip();
            sqlx::query(
                "INSERT INTO replaced_shards (election_id, shard, votes)
                 SELECT e, $2, n FROM UNNEST($1::uuid[], $3::int8[]) WITH ORDINALITY AS t(e, n, ord)
                  ORDER BY ord
                 ON CONFLICT (election_id, shard) DO UPDATE SET votes = replaced_shards.votes + EXCLUDED.votes",
            )
            .bind(&elections)
            .bind(shard)
            .bind(&deltas)
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
        }
        Ok(())
    }

    /// `changeable`: makes each voter's highest new vote current where it is
    /// higher than the stored current one, and turns that into tally deltas
    /// (+1 for the new candidate, -1 for the replaced one) and replaced
    /// counts (every new vote that is not current, and every vote it replaced).
    async fn move_current_votes(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        changes: &[&Ballot],
        counts: &mut BTreeMap<(Uuid, Uuid), i64>,
        replaced: &mut BTreeMap<Uuid, i64>,
    ) -> Result<(), StoreError> {
        // The highest new vote of each voter, in key order (the lock order).
        let mut highest: BTreeMap<(Uuid, &str), &Ballot> = BTreeMap::new();
        for v in changes {
            *replaced.entry(v.election_id.as_uuid()).or_default() += 1;
            let key = (v.election_id.as_uuid(), v.voter_id.as_str());
            let newer = highest.get(&key).is_none_or(|h| h.slot.number < v.slot.number);
            if newer {
                highest.insert(key, v);
            }
        }
        let mut elections = Vec::with_capacity(highest.len());
        let mut voters = Vec::with_capacity(highest.len());
        let mut slots = Vec::with_capacity(highest.len());
        let mut vote_ids = Vec::with_capacity(highest.len());
        let mut candidates = Vec::with_capacity(highest.len());
        for ((e, voter), v) in &highest {
            elections.push(*e);
            voters.push((*voter).to_owned());
            slots.push(i32::try_from(v.slot.number).unwrap_or(i32::MAX));
            vote_ids.push(v.vote_id.as_uuid());
            candidates.push(v.candidate_id.as_uuid());
        }
        // In the SET list `c.` is the row before the update: the candidate
        // the change replaces is kept in the row and returned with it.
        let rows = sqlx::query(
            "INSERT INTO current_votes AS c (election_id, voter_id, slot, vote_id, candidate_id)
             SELECT e, voter, slot, vote, candidate
               FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::uuid[], $5::uuid[]) WITH ORDINALITY
                    AS t(e, voter, slot, vote, candidate, ord)
              ORDER BY ord
             ON CONFLICT (election_id, voter_id) DO UPDATE
                SET slot = EXCLUDED.slot, vote_id = EXCLUDED.vote_id, candidate_id = EXCLUDED.candidate_id,
                    replaced_candidate_id = c.candidate_id
              WHERE c.slot < EXCLUDED.slot
             RETURNING c.election_id, c.candidate_id, c.replaced_candidate_id, (xmax = 0) AS fresh",
        )
        .bind(&elections)
        .bind(&voters)
        .bind(&slots)
        .bind(&vote_ids)
        .bind(&candidates)
        .fetch_all(&mut **tx)
        .await
        .map_err(store_error)?;
        for row in rows {
            let e: Uuid = row.get(0);
            // This vote is current: it was counted as replaced above.
            *replaced.entry(e).or_default() -= 1;
            *counts.entry((e, row.get(1))).or_default() += 1;
            if !row.get::<bool, _>(3) {
                // It replaced a current vote, which now counts as replaced.
                let old: Option<Uuid> = row.get(2);
                let old = old
                    .ok_or_else(|| corrupt("current vote", "a replacement without the replaced candidate"))?;
                *counts.entry((e, old)).or_default() -= 1;
                *replaced.entry(e).or_default() += 1;
            }
        }
        Ok(())
    }
}

/// The columns [`stored_vote`] reads, in its order.
macro_rules! stored_vote_columns {
    () => {
        "vote_id, election_id, candidate_id, voter_id, accepted_at, correlation_id, persisted_at, slot, candidate_slot"
    };
}

/// A row of `stored_vote_columns!()` as a stored vote; anything invalid is an error, never a guess.
fn stored_vote(row: &sqlx::postgres::PgRow) -> Result<StoredVote, StoreError> {
    let voter: String = row.get(3);
    let correlation: String = row.get(5);
    Ok(StoredVote {
        record: VoteRecord {
            vote: Ballot {
                vote_id: VoteId::from_uuid(row.get(0)).map_err(|e| corrupt("vote id", e))?,
                election_id: ElectionId::from_uuid(row.get(1)),
                candidate_id: CandidateId::from_uuid(row.get(2)),
                voter_id: VoterId::parse(voter).map_err(|e| corrupt("voter id", e))?,
                accepted_at: row.get(4),
                slot: VoteSlot {
                    number: u32::try_from(row.get::<i32, _>(7)).map_err(|e| corrupt("slot", e))?,
                    per_candidate: row
                        .get::<Option<i16>, _>(8)
                        .map(u16::try_from)
                        .transpose()
                        .map_err(|e| corrupt("candidate slot", e))?,
                },
            },
            correlation_id: CorrelationId::parse(correlation).map_err(|e| corrupt("correlation id", e))?,
        },
        persisted_at: row.get(6),
    })
}

impl VoteStore for PgVoteStore {
    async fn persist_batch(&self, votes: &[VoteRecord]) -> Result<PersistReport, StoreError> {
        if votes.is_empty() {
            return Ok(PersistReport::default());
        }
        self.persist(votes).await
    }

    async fn persisted_tallies(&self, election: ElectionId) -> Result<Vec<CandidateCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT candidate_id, sum(votes)::int8 FROM tally_shards WHERE election_id = $1 GROUP BY candidate_id",
        )
        .bind(election.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|row| {
                let votes: i64 = row.get(1);
                Ok(CandidateCount {
                    candidate_id: CandidateId::from_uuid(row.get(0)),
                    votes: u64::try_from(votes).map_err(|e| corrupt("tally", e))?,
                })
            })
            .collect()
    }

    async fn find_vote(&self, id: VoteId) -> Result<Option<StoredVote>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            stored_vote_columns!(),
            " FROM votes WHERE vote_id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.as_ref().map(stored_vote).transpose()
    }

    async fn votes_of_voter(
        &self,
        election: ElectionId,
        voter: &VoterId,
    ) -> Result<Vec<StoredVote>, StoreError> {
        // The unique (election, voter, slot) index answers this.
        let rows = sqlx::query(concat!(
            "SELECT ",
            stored_vote_columns!(),
            " FROM votes WHERE election_id = $1 AND voter_id = $2 ORDER BY slot"
        ))
        .bind(election.as_uuid())
        .bind(voter.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(stored_vote).collect()
    }

    async fn counts(&self, election: ElectionId) -> Result<StoreCounts, StoreError> {
        // P from the tally and replaced shards: written in the same
        // transaction as the rows, so equal to count(votes) without scanning
        // millions of rows.
        let row = sqlx::query(
            "SELECT (SELECT coalesce(sum(votes), 0)::int8 FROM tally_shards WHERE election_id = $1)
                    + (SELECT coalesce(sum(votes), 0)::int8 FROM replaced_shards WHERE election_id = $1),
                    (SELECT count(*)::int8 FROM vote_conflicts WHERE election_id = $1),
                    (SELECT coalesce(sum(copies), 0)::int8 FROM redelivery_shards WHERE election_id = $1)",
        )
        .bind(election.as_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        let get = |i: usize| -> Result<u64, StoreError> {
            let n: i64 = row.get(i);
            u64::try_from(n).map_err(|e| corrupt("counter", e))
        };
        Ok(StoreCounts {
            persisted: get(0)?,
            duplicates: get(1)?,
            redeliveries: get(2)?,
        })
    }

    async fn hourly_counts(&self, election: ElectionId) -> Result<Vec<HourlyCount>, StoreError> {
        // A scan of the election's rows, grouped: an operator's read, not on the vote path.
        let rows = sqlx::query(
            "SELECT date_trunc('hour', accepted_at, 'UTC') AS hour, count(*)::int8
             FROM votes WHERE election_id = $1 GROUP BY 1 ORDER BY 1",
        )
        .bind(election.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let votes: i64 = row.get(1);
                Ok(HourlyCount {
                    hour: row.get(0),
                    votes: u64::try_from(votes).map_err(|e| corrupt("hourly count", e))?,
                })
            })
            .collect()
    }

    async fn activity(&self, election: ElectionId) -> Result<VoteActivity, StoreError> {
        let row = sqlx::query("SELECT min(accepted_at), max(accepted_at) FROM votes WHERE election_id = $1")
            .bind(election.as_uuid())
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        let peak = sqlx::query(
            "SELECT date_trunc('minute', accepted_at, 'UTC') AS minute, count(*)::int8 AS n
             FROM votes WHERE election_id = $1 GROUP BY 1 ORDER BY n DESC, minute LIMIT 1",
        )
        .bind(election.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        let peak_minute = match peak {
            Some(row) => {
                let n: i64 = row.get(1);
                Some((
                    row.get(0),
                    u64::try_from(n).map_err(|e| corrupt("minute count", e))?,
                ))
            }
            None => None,
        };
        Ok(VoteActivity {
            first_vote_at: row.get(0),
            last_vote_at: row.get(1),
            peak_minute,
        })
    }
}
