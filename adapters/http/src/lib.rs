//! HTTP serving shared by the livevote services.
//!
//! Each service owns its routes, its error enum and its OpenAPI document;
//! what every service's routes must do the same way lives here (serving
//! itself is `livevote-hosting`'s): request ids that
//! become correlation ids ([`context`]), the `{code, message, traceId}`
//! envelope ([`error`]), the health probes ([`health`]), the middleware that
//! times, logs and bounds every request ([`observe`]), and bearer token
//! extraction ([`bearer`]).

pub mod bearer;
pub mod context;
pub mod docs;
pub mod error;
pub mod health;
pub mod observe;
pub mod routes;

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// RFC 3339 in UTC with microseconds, as every timestamp of the APIs.
pub fn rfc3339(t: &livevote_domain::Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
