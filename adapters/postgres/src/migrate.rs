//! Schema migrations: the files of `migrations/`, embedded at build time by
//! `sqlx::migrate!` and applied by sqlx's migrator, which holds an advisory
//! lock for the run, applies each pending migration in its own transaction,
//! records it in `_sqlx_migrations` with a checksum of its text, and refuses
//! to go on when an applied migration's text has changed since.
//!
//! Databases migrated before this project used sqlx's migrator record their
//! migrations in `schema_migrations`; the first run marks those versions as
//! applied in `_sqlx_migrations` without running them again.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// Every migration of `migrations/`, oldest first.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Applies the migrations that have not run yet and returns their versions.
///
/// # Errors
/// A failed statement (its migration is rolled back whole), an unreachable
/// database, or an applied migration whose text has changed since.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    adopt_legacy_record(pool).await?;
    let before = applied_versions(pool).await?;
    MIGRATOR.run(pool).await?;
    let applied: Vec<i64> = MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !before.contains(v))
        .collect();
    for version in &applied {
        tracing::info!(version, "migration applied");
    }
    Ok(applied)
}

/// Versions recorded in `_sqlx_migrations` (none when it does not exist yet).
async fn applied_versions(pool: &PgPool) -> sqlx::Result<Vec<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
}

/// A database with the old `schema_migrations` record and no sqlx record:
/// its recorded versions are marked applied (not run) in `_sqlx_migrations`.
async fn adopt_legacy_record(pool: &PgPool) -> anyhow::Result<()> {
    let (legacy, sqlx_record): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('schema_migrations') IS NOT NULL, to_regclass('_sqlx_migrations') IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    if !legacy || sqlx_record {
        return Ok(());
    }
    let newest: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
        .fetch_one(pool)
        .await?;
    let Some(newest) = newest else { return Ok(()) };
    if !MIGRATOR.version_exists(newest) {
        anyhow::bail!("schema_migrations records version {newest}, which this build does not know");
    }
    MIGRATOR.skip(pool, Some(newest)).await?;
    tracing::info!(
        newest,
        "migrations recorded by schema_migrations adopted into _sqlx_migrations"
    );
    Ok(())
}
