//! Shared by the PostgreSQL integration tests: a fresh, migrated database per test.

use livevote_postgres::migrate;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Creates and migrates a database of its own on the server at
/// `LIVEVOTE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
pub async fn fresh_database() -> PgPool {
    let url = std::env::var("LIVEVOTE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin_opts: PgConnectOptions = url.parse().expect("LIVEVOTE_TEST_DATABASE_URL is a postgres URL");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin_opts.clone())
        .await
        .expect("PostgreSQL reachable (scripts/test.sh starts it)");
    let name = format!("livevote_test_{}", uuid::Uuid::now_v7().simple());
    // The name is built from a UUID here, not from input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(admin_opts.database(&name))
        .await
        .expect("connect to test database");
    migrate(&pool).await.expect("migrations apply");
    pool
}
