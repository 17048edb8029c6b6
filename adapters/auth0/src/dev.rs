//! A local token issuer for the development stack and the tests. Production
//! verifies tokens issued by Auth0; nothing in a production path signs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The development key pair checked into the repository (never a secret:
/// anything signed with it is trusted only by a local stack).
const DEV_KEY_PEM: &[u8] = include_bytes!("../dev/dev-signing-key.pem");

/// What a development token says.
#[derive(Debug, Clone)]
pub struct DevTokenClaims {
    pub sub: String,
    /// Auth0 RBAC permissions, e.g. `elections:admin`.
    pub permissions: Vec<String>,
    /// Lifetime from now.
    pub ttl: Duration,
}

impl DevTokenClaims {
    pub fn viewer(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            permissions: Vec::new(),
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Signs RS256 tokens and serves the matching JWKS document.
pub struct DevIssuer {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
    jwks: String,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// The issuer with the repository's development key.
    pub fn builtin(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self::from_pem(DEV_KEY_PEM, "livevote-dev-1", issuer, audience)
            .expect("the checked-in development key is a valid RSA key")
    }

    /// An issuer with another RSA private key (PKCS#8 or PKCS#1 PEM).
    ///
    /// # Errors
    /// When the PEM is not an RSA private key.
    pub fn from_pem(
        pem: &[u8],
        kid: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = EncodingKey::from_rsa_pem(pem)?;
        let kid = kid.into();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] })?;
        Ok(Self {
            key,
            kid,
            issuer: issuer.into(),
            audience: audience.into(),
            jwks,
        })
    }

    /// The JWKS document (`{"keys":[...]}`) with this issuer's public key.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// A signed token for `claims`.
    pub fn token(&self, claims: &DevTokenClaims) -> String {
        let now = unix_now();
        let body = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": claims.sub,
            "iat": now,
            "nbf": now,
            "exp": now + claims.ttl.as_secs(),
            "permissions": claims.permissions,
        });
        self.sign(self.header(), &body)
    }

    /// The header this issuer puts on its tokens (RS256 and its key id), to
    /// be altered by tests.
    pub fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header
    }

    /// Signs arbitrary claims under `header` with this issuer's key: tests
    /// use it to craft expired, wrong-audience or odd-header tokens.
    pub fn sign(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.key).expect("RS256 signing with a valid key")
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
