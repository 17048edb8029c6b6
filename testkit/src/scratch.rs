//! Throw-away databases for integration tests and benchmarks.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use livevote_postgres::migrate;

/// Creates a database named `livevote_test_<uuid>` on the server at
/// `server_url`, applies the migrations and returns a pool of
/// `max_connections` on it. `scripts/test.sh` drops these databases at the
/// start of the next run.
///
/// # Errors
/// When the server cannot be reached, refuses CREATE DATABASE, or a migration fails.
pub async fn scratch_database(server_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    use anyhow::Context;
    let options: PgConnectOptions = server_url
        .parse()
        .with_context(|| format!("{server_url:?} is not a postgres URL"))?;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .with_context(|| format!("connecting to {server_url}"))?;
    let name = format!("livevote_test_{}", uuid::Uuid::now_v7().simple());
    // The name is built from a UUID here, never from input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .with_context(|| format!("creating database {name}"))?;
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options.database(&name))
        .await
        .with_context(|| format!("connecting to database {name}"))?;
    migrate(&pool)
        .await
        .with_context(|| format!("migrating database {name}"))?;
    Ok(pool)
}

/// `LIVEVOTE_TEST_DATABASE_URL`, or the local server with trust auth.
pub fn test_server_url() -> String {
    std::env::var("LIVEVOTE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
