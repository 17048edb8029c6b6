//! livevote-processor: the persist-batch use case on in-memory adapters and
//! the binary as a black box against PostgreSQL and the queue. One test binary
//! for the crate.

mod blackbox;
mod persist_batch;
