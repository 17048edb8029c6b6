//! Shared by the PostgreSQL integration tests: a fresh, migrated database per test.

use livevote_domain::Election;
use livevote_testkit::{scratch_database, test_server_url};
use sqlx::PgPool;

/// Creates and migrates a database of its own on the server at
/// `LIVEVOTE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
pub async fn fresh_database() -> PgPool {
    scratch_database(&test_server_url(), 8)
        .await
        .expect("a fresh test database (scripts/test.sh starts PostgreSQL)")
}

/// Writes an election (with its vote policy) and its candidates straight
/// into the tables, SCHEDULED: the vote store's tests are not about the
/// election admin adapter.
pub async fn insert_election(pool: &PgPool, e: &Election) {
    let p = e.policy();
    sqlx::query(
        "INSERT INTO elections (election_id, title, description, starts_at, ends_at, status, visibility,
                                captcha_required, version, created_at, updated_at, policy, max_votes, max_per_candidate)
         VALUES ($1, $2, $3, $4, $5, 'SCHEDULED', 'LIVE', false, 1, now(), now(), $6, $7, $8)",
    )
    .bind(e.id().as_uuid())
    .bind(e.title().as_str())
    .bind(e.description().as_str())
    .bind(e.window().start())
    .bind(e.window().end())
    .bind(p.as_str())
    .bind(p.max_votes().map(|n| n as i16))
    .bind(p.max_per_candidate().map(|n| n as i16))
    .execute(pool)
    .await
    .unwrap();
    for (i, c) in e.candidates().iter().enumerate() {
        sqlx::query(
            "INSERT INTO candidates (candidate_id, election_id, position, name) VALUES ($1, $2, $3, $4)",
        )
        .bind(c.id().as_uuid())
        .bind(e.id().as_uuid())
        .bind(i as i32)
        .bind(c.name().as_str())
        .execute(pool)
        .await
        .unwrap();
    }
}
