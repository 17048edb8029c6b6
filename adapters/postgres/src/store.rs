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

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use livevote_domain::{
    Arrival, Ballot, CandidateCount, CandidateId, CorrelationId, ElectionId, VoteId, VoteRecord, VoterId,
    arrival,
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
        };
        for r in votes {
            let v = &r.vote;
            c.vote_ids.push(v.vote_id.as_uuid());
            c.election_ids.push(v.election_id.as_uuid());
            c.candidate_ids.push(v.candidate_id.as_uuid());
            c.voter_ids.push(v.voter_id.as_str().to_owned());
            c.accepted_at.push(v.accepted_at);
            c.correlation_ids.push(r.correlation_id.as_str().to_owned());
        }
        c
    }
}

impl PgVoteStore {
    pub fn new(pool: PgPool, config: StoreConfig) -> Self {
        Self {
            pool,
            config,
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
        let inserted: Vec<Uuid> = match sqlx::query_scalar(
            "INSERT INTO votes (vote_id, election_id, candidate_id, voter_id, accepted_at, correlation_id)
             SELECT vote_id, election_id, candidate_id, voter_id, accepted_at, correlation_id
               FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[])
                    WITH ORDINALITY AS t(vote_id, election_id, candidate_id, voter_id, accepted_at, correlation_id, ord)
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
        self.add_tallies(&mut tx, votes, &outcomes, &claimed).await?;
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
        let rows = sqlx::query(
            "SELECT v.vote_id, v.election_id, v.voter_id
               FROM votes v
              WHERE v.vote_id = ANY($3)
                 OR (v.election_id, v.voter_id) IN (SELECT * FROM UNNEST($1::uuid[], $2::text[]))",
        )
        .bind(&rest_elections)
        .bind(&rest_voters)
        .bind(&rest_ids)
        .fetch_all(&mut **tx)
        .await
        .map_err(store_error)?;
        let mut stored_ids: HashSet<Uuid> = HashSet::new();
        let mut by_voter: HashMap<(Uuid, String), Uuid> = HashMap::new();
        for row in rows {
            let id: Uuid = row.get(0);
            stored_ids.insert(id);
            by_voter.insert((row.get(1), row.get(2)), id);
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
                by_voter
                    .get(&(cols.election_ids[i], cols.voter_ids[i].clone()))
                    .copied()
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

    /// Adds the inserted votes to one tally shard, rows in (election, candidate) order.
    async fn add_tallies(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        votes: &[VoteRecord],
        outcomes: &[PersistOutcome],
        inserted: &HashSet<Uuid>,
    ) -> Result<(), StoreError> {
        let mut counts: BTreeMap<(Uuid, Uuid), i64> = BTreeMap::new();
        let mut seen: HashSet<Uuid> = HashSet::new();
        for (record, outcome) in votes.iter().zip(outcomes) {
            let v = &record.vote;
            let id = v.vote_id.as_uuid();
            if matches!(outcome, PersistOutcome::Inserted) && inserted.contains(&id) && seen.insert(id) {
                *counts
                    .entry((v.election_id.as_uuid(), v.candidate_id.as_uuid()))
                    .or_default() += 1;
            }
        }
        if counts.is_empty() {
            return Ok(());
        }
        let shard = self.shard_for(votes);
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
        Ok(())
    }
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
        let row = sqlx::query(
            "SELECT election_id, candidate_id, voter_id, accepted_at, correlation_id, persisted_at
               FROM votes WHERE vote_id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let voter: String = row.get(2);
        let correlation: String = row.get(4);
        Ok(Some(StoredVote {
            record: VoteRecord {
                vote: Ballot {
                    vote_id: id,
                    election_id: ElectionId::from_uuid(row.get(0)),
                    candidate_id: CandidateId::from_uuid(row.get(1)),
                    voter_id: VoterId::parse(voter).map_err(|e| corrupt("voter id", e))?,
                    accepted_at: row.get(3),
                },
                correlation_id: CorrelationId::parse(correlation)
                    .map_err(|e| corrupt("correlation id", e))?,
            },
            persisted_at: row.get(5),
        }))
    }

    async fn counts(&self, election: ElectionId) -> Result<StoreCounts, StoreError> {
        // P from the tally shards: written in the same transaction as the rows,
        // so equal to count(votes) without scanning millions of rows.
        let row = sqlx::query(
            "SELECT (SELECT coalesce(sum(votes), 0)::int8 FROM tally_shards WHERE election_id = $1),
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
