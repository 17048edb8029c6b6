//! Schema migrations, embedded at build time and applied in order.
//!
//! Each migration runs in its own transaction together with the row that
//! records it, under a transaction-scoped advisory lock, so two operators
//! running `migrate` at once apply each migration exactly once. Applied
//! migrations are checked against their text: editing one that already ran
//! is an error, not a silent skip.

use sqlx::PgPool;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("../migrations/0001_init.sql"),
}];

/// Arbitrary key of the advisory lock that serialises migration runs.
const LOCK_KEY: i64 = 0x6c69_7665_766f_7465; // "livevote"

/// A stable 64-bit checksum (FNV-1a) of a migration's text.
fn checksum(sql: &str) -> i64 {
    let hash = sql.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    hash as i64
}

/// Applies the migrations that have not run yet and returns their versions.
///
/// # Errors
/// A failed statement (its migration is rolled back whole), an unreachable
/// database, or an applied migration whose text has changed since.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version bigint PRIMARY KEY, name text NOT NULL, checksum bigint NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(pool)
    .await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT checksum FROM schema_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?;
        match done {
            Some(sum) if sum == checksum(m.sql) => continue,
            Some(_) => anyhow::bail!(
                "migration {} ({}) was changed after it was applied; add a new migration instead",
                m.version,
                m.name
            ),
            None => {}
        }
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(checksum(m.sql))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        applied.push(m.version);
    }
    Ok(applied)
}
