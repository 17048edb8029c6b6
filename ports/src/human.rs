//! Human checks (CAPTCHA) for elections that require them.

use std::future::Future;
use std::net::IpAddr;

/// What the verifier said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HumanVerdict {
    Human,
    NotHuman,
}

/// Why the verifier could not answer. Callers fail closed: no vote is
/// claimed without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HumanCheckError {
    #[error("human check unavailable: {0}")]
    Unavailable(String),
}

/// Verifies CAPTCHA tokens.
pub trait HumanCheck: Send + Sync + 'static {
    /// Asks the verifier about `token`, passing the client's address when known.
    ///
    /// # Errors
    /// [`HumanCheckError::Unavailable`] on timeouts and verifier failures.
    fn verify(
        &self,
        token: &str,
        remote_ip: Option<IpAddr>,
    ) -> impl Future<Output = Result<HumanVerdict, HumanCheckError>> + Send;
}
