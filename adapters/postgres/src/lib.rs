//! PostgreSQL adapter.
//!
//! - [`migrate`] applies the schema in `migrations/` (embedded in the binary)
//!   as an explicit step, under an advisory lock, never implicitly at start-up.
//! - [`PgVoteStore`] implements the vote store: each batch is one transaction
//!   with `synchronous_commit = on`; votes go in with one multi-row
//!   `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO NOTHING RETURNING`;
//!   persisted tallies grow by exactly the inserted rows, on counter shards;
//!   conflicting second votes are recorded for auditors.
//!
//! - [`PgElections`] implements the election catalog and admin: optimistic
//!   concurrency on a version column, an audit entry with every change.
//!
//! Only the query functions of sqlx are used (no compile-time macros), so a
//! build needs no database; the integration tests catch SQL errors against a
//! real server.

mod elections;
mod migrate;
mod store;

pub use elections::PgElections;
pub use migrate::{MIGRATOR, migrate};
pub use sqlx::PgPool;
pub use store::{PgVoteStore, StoreConfig};

/// A pool for `url` that connects on first use (a service starts while the
/// database is still coming up, and readiness reports it), with a short
/// acquire timeout so a database outage is an error, not a hang.
///
/// # Errors
/// When `url` is not a valid PostgreSQL URL.
pub fn connect_lazy(url: &str, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    use anyhow::Context;
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .with_context(|| "not a PostgreSQL URL (postgres://user@host:port/database)".to_string())?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// Checks that the database answers (readiness probes).
///
/// # Errors
/// Why it did not, as text.
pub async fn ping(pool: &sqlx::PgPool) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether an sqlx error means the database could not be reached (as
/// opposed to a statement it refused).
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}
