//! The Redis adapter against a real server (and the cuttable relay for
//! outages). One test binary for the crate.

mod common;
mod dedup;
mod elections;
mod policies;
