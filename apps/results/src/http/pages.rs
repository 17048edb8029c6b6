//! The on-air overlay and the auditors' dashboard: static HTML, CSS and
//! JavaScript compiled into the binary (no build step), served with a
//! content security policy that allows only this origin.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::election_id;
use super::error::ApiError;

const ONAIR_HTML: &str = include_str!("../../pages/onair.html");
const ONAIR_JS: &str = include_str!("../../pages/onair.js");
const AUDIT_HTML: &str = include_str!("../../pages/audit.html");
const AUDIT_JS: &str = include_str!("../../pages/audit.js");
const CSS: &str = include_str!("../../pages/livevote.css");

/// Scripts and styles from this origin only; the pages call this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `/onair/{electionId}`: the broadcast overlay.
pub async fn onair(Path(raw): Path<String>) -> Result<Response, ApiError> {
    election_id(&raw)?;
    Ok(page("text/html; charset=utf-8", ONAIR_HTML))
}

/// `/audit`: the auditors' dashboard.
pub async fn audit() -> Response {
    page("text/html; charset=utf-8", AUDIT_HTML)
}

/// `/pages/{file}`: the pages' scripts and style sheet.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    match file.as_str() {
        "onair.js" => Ok(page("text/javascript; charset=utf-8", ONAIR_JS)),
        "audit.js" => Ok(page("text/javascript; charset=utf-8", AUDIT_JS)),
        "livevote.css" => Ok(page("text/css; charset=utf-8", CSS)),
        _ => Err(ApiError::NotFound),
    }
}
