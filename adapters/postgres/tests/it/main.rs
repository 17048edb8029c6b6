//! The PostgreSQL adapter against a real server: each test on a scratch
//! database of its own. One test binary for the crate.

mod common;
mod elections;
mod policies;
mod vote_store;
