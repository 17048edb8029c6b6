//! Fake human checks: always pass, always fail, or down.

use std::net::IpAddr;

use livevote_ports::{HumanCheck, HumanCheckError, HumanVerdict};

/// A CAPTCHA verifier with a fixed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeHumanCheck {
    /// Every token passes.
    AlwaysHuman,
    /// Every token fails.
    NeverHuman,
    /// The verifier cannot be reached.
    Down,
}

impl HumanCheck for FakeHumanCheck {
    async fn verify(
        &self,
        _token: &str,
        _remote_ip: Option<IpAddr>,
    ) -> Result<HumanVerdict, HumanCheckError> {
        match self {
            FakeHumanCheck::AlwaysHuman => Ok(HumanVerdict::Human),
            FakeHumanCheck::NeverHuman => Ok(HumanVerdict::NotHuman),
            FakeHumanCheck::Down => Err(HumanCheckError::Unavailable("fake verifier is down".into())),
        }
    }
}
