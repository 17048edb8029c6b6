//! The metrics adapter: CloudWatch publishing on a scripted HTTP client, and
//! the infrastructure metrics the dashboards and alerts name. One test binary
//! for the crate.

mod cloudwatch;
mod infra_metrics;
