//! The OpenAPI document's frame; paths come from the mounted routes.

use livevote_http::docs::BearerAuth;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "livevote results service",
        description = "Results for on-air graphics (JSON, compact polling, Server-Sent Events, CSV), election \
                       administration (elections:admin), and the auditors' reconciliation (audit:read). Every \
                       error is {code, message, traceId}.",
        version = "1.0.0"
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "results", description = "public results, no authentication"),
        (name = "admin", description = "election administration: a token with the elections:admin permission"),
        (name = "audit", description = "auditors: a token with the audit:read permission"),
        (name = "votes", description = "a voter's own receipt"),
        (name = "health", description = "probes"),
    )
)]
struct ApiDoc;

pub fn frame() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
