//! A token verifier backed by a fixed table, for tests and the embedded demo.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use livevote_ports::{Principal, TokenError, TokenVerifier};

/// Maps literal token strings to what verifying them yields. Any token not
/// in the table is invalid.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens {
    table: Arc<RwLock<HashMap<String, Result<Principal, TokenError>>>>,
}

impl StaticTokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `token` verify as `principal`.
    pub fn allow(&self, token: impl Into<String>, principal: Principal) {
        self.table
            .write()
            .expect("token table lock")
            .insert(token.into(), Ok(principal));
    }

    /// Makes `token` fail with `error` (for example [`TokenError::Expired`]).
    pub fn refuse(&self, token: impl Into<String>, error: TokenError) {
        self.table
            .write()
            .expect("token table lock")
            .insert(token.into(), Err(error));
    }
}

impl TokenVerifier for StaticTokens {
    async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        self.table
            .read()
            .expect("token table lock")
            .get(token)
            .cloned()
            .unwrap_or_else(|| Err(TokenError::Invalid("unknown token".into())))
    }
}
