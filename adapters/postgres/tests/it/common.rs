//! Shared by the PostgreSQL integration tests: a fresh, migrated database per test.

use livevote_testkit::{scratch_database, test_server_url};
use sqlx::PgPool;

/// Creates and migrates a database of its own on the server at
/// `LIVEVOTE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
pub async fn fresh_database() -> PgPool {
    scratch_database(&test_server_url(), 8)
        .await
        .expect("a fresh test database (scripts/test.sh starts PostgreSQL)")
}
