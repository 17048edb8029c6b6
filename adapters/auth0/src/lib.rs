//! Bearer token verification against a JWKS (Auth0 in production), and a
//! local development issuer.
//!
//! [`JwksVerifier`] implements the `TokenVerifier` port:
//! - RS256 only. The algorithm is fixed by us, never taken from the token, so
//!   `alg: none` and HS256-signed-with-the-public-key tokens fail.
//! - Keys come only from the configured JWKS URL; `jku`, `x5u` and embedded
//!   `jwk` headers are never followed, and a token with a `crit` header is
//!   refused (we understand no extensions).
//! - `iss`, `aud`, `exp` and `sub` are required, `nbf` is checked, with a
//!   small leeway (at most 30 s).
//! - A token lives at most `max_lifetime` (a day by default): `iat` is then
//!   required, may not lie ahead of the clock, and `exp - iat` may not exceed
//!   the cap, so a token signed to last for centuries is refused.
//! - Keys are cached in memory. An unknown `kid` triggers one refetch, at most
//!   once per `refetch_interval` (single flight: concurrent requests wait for
//!   the same fetch). When the JWKS endpoint is down, cached keys keep working.
//! - Each RSA key is parsed once, when the JWKS is loaded, and kept ready to
//!   verify (aws-lc-rs); a token costs one signature check and one JSON parse
//!   of its claims, read only after the signature verified. `aud` may be one
//!   string or a list that names this API.
//!
//! [`DevIssuer`] signs tokens with a key pair of its own and serves the
//! matching JWKS document. It exists for the local stack and the tests; a
//! production deployment verifies Auth0's tokens and never uses it.

mod dev;
mod verifier;

pub use dev::{DevIssuer, DevTokenClaims, unix_now};
pub use verifier::{DEFAULT_MAX_LIFETIME, JwksConfig, JwksVerifier};
