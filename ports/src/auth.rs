//! Token verification: who is calling, and what they may do.

use std::future::Future;

use livevote_domain::VoterId;

/// A permission granted through the token's `permissions` claim (Auth0 RBAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Create, edit, open and close elections.
    ElectionsAdmin,
    /// Read reconciliation figures and audit logs.
    AuditRead,
}

impl Permission {
    pub fn as_str(&self) -> &'static str {
        match self {
            Permission::ElectionsAdmin => "elections:admin",
            Permission::AuditRead => "audit:read",
        }
    }

    /// The permission a claim value names; `None` for permissions livevote does not use.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "elections:admin" => Some(Permission::ElectionsAdmin),
            "audit:read" => Some(Permission::AuditRead),
            _ => None,
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: the only source of a voter's identity.
    pub subject: VoterId,
    pub permissions: Vec<Permission>,
}

impl Principal {
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, badly signed, wrong issuer/audience, unsupported algorithm,
    /// unknown key, missing claims: the reason is for logs, not for clients.
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    /// No verification keys could be loaded yet; the caller is not at fault.
    #[error("token keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// Verifies bearer tokens.
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies a token (without the `Bearer ` prefix). Adapters MUST check
    /// signature, algorithm, issuer, audience, expiry and not-before, and MUST
    /// take the subject only from the verified claims.
    ///
    /// # Errors
    /// [`TokenError`].
    fn verify(&self, token: &str) -> impl Future<Output = Result<Principal, TokenError>> + Send;
}
