//! Telemetry as named events. Services record one event per batch on hot
//! paths; adapters turn events into Prometheus series
//! (`livevote_<what>_<unit>[_total]`) and CloudWatch metrics.

use std::time::Duration;

use livevote_domain::ElectionId;

/// Why a vote request was refused, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    ElectionNotFound,
    NotActive,
    NotStarted,
    Closed,
    UnknownCandidate,
    CaptchaFailed,
    Duplicate,
    Overloaded,
    Unavailable,
    /// Over a per-viewer or per-address rate limit.
    RateLimited,
    /// No usable bearer token.
    Unauthorized,
    /// A malformed request (body, headers, media type, size).
    InvalidRequest,
    /// An idempotency key sent again with another vote than its first request's.
    IdempotencyKeyReused,
    /// `multi`: the viewer's votes (or votes for the candidate) are used up.
    VoteLimitReached,
}

impl RejectReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::ElectionNotFound => "election_not_found",
            RejectReason::NotActive => "not_active",
            RejectReason::NotStarted => "not_started",
            RejectReason::Closed => "closed",
            RejectReason::UnknownCandidate => "unknown_candidate",
            RejectReason::CaptchaFailed => "captcha_failed",
            RejectReason::Duplicate => "duplicate",
            RejectReason::Overloaded => "overloaded",
            RejectReason::Unavailable => "unavailable",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::InvalidRequest => "invalid_request",
            RejectReason::IdempotencyKeyReused => "idempotency_key_reused",
            RejectReason::VoteLimitReached => "vote_limit_reached",
        }
    }
}

/// Something worth counting.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricEvent {
    /// Votes answered 202 (the `A` of reconciliation).
    VotesAccepted { election: ElectionId, count: u64 },
    /// A vote request refused.
    VoteRejected { reason: RejectReason },
    /// A retry with the same idempotency key answered with the original vote.
    VoteReplayed,
    /// The queue acknowledged a vote but its claim was gone at confirm time:
    /// the vote will be persisted and shows as surplus.
    ConfirmMissed,
    /// A claim given back after a failed publish.
    ClaimReleased,
    /// One publish batch sent to the queue.
    PublishBatch {
        votes: usize,
        failed: usize,
        latency: Duration,
    },
    /// Votes persisted for an election (the `P` of reconciliation).
    VotesPersisted { election: ElectionId, count: u64 },
    /// Votes dropped because the voter already had one (`D`).
    DuplicatesDropped { election: ElectionId, count: u64 },
    /// Redelivered copies of stored votes, ignored.
    Redeliveries { count: u64 },
    /// Messages found poisonous and left for the dead-letter queue.
    PoisonMessages { count: u64 },
    /// One HTTP request answered. `route` comes from a fixed set, so the
    /// label stays bounded.
    HttpRequest {
        route: &'static str,
        status: u16,
        latency: Duration,
    },
    /// The results service read an election's counts from its stores (one
    /// read serves every poller and stream client of that election).
    ResultsRead { election: ElectionId },
    /// Server-Sent Events streams open now.
    ResultStreams { open: u64 },
    /// The results service's periodic reconciliation of one election (the
    /// same figures as its audit endpoint): votes still queued, and votes
    /// missing (`A > P + D + L`) or in surplus once nothing is queued.
    Reconciled {
        election: ElectionId,
        in_flight: u64,
        lost: u64,
        surplus: u64,
    },
    /// The vote queue's dead-letter queue as the last reconciliation saw it.
    QueueState { dead_letter_messages: u64 },
    /// How long the oldest message of a persisted batch waited, from its
    /// send to the commit (queue lag).
    QueueLag { lag: Duration },
    /// One persisted batch.
    PersistBatch {
        votes: usize,
        messages: usize,
        latency: Duration,
    },
}

/// Records metric events. MUST NOT block or fail: metrics never slow the vote path.
pub trait Metrics: Send + Sync + 'static {
    fn record(&self, event: MetricEvent);
}
