//! The reconciliation, on a timer, for the metrics: dashboards and alerts
//! see the same figures as the audit endpoint (votes still queued, votes
//! missing, dead letters) without anyone polling it. (The age of the oldest
//! queued message is a CloudWatch metric of SQS, alarmed on there.)

use std::sync::Arc;
use std::time::Duration;

use livevote_domain::{ElectionStatus, Verdict};
use livevote_ports::{MetricEvent, Metrics, PageRequest};

use crate::http::{Admin, Reads};

/// Elections looked at per status and round: the newest ones.
const PER_STATUS: u32 = 100;

/// Reconciles the newest scheduled, active and closed elections every `every`, forever.
pub async fn reconcile_periodically(
    reads: Arc<dyn Reads>,
    admin: Arc<dyn Admin>,
    metrics: Arc<dyn Metrics>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        round(reads.as_ref(), admin.as_ref(), metrics.as_ref()).await;
    }
}

/// One pass; returns how many elections it reconciled.
pub async fn round(reads: &dyn Reads, admin: &dyn Admin, metrics: &dyn Metrics) -> usize {
    let mut done = 0;
    let mut queue_seen = false;
    for status in [
        ElectionStatus::Scheduled,
        ElectionStatus::Active,
        ElectionStatus::Closed,
    ] {
        let page = PageRequest {
            page: 0,
            size: PER_STATUS,
        };
        let elections = match admin.list(Some(status), page).await {
            Ok(p) => p.content,
            Err(error) => {
                tracing::warn!(%error, "periodic reconciliation: cannot list elections");
                return done;
            }
        };
        for election in elections {
            let r = match reads.reconcile(election.id()).await {
                Ok(r) => r,
                Err(error) => {
                    tracing::warn!(%error, election = %election.id(), "periodic reconciliation failed");
                    continue;
                }
            };
            let (lost, surplus) = match r.verdict {
                Verdict::Lost(n) => (n, 0),
                Verdict::Surplus(n) => (0, n),
                Verdict::Balanced | Verdict::Draining { .. } => (0, 0),
            };
            metrics.record(MetricEvent::Reconciled {
                election: r.election_id,
                in_flight: r.counts.in_flight,
                lost,
                surplus,
            });
            if lost > 0 {
                tracing::error!(election = %r.election_id, lost, "reconciliation: accepted votes are missing");
            }
            if !queue_seen {
                metrics.record(MetricEvent::QueueState {
                    dead_letter_messages: r.dead_letter_messages,
                });
                queue_seen = true;
            }
            done += 1;
        }
    }
    done
}
