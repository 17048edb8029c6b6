//! The HTTP edge of ingestion: routes, request ids, timeouts, errors,
//! health, metrics and the OpenAPI document generated from the mounted routes.
//!
//! Handlers see the cast-vote use case and the token verifier through two
//! small object-safe traits ([`Voting`], [`Tokens`]): the adapters behind
//! them are chosen at start-up (real servers, or the in-memory ones of the
//! embedded mode and the handler tests), and utoipa's route collection needs
//! handlers that are not generic. One boxed future per request is noise next
//! to the network hops of a vote.

pub mod client_ip;
pub mod error;
mod health;
pub mod votes;

pub use livevote_http::context;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::Method;
use livevote_domain::{ElectionId, VoterId};
use livevote_http::docs::BearerAuth;
use livevote_http::routes::Plumbing;
use livevote_ports::{Clock, ElectionCatalog, HumanCheck, Metrics, VoteDedup};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clockguard::ClockGuard;
use crate::ratelimit::RateLimits;
use crate::service::{CastReceipt, CastVote, CastVoteError, CastVoteService, MyVote};
use error::ApiError;

pub use livevote_http::BoxFuture;
pub use livevote_http::bearer::Tokens;
pub use livevote_http::health::{Check, ReadinessCheck};

/// The cast-vote use case as the handlers see it.
pub trait Voting: Send + Sync + 'static {
    fn cast(&self, cmd: CastVote) -> BoxFuture<'_, Result<CastReceipt, CastVoteError>>;
    fn my_vote(
        &self,
        election: ElectionId,
        voter: VoterId,
    ) -> BoxFuture<'_, Result<Option<MyVote>, CastVoteError>>;
}

impl<Catalog, Claims, Humans, Time, Meter> Voting for CastVoteService<Catalog, Claims, Humans, Time, Meter>
where
    Catalog: ElectionCatalog,
    Claims: VoteDedup + Clone,
    Humans: HumanCheck,
    Time: Clock,
    Meter: Metrics + Clone,
{
    fn cast(&self, cmd: CastVote) -> BoxFuture<'_, Result<CastReceipt, CastVoteError>> {
        Box::pin(CastVoteService::cast(self, cmd))
    }

    fn my_vote(
        &self,
        election: ElectionId,
        voter: VoterId,
    ) -> BoxFuture<'_, Result<Option<MyVote>, CastVoteError>> {
        Box::pin(async move { CastVoteService::my_vote(self, election, &voter).await })
    }
}

/// Votes go through only while the host's clock is trusted
/// ([`ClockGuard`]); otherwise 503, nothing claimed.
pub struct ClockChecked<V> {
    pub voting: V,
    pub guard: Arc<ClockGuard>,
    pub metrics: Arc<dyn Metrics>,
}

impl<V> std::fmt::Debug for ClockChecked<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockChecked")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<V: Voting> Voting for ClockChecked<V> {
    fn cast(&self, cmd: CastVote) -> BoxFuture<'_, Result<CastReceipt, CastVoteError>> {
        if !self.guard.trusted() {
            self.metrics.record(livevote_ports::MetricEvent::VoteRejected {
                reason: livevote_ports::RejectReason::Unavailable,
            });
            let offset = self.guard.offset_ms();
            return Box::pin(async move {
                Err(CastVoteError::Unavailable {
                    what: "host clock",
                    source: anyhow::anyhow!("this host's clock is {offset} ms off the reference"),
                })
            });
        }
        self.voting.cast(cmd)
    }

    fn my_vote(
        &self,
        election: ElectionId,
        voter: VoterId,
    ) -> BoxFuture<'_, Result<Option<MyVote>, CastVoteError>> {
        self.voting.my_vote(election, voter)
    }
}

/// Everything the handlers use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub voting: Arc<dyn Voting>,
    pub tokens: Arc<dyn Tokens>,
    pub limits: Arc<RateLimits>,
    pub metrics: Arc<dyn Metrics>,
    /// Renders `/metrics` (Prometheus text format).
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub readiness: Arc<[Arc<dyn ReadinessCheck>]>,
    /// Set when shutdown begins: readiness answers 503 so load balancers drain us.
    pub draining: Arc<AtomicBool>,
    /// Proxies in front of us whose `X-Forwarded-For` entries we believe.
    pub trusted_proxies: usize,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("trusted_proxies", &self.trusted_proxies)
            .field("request_timeout", &self.request_timeout)
            .field("draining", &self.draining.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The OpenAPI document's frame; paths come from the mounted routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "livevote vote service",
        description = "Accepts votes of authenticated viewers while a show is on air. A 202 means the vote \
                       is durable (the queue acknowledged it); every error is {code, message, traceId}.",
        version = "1.0.0"
    ),
    modifiers(&BearerAuth),
    tags((name = "votes", description = "casting votes"), (name = "health", description = "probes"))
)]
struct ApiDoc;

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(votes::cast_vote))
        .routes(routes!(votes::my_vote))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
}

/// The OpenAPI document of the routes [`router`] mounts.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The committed contract's text (`contracts/vote-service.yaml`).
///
/// # Errors
/// When the document cannot be rendered as YAML.
pub fn openapi_yaml() -> Result<String, String> {
    openapi().to_yaml().map_err(|e| e.to_string())
}

/// Every route of the service, with its middleware.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let plumbing = Plumbing {
        metrics: state.metrics.clone(),
        render_metrics: state.render_metrics.clone(),
        request_timeout: state.request_timeout,
        route_label,
    };
    livevote_http::routes::finish(
        api.with_state(state),
        doc,
        plumbing,
        || ApiError::NotFound,
        || ApiError::MethodNotAllowed,
    )
}

/// The route label of a request, from a fixed set (bounded metric labels).
fn route_label(method: &Method, path: Option<&str>) -> &'static str {
    match (method, path) {
        (&Method::POST, Some("/api/v1/votes")) => "cast_vote",
        (&Method::GET, Some("/api/v1/votes/status/{electionId}/me")) => "my_vote",
        (_, Some("/health/live" | "/health/ready")) => "health",
        (_, Some("/metrics")) => "metrics",
        (_, Some("/api-docs/openapi.json")) => "openapi",
        _ => "other",
    }
}
