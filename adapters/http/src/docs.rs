//! OpenAPI pieces every service's document shares.

/// Adds the `bearer` security scheme (an Auth0 RS256 JWT) to a document.
#[derive(Debug)]
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (RS256, Auth0)")
                    .build(),
            ),
        );
    }
}
