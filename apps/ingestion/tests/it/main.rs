//! livevote-ingestion: the cast-vote use case on in-memory adapters, the HTTP
//! handlers, the OpenAPI contract, and the binary as a black box against the
//! real stores. One test binary for the crate.

mod blackbox;
mod cast_vote;
mod common;
mod contract;
mod handlers;
