//! The bearer token of a request's `Authorization` header.

use axum::http::{HeaderMap, header};
use livevote_ports::{Principal, TokenError, TokenVerifier};

use crate::BoxFuture;

/// Token verification as handlers see it: object-safe, so the verifier is
/// chosen at start-up (JWKS, or a fixed one in the embedded mode and tests).
pub trait Tokens: Send + Sync + 'static {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, TokenError>>;
}

impl<T: TokenVerifier> Tokens for T {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, TokenError>> {
        Box::pin(TokenVerifier::verify(self, token))
    }
}

/// The token of `Authorization: Bearer <token>`, or `None` when the header
/// is missing, repeated, not visible ASCII, of another scheme, or empty.
/// Two `Authorization` headers are refused rather than guessed between.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc.def.ghi"));
        h.insert(header::AUTHORIZATION, "bearer  abc.def.ghi ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc.def.ghi"));
        h.insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer a.b.c".parse().unwrap());
        h.append(header::AUTHORIZATION, "Bearer d.e.f".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
