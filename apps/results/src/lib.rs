//! Results: what goes on air, and the auditors' reconciliation.
//!
//! [`ResultsService`] reads live accepted tallies (fast, from the dedup
//! store) while voting runs, and switches to the persisted tallies of the
//! vote store once the election is closed and reconciliation allows a final
//! result. [`ResultsService::reconcile`] puts the five counters of DESIGN.md
//! invariant 3 side by side, per election and per candidate.

pub mod service;

pub use service::{
    CandidateDrift, ElectionResults, Rebuild, Reconciliation, ResultsError, ResultsService, TallySource,
};
