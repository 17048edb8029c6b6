//! Results: what goes on air, election admin, and the auditors' reconciliation.
//!
//! [`ResultsService`] reads live accepted tallies (fast, from the dedup
//! store) while voting runs, and switches to the persisted tallies of the
//! vote store once the election is closed and reconciliation allows a final
//! result. [`ResultsService::reconcile`] puts the five counters of ARCHITECTURE.md
//! invariant 3 side by side, per election and per candidate.
//! [`AdminService`] changes elections (audited, announced). [`live`] shares
//! one read of the stores among every poller and stream client, and [`http`]
//! is the `livevote-results` API and pages.

pub mod admin;
pub mod app;
pub mod config;
pub mod http;
pub mod live;
pub mod service;
pub mod watch;
pub mod wiring;

pub use admin::{AdminService, AdminServiceError};
pub use service::{
    CandidateDrift, ElectionResults, PERCENT_DECIMALS, Rebuild, Receipt, Reconciliation, ResultsError,
    ResultsService, Standing, Statistics, TallySource,
};
