//! The OpenAPI document's frame; paths come from the mounted routes.

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

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (RS256, Auth0; permissions claim)")
                    .build(),
            ),
        );
    }
}

pub fn frame() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
