//! The HTTP edge of the results service: public results (JSON, compact,
//! Server-Sent Events, CSV), election admin, the auditors' endpoints, the
//! on-air and audit pages, health, metrics and the OpenAPI document
//! generated from the mounted routes.
//!
//! Handlers see the use cases through object-safe traits ([`Reads`],
//! [`Admin`]) so the adapters behind them are chosen at start-up and utoipa
//! can collect non-generic handlers.

pub mod admin;
pub mod audit;
mod docs;
pub mod error;
mod health;
pub mod pages;
pub mod results;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};
use axum::routing::get;
use livevote_domain::{
    ActorId, CancelReason, CandidateDraft, CandidateId, Election, ElectionEdit, ElectionId, ElectionStatus,
    NewElection, ResultsVisibility, Tally, VoteId, VoterId,
};
use livevote_http::BoxFuture;
use livevote_http::bearer::{Tokens, bearer};
use livevote_http::health::ReadinessCheck;
use livevote_http::routes::Plumbing;
use livevote_ports::{
    AuditEntry, Clock, DeadLetterSummary, ElectionAdmin, ElectionAnnouncer, ElectionCatalog, LiveTallies,
    Metrics, Page, PageRequest, Permission, Principal, QueueInspector, VoteDedup, VoteStore,
};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::{AdminService, AdminServiceError};
use crate::live::LiveResults;
use crate::service::{ElectionResults, Receipt, Reconciliation, ResultsError, ResultsService, Statistics};
use error::ApiError;

/// A query string parsed like `axum::extract::Query`, refused like every
/// other bad input: `400 INVALID_REQUEST` in the error envelope (axum's own
/// rejection is plain text).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Self(q))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// The read use cases as the handlers see them.
pub trait Reads: Send + Sync + 'static {
    fn results(&self, id: ElectionId) -> BoxFuture<'_, Result<ElectionResults, ResultsError>>;
    fn reconcile(&self, id: ElectionId) -> BoxFuture<'_, Result<Reconciliation, ResultsError>>;
    fn dead_letters(&self) -> BoxFuture<'_, Result<DeadLetterSummary, ResultsError>>;
    fn votes_held(&self, id: ElectionId) -> BoxFuture<'_, Result<u64, ResultsError>>;
    fn statistics(&self, id: ElectionId) -> BoxFuture<'_, Result<Statistics, ResultsError>>;
    fn persisted(&self, id: ElectionId) -> BoxFuture<'_, Result<(Arc<Election>, Tally), ResultsError>>;
    fn receipt(
        &self,
        vote: VoteId,
        voter: VoterId,
        election: Option<ElectionId>,
    ) -> BoxFuture<'_, Result<Option<Receipt>, ResultsError>>;
}

impl<Catalog, Tallies, Store, Queue, Time> Reads for ResultsService<Catalog, Tallies, Store, Queue, Time>
where
    Catalog: ElectionCatalog,
    Tallies: LiveTallies + VoteDedup,
    Store: VoteStore,
    Queue: QueueInspector,
    Time: Clock,
{
    fn results(&self, id: ElectionId) -> BoxFuture<'_, Result<ElectionResults, ResultsError>> {
        Box::pin(ResultsService::results(self, id))
    }
    fn reconcile(&self, id: ElectionId) -> BoxFuture<'_, Result<Reconciliation, ResultsError>> {
        Box::pin(ResultsService::reconcile(self, id))
    }
    fn dead_letters(&self) -> BoxFuture<'_, Result<DeadLetterSummary, ResultsError>> {
        Box::pin(ResultsService::dead_letters(self))
    }
    fn votes_held(&self, id: ElectionId) -> BoxFuture<'_, Result<u64, ResultsError>> {
        Box::pin(ResultsService::votes_held(self, id))
    }
    fn statistics(&self, id: ElectionId) -> BoxFuture<'_, Result<Statistics, ResultsError>> {
        Box::pin(ResultsService::statistics(self, id))
    }
    fn persisted(&self, id: ElectionId) -> BoxFuture<'_, Result<(Arc<Election>, Tally), ResultsError>> {
        Box::pin(ResultsService::persisted(self, id))
    }
    fn receipt(
        &self,
        vote: VoteId,
        voter: VoterId,
        election: Option<ElectionId>,
    ) -> BoxFuture<'_, Result<Option<Receipt>, ResultsError>> {
        Box::pin(async move { ResultsService::receipt(self, vote, &voter, election).await })
    }
}

type AdminResult<T> = Result<T, AdminServiceError>;

/// The admin use cases as the handlers see them.
pub trait Admin: Send + Sync + 'static {
    fn create(&self, actor: ActorId, new: NewElection) -> BoxFuture<'_, AdminResult<Election>>;
    fn get(&self, id: ElectionId) -> BoxFuture<'_, AdminResult<Election>>;
    fn list(
        &self,
        status: Option<ElectionStatus>,
        page: PageRequest,
    ) -> BoxFuture<'_, AdminResult<Page<Election>>>;
    fn audit_log(&self, id: ElectionId, page: PageRequest) -> BoxFuture<'_, AdminResult<Page<AuditEntry>>>;
    fn edit(
        &self,
        actor: ActorId,
        id: ElectionId,
        edit: ElectionEdit,
    ) -> BoxFuture<'_, AdminResult<Election>>;
    fn transition(
        &self,
        actor: ActorId,
        id: ElectionId,
        to: ElectionStatus,
    ) -> BoxFuture<'_, AdminResult<Election>>;
    fn cancel(
        &self,
        actor: ActorId,
        id: ElectionId,
        votes_held: u64,
        reason: Option<CancelReason>,
    ) -> BoxFuture<'_, AdminResult<Election>>;
    fn add_candidate(
        &self,
        actor: ActorId,
        id: ElectionId,
        draft: CandidateDraft,
    ) -> BoxFuture<'_, AdminResult<(Election, CandidateId)>>;
    fn update_candidate(
        &self,
        actor: ActorId,
        id: ElectionId,
        candidate: CandidateId,
        draft: CandidateDraft,
    ) -> BoxFuture<'_, AdminResult<Election>>;
    fn remove_candidate(
        &self,
        actor: ActorId,
        id: ElectionId,
        candidate: CandidateId,
    ) -> BoxFuture<'_, AdminResult<Election>>;
    fn set_visibility(
        &self,
        actor: ActorId,
        id: ElectionId,
        visibility: ResultsVisibility,
    ) -> BoxFuture<'_, AdminResult<Election>>;
}

impl<Elections, Announcer, Time> Admin for AdminService<Elections, Announcer, Time>
where
    Elections: ElectionAdmin,
    Announcer: ElectionAnnouncer,
    Time: Clock,
{
    fn create(&self, actor: ActorId, new: NewElection) -> BoxFuture<'_, AdminResult<Election>> {
        Box::pin(async move { AdminService::create(self, &actor, new).await })
    }
    fn get(&self, id: ElectionId) -> BoxFuture<'_, AdminResult<Election>> {
        Box::pin(AdminService::get(self, id))
    }
    fn list(
        &self,
        status: Option<ElectionStatus>,
        page: PageRequest,
    ) -> BoxFuture<'_, AdminResult<Page<Election>>> {
        Box::pin(AdminService::list(self, status, page))
    }
    fn audit_log(&self, id: ElectionId, page: PageRequest) -> BoxFuture<'_, AdminResult<Page<AuditEntry>>> {
        Box::pin(AdminService::audit_log(self, id, page))
    }
    fn edit(
        &self,
        actor: ActorId,
        id: ElectionId,
        edit: ElectionEdit,
    ) -> BoxFuture<'_, AdminResult<Election>> {
        Box::pin(async move { AdminService::edit(self, &actor, id, edit).await })
    }
    fn transition(
        &self,
        actor: ActorId,
        id: ElectionId,
        to: ElectionStatus,
    ) -> BoxFuture<'_, AdminResult<Election>> {
        Box::pin(async move { AdminService::transition(self, &actor, id, to).await })
    }
    fn cancel(
        &self,
        actor: ActorId,
        id: ElectionId,
        votes_held: u64,
        reason: Option<CancelReason>,
    ) -> BoxFuture<'_, AdminResult<Election>> {
        Box::pin(async move { AdminService::cancel(self, &actor, id, votes_held, reason).await })
    }
    fn add_candidate(
        &self,
        actor: ActorId,
        id: ElectionId,
        draft: CandidateDraft,
    ) -> BoxFuture<'_, AdminResult<(Election, CandidateId)>> {
        Box::pin(async move { AdminService::add_candidate(self, &actor, id, draft).await })
    }
    fn update_candidate(
        &self,
        actor: ActorId,
        id: ElectionId,
        candidate: CandidateId,
        draft: CandidateDraft,
    ) -> BoxFuture<'_, AdminResult<Election>> {
        Box::pin(async move { AdminService::update_candidate(self, &actor, id, candidate, draft).await })
    }
    fn remove_candidate(
        &self,
        actor: ActorId,
        id: ElectionId,
        candidate: CandidateId,
    ) -> BoxFuture<'_, AdminResult<Election>> {
        Box::pin(async move { AdminService::remove_candidate(self, &actor, id, candidate).await })
    }
    fn set_visibility(
        &self,
        actor: ActorId,
        id: ElectionId,
        visibility: ResultsVisibility,
    ) -> BoxFuture<'_, AdminResult<Election>> {
        Box::pin(async move { AdminService::set_visibility(self, &actor, id, visibility).await })
    }
}

/// Stream settings.
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    /// Least time between two `VOTE_UPDATE` events of one stream.
    pub update_interval: Duration,
    /// Time between two `HEARTBEAT` events.
    pub heartbeat: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            update_interval: Duration::from_millis(200),
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// Everything the handlers use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub reads: Arc<dyn Reads>,
    pub admin: Arc<dyn Admin>,
    pub tokens: Arc<dyn Tokens>,
    pub live: Arc<LiveResults>,
    /// Permits for open streams; none left: 503.
    pub streams: Arc<Semaphore>,
    pub max_streams: usize,
    pub stream: StreamConfig,
    pub metrics: Arc<dyn Metrics>,
    /// Renders `/metrics` (Prometheus text format).
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub readiness: Arc<[Arc<dyn ReadinessCheck>]>,
    /// Set when shutdown begins: readiness answers 503.
    pub draining: Arc<AtomicBool>,
    /// Turns true when shutdown begins: open streams end so connections can close.
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub request_timeout: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("max_streams", &self.max_streams)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The verified caller; 401 without a valid bearer token.
    async fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let token = bearer(headers).ok_or(ApiError::InvalidToken)?;
        self.tokens.verify(token).await.map_err(|e| {
            tracing::debug!(error = %e, "token refused");
            ApiError::from(e)
        })
    }

    /// The verified caller holding `permission`; 401 or 403 otherwise.
    async fn require(&self, headers: &HeaderMap, permission: Permission) -> Result<Principal, ApiError> {
        let principal = self.principal(headers).await?;
        if principal.has(permission) {
            Ok(principal)
        } else {
            Err(ApiError::Forbidden(permission))
        }
    }

    /// The verified caller if a bearer token is present, `None` without one.
    async fn optional_principal(&self, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        if headers.contains_key(header::AUTHORIZATION) {
            self.principal(headers).await.map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Largest admin request body.
pub const MAX_BODY: usize = 64 * 1024;

/// Parses a JSON body: `application/json`, at most [`MAX_BODY`] bytes, no unknown fields.
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    if body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// Parses a path id.
fn path_id<T>(
    field: &'static str,
    raw: &str,
    parse: impl Fn(&str) -> Result<T, livevote_domain::IdError>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::invalid_field(field, format!("{field} must be a UUID: {e}")))
}

fn election_id(raw: &str) -> Result<ElectionId, ApiError> {
    path_id("electionId", raw, ElectionId::parse)
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(docs::frame())
        .routes(routes!(results::results))
        .routes(routes!(results::live))
        .routes(routes!(results::stream))
        .routes(routes!(results::export_csv))
        .routes(routes!(results::statistics))
        .routes(routes!(audit::receipt))
        .routes(routes!(admin::list, admin::create))
        .routes(routes!(admin::get_one, admin::update, admin::cancel))
        .routes(routes!(admin::set_status))
        .routes(routes!(admin::add_candidate))
        .routes(routes!(admin::update_candidate, admin::remove_candidate))
        .routes(routes!(admin::set_visibility))
        .routes(routes!(audit::reconciliation))
        .routes(routes!(audit::reconciliation_all))
        .routes(routes!(audit::log))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
}

/// The OpenAPI document of the routes [`router`] mounts.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The committed contract's text (`contracts/results-service.yaml`).
///
/// # Errors
/// When the document cannot be rendered as YAML.
pub fn openapi_yaml() -> Result<String, String> {
    openapi().to_yaml().map_err(|e| e.to_string())
}

/// Every route of the service, with its middleware. Responses are gzipped
/// for clients that accept it (tower-http's compression: not the event
/// streams, whose events must leave at once, nor bodies too small to gain).
pub fn router(state: AppState) -> Router {
    let (api, doc) = routes().split_for_parts();
    let plumbing = Plumbing {
        metrics: state.metrics.clone(),
        render_metrics: state.render_metrics.clone(),
        request_timeout: state.request_timeout,
        route_label,
    };
    let api = api
        .route("/onair/{electionId}", get(pages::onair))
        .route("/audit", get(pages::audit))
        .route("/pages/{file}", get(pages::asset));
    livevote_http::routes::finish(
        api.with_state(state),
        doc,
        plumbing,
        || ApiError::NotFound,
        || ApiError::MethodNotAllowed,
    )
    .layer(tower_http::compression::CompressionLayer::new())
}

/// The route label of a request, from a fixed set (bounded metric labels).
fn route_label(method: &Method, path: Option<&str>) -> &'static str {
    let Some(path) = path else { return "other" };
    match path {
        "/api/v1/results/{electionId}" => "results",
        "/api/v1/results/live/{electionId}" => "results_live",
        "/api/v1/results/{electionId}/stream" => "results_stream",
        "/api/v1/results/{electionId}/export.csv" => "results_export",
        "/api/v1/results/statistics/{electionId}" => "statistics",
        "/api/v1/votes/{voteId}/receipt" => "receipt",
        "/onair/{electionId}" | "/audit" | "/pages/{file}" => "pages",
        "/health/live" | "/health/ready" => "health",
        "/metrics" => "metrics",
        "/api-docs/openapi.json" => "openapi",
        p if p.starts_with("/api/v1/audit/") => "audit",
        p if p.starts_with("/api/v1/admin/") => {
            if method == Method::GET {
                "admin_read"
            } else {
                "admin_write"
            }
        }
        _ => "other",
    }
}
