//! The SQS adapter: the wire contract, partial batch failures on a scripted
//! HTTP client, and the queue against a real SQS-compatible endpoint. One test
//! binary for the crate.

mod contract;
mod partial;
mod queue;
