//! The three services end to end: cast-vote -> queue -> persist-batch ->
//! results and reconciliation, on the in-memory adapters (`pipeline`) and on
//! PostgreSQL and Redis (`pipeline_real`).

mod common;
mod pipeline;
mod pipeline_real;
