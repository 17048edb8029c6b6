//! Elections on PostgreSQL: the catalog read side and the admin write side.
//!
//! Every admin change is one transaction: the election row is updated only
//! if its `version` is still the one the caller read (optimistic
//! concurrency), candidates are brought in line, and an audit entry is
//! appended with the actor. Rows are parsed back through the domain
//! (`Election::restore`), so a corrupted row is an error, never an election.

use chrono::{DateTime, Utc};
use livevote_domain::election::ElectionParts;
use livevote_domain::{
    ActorId, Candidate, CandidateId, CandidateName, Description, Election, ElectionId, ElectionStatus, Party,
    ResultsVisibility, Timestamp, Title, VotePolicy, VotingWindow,
};
use livevote_ports::{
    AdminAction, AdminError, AuditEntry, CatalogError, ElectionAdmin, ElectionCatalog, Page, PageRequest,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::is_unavailable;

/// Elections over a connection pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgElections {
    pool: PgPool,
}

/// The columns every election query selects, in the order [`restore`] reads them.
macro_rules! election_columns {
    () => {
        "election_id, title, description, starts_at, ends_at, status, visibility, captcha_required, version, created_at, \
         policy, max_votes, max_per_candidate"
    };
}

/// Elections whose effective status at `$1` is `$2` (any when `$2` is NULL);
/// the SQL twin of `Election::effective_status`.
macro_rules! effective_status_filter {
    () => {
        "($2::text IS NULL OR (CASE WHEN status IN ('SCHEDULED', 'ACTIVE') AND $1 >= ends_at THEN 'CLOSED' \
                                    WHEN status = 'SCHEDULED' AND $1 >= starts_at THEN 'ACTIVE' \
                                    ELSE status END) = $2)"
    };
}

fn admin_error(e: sqlx::Error) -> AdminError {
    if is_unavailable(&e) {
        AdminError::Unavailable(anyhow::Error::new(e))
    } else {
        AdminError::Unknown(anyhow::Error::new(e))
    }
}

fn catalog_error(e: sqlx::Error) -> CatalogError {
    if is_unavailable(&e) {
        CatalogError::Unavailable(anyhow::Error::new(e))
    } else {
        CatalogError::Unknown(anyhow::Error::new(e))
    }
}

/// A row that does not make a valid election.
#[derive(Debug)]
struct Corrupt(String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored election is invalid: {}", self.0)
    }
}
impl std::error::Error for Corrupt {}

fn bad(what: &str, e: impl std::fmt::Display) -> Corrupt {
    Corrupt(format!("{what}: {e}"))
}

/// Builds an election from a row of `election_columns!()` and its candidates.
fn restore(row: &PgRow, candidates: Vec<Candidate>) -> Result<Election, Corrupt> {
    let title: String = row.get(1);
    let description: String = row.get(2);
    let status: String = row.get(5);
    let visibility: String = row.get(6);
    let version: i64 = row.get(8);
    let parts = ElectionParts {
        id: ElectionId::from_uuid(row.get(0)),
        title: Title::parse(&title).map_err(|e| bad("title", e))?,
        description: Description::parse(&description).map_err(|e| bad("description", e))?,
        window: VotingWindow::new(row.get(3), row.get(4)).map_err(|e| bad("window", e))?,
        candidates,
        status: ElectionStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        visibility: ResultsVisibility::parse(&visibility).ok_or_else(|| bad("visibility", &visibility))?,
        captcha_required: row.get(7),
        policy: {
            let name: String = row.get(10);
            let max_votes: Option<i16> = row.get(11);
            let per_candidate: Option<i16> = row.get(12);
            VotePolicy::from_parts(&name, max_votes.map(i64::from), per_candidate.map(i64::from))
                .map_err(|e| bad("policy", e))?
        },
        version: u64::try_from(version).map_err(|e| bad("version", e))?,
        created_at: row.get(9),
    };
    Election::restore(parts).map_err(|e| bad("election", e))
}

async fn candidates_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Candidate)>, anyhow::Error> {
    let rows = sqlx::query(
        "SELECT election_id, candidate_id, name, party FROM candidates
          WHERE election_id = ANY($1) ORDER BY election_id, position",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(2);
            let party: Option<String> = r.get(3);
            let party = party
                .map(|p| Party::parse(&p))
                .transpose()
                .map_err(|e| bad("party", e))?;
            let candidate = Candidate::new(
                CandidateId::from_uuid(r.get(1)),
                CandidateName::parse(&name).map_err(|e| bad("candidate name", e))?,
                party,
            );
            Ok((r.get(0), candidate))
        })
        .collect()
}

/// Loads elections (with candidates) for the given rows, in row order.
async fn assemble(conn: &mut PgConnection, rows: Vec<PgRow>) -> Result<Vec<Election>, anyhow::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let mut candidates = candidates_of(conn, &ids).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = row.get(0);
        let mine: Vec<Candidate> = candidates
            .iter()
            .filter(|(e, _)| *e == id)
            .map(|(_, c)| c.clone())
            .collect();
        candidates.retain(|(e, _)| *e != id);
        out.push(restore(row, mine)?);
    }
    Ok(out)
}

async fn load(conn: &mut PgConnection, id: ElectionId) -> Result<Option<Election>, anyhow::Error> {
    let row = sqlx::query(concat!(
        "SELECT ",
        election_columns!(),
        " FROM elections WHERE election_id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Ok(assemble(conn, vec![row]).await?.pop()),
        None => Ok(None),
    }
}

/// Writes the election's candidates: removes those no longer listed, upserts the rest in order.
async fn write_candidates(conn: &mut PgConnection, e: &Election) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = e.candidates().iter().map(|c| c.id().as_uuid()).collect();
    let names: Vec<String> = e
        .candidates()
        .iter()
        .map(|c| c.name().as_str().to_owned())
        .collect();
    let parties: Vec<Option<String>> = e
        .candidates()
        .iter()
        .map(|c| c.party().map(|p| p.as_str().to_owned()))
        .collect();
    let positions: Vec<i32> = (0..ids.len() as i32).collect();
    sqlx::query("DELETE FROM candidates WHERE election_id = $1 AND candidate_id <> ALL($2)")
        .bind(e.id().as_uuid())
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO candidates (candidate_id, election_id, position, name, party)
         SELECT c, $1, p, n, pa FROM UNNEST($2::uuid[], $3::int4[], $4::text[], $5::text[]) AS t(c, p, n, pa)
         ON CONFLICT (candidate_id) DO UPDATE SET position = EXCLUDED.position, name = EXCLUDED.name, party = EXCLUDED.party",
    )
    .bind(e.id().as_uuid())
    .bind(&ids)
    .bind(&positions)
    .bind(&names)
    .bind(&parties)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn append_audit(
    conn: &mut PgConnection,
    id: ElectionId,
    actor: &ActorId,
    action: AdminAction,
    at: Timestamp,
    version: u64,
    details: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (election_id, actor, action, at, version, details) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.as_uuid())
    .bind(actor.as_str())
    .bind(action.as_str())
    .bind(at)
    .bind(version as i64)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}

/// Binds an election's settings as `$1..=$10`: title, description, start,
/// end, status, visibility, captcha flag, policy, max votes, max per
/// candidate (the order both writes use).
fn bind_settings<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    e: &'q Election,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(e.title().as_str())
        .bind(e.description().as_str())
        .bind(e.window().start())
        .bind(e.window().end())
        .bind(e.stored_status().as_str())
        .bind(e.visibility().as_str())
        .bind(e.captcha_required())
        .bind(e.policy().as_str())
        .bind(e.policy().max_votes().map(|n| n as i16))
        .bind(e.policy().max_per_candidate().map(|n| n as i16))
}

impl PgElections {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl ElectionCatalog for PgElections {
    async fn get(&self, id: ElectionId) -> Result<Option<Election>, CatalogError> {
        let mut conn = self.pool.acquire().await.map_err(catalog_error)?;
        load(&mut conn, id)
            .await
            .map_err(|e| match e.downcast::<sqlx::Error>() {
                Ok(sql) => catalog_error(sql),
                Err(other) => CatalogError::Unknown(other),
            })
    }
}

fn unknown(e: anyhow::Error) -> AdminError {
    match e.downcast::<sqlx::Error>() {
        Ok(sql) => admin_error(sql),
        Err(other) => AdminError::Unknown(other),
    }
}

impl ElectionAdmin for PgElections {
    async fn create(&self, election: &Election, actor: &ActorId, at: Timestamp) -> Result<(), AdminError> {
        let mut tx = self.pool.begin().await.map_err(admin_error)?;
        let insert = sqlx::query(
            "INSERT INTO elections (title, description, starts_at, ends_at, status, visibility, captcha_required,
                                    policy, max_votes, max_per_candidate, election_id, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
             ON CONFLICT (election_id) DO NOTHING",
        );
        let inserted = bind_settings(insert, election)
            .bind(election.id().as_uuid())
            .bind(election.version() as i64)
            .bind(election.created_at())
            .execute(&mut *tx)
            .await
            .map_err(admin_error)?;
        if inserted.rows_affected() == 0 {
            return Err(AdminError::AlreadyExists(election.id()));
        }
        write_candidates(&mut tx, election).await.map_err(admin_error)?;
        let details = format!(
            "created {:?} with {} candidates",
            election.title().as_str(),
            election.candidates().len()
        );
        append_audit(
            &mut tx,
            election.id(),
            actor,
            AdminAction::Created,
            at,
            election.version(),
            &details,
        )
        .await
        .map_err(admin_error)?;
        tx.commit().await.map_err(admin_error)
    }

    async fn load(&self, id: ElectionId) -> Result<Election, AdminError> {
        let mut conn = self.pool.acquire().await.map_err(admin_error)?;
        load(&mut conn, id)
            .await
            .map_err(unknown)?
            .ok_or(AdminError::NotFound(id))
    }

    async fn update(
        &self,
        election: &Election,
        action: AdminAction,
        actor: &ActorId,
        details: &str,
        at: Timestamp,
    ) -> Result<Election, AdminError> {
        let id = election.id();
        let mut tx = self.pool.begin().await.map_err(admin_error)?;
        let update = sqlx::query(
            "UPDATE elections SET title = $1, description = $2, starts_at = $3, ends_at = $4, status = $5,
                    visibility = $6, captcha_required = $7, policy = $8, max_votes = $9, max_per_candidate = $10,
                    version = version + 1, updated_at = $11
              WHERE election_id = $12 AND version = $13
              RETURNING version",
        );
        let updated: Option<i64> = bind_settings(update, election)
            .bind(at)
            .bind(id.as_uuid())
            .bind(election.version() as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(admin_error)?
            .map(|row| row.get(0));
        let Some(new_version) = updated else {
            let actual: Option<i64> =
                sqlx::query_scalar("SELECT version FROM elections WHERE election_id = $1")
                    .bind(id.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(admin_error)?;
            return Err(match actual {
                Some(actual) => AdminError::VersionConflict {
                    id,
                    expected: election.version(),
                    actual: actual as u64,
                },
                None => AdminError::NotFound(id),
            });
        };
        write_candidates(&mut tx, election).await.map_err(admin_error)?;
        append_audit(&mut tx, id, actor, action, at, new_version as u64, details)
            .await
            .map_err(admin_error)?;
        let saved = load(&mut tx, id)
            .await
            .map_err(unknown)?
            .ok_or(AdminError::NotFound(id))?;
        tx.commit().await.map_err(admin_error)?;
        Ok(saved)
    }

    async fn list(
        &self,
        status: Option<ElectionStatus>,
        now: Timestamp,
        page: PageRequest,
    ) -> Result<Page<Election>, AdminError> {
        let mut conn = self.pool.acquire().await.map_err(admin_error)?;
        let total: i64 = sqlx::query_scalar(concat!(
            "SELECT count(*) FROM elections WHERE ",
            effective_status_filter!()
        ))
        .bind(now)
        .bind(status.map(|s| s.as_str()))
        .fetch_one(&mut *conn)
        .await
        .map_err(admin_error)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            election_columns!(),
            " FROM elections WHERE ",
            effective_status_filter!(),
            " ORDER BY created_at DESC, election_id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(now)
        .bind(status.map(|s| s.as_str()))
        .bind(i64::from(page.size))
        .bind(page.offset() as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(admin_error)?;
        let content = assemble(&mut conn, rows).await.map_err(unknown)?;
        Ok(Page {
            content,
            page: page.page,
            size: page.size,
            total_elements: total as u64,
        })
    }

    async fn audit_log(&self, id: ElectionId, page: PageRequest) -> Result<Page<AuditEntry>, AdminError> {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE election_id = $1")
            .bind(id.as_uuid())
            .fetch_one(&self.pool)
            .await
            .map_err(admin_error)?;
        let rows = sqlx::query(
            "SELECT seq, actor, action, at, version, details FROM audit_log
              WHERE election_id = $1 ORDER BY seq LIMIT $2 OFFSET $3",
        )
        .bind(id.as_uuid())
        .bind(i64::from(page.size))
        .bind(page.offset() as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(admin_error)?;
        let content = rows
            .iter()
            .map(|r| {
                let actor: String = r.get(1);
                let action: String = r.get(2);
                let at: DateTime<Utc> = r.get(3);
                let seq: i64 = r.get(0);
                let version: i64 = r.get(4);
                Ok(AuditEntry {
                    seq: seq as u64,
                    election_id: id,
                    actor: ActorId::parse(actor).map_err(|e| AdminError::Unknown(bad("actor", e).into()))?,
                    action: AdminAction::parse(&action)
                        .ok_or_else(|| AdminError::Unknown(bad("action", &action).into()))?,
                    at,
                    version: version as u64,
                    details: r.get(5),
                })
            })
            .collect::<Result<Vec<_>, AdminError>>()?;
        Ok(Page {
            content,
            page: page.page,
            size: page.size,
            total_elements: total as u64,
        })
    }
}
