//! The `HumanCheck` port on Cloudflare Turnstile's siteverify endpoint.
//!
//! One `POST {siteverify}` per check with the secret, the client's token and
//! (when known) its IP. The verifier fails closed: a timeout, a transport
//! error, a 5xx, an answer that does not parse, or Turnstile saying our own
//! request was bad (`missing-input-secret`, `invalid-input-secret`,
//! `bad-request`, `internal-error`) is [`HumanCheckError::Unavailable`] (the
//! vote is refused with 503, nothing is claimed); only a well-formed
//! `success: false` about the client's token is [`HumanVerdict::NotHuman`].

use std::net::IpAddr;
use std::time::Duration;

use livevote_ports::{HumanCheck, HumanCheckError, HumanVerdict};
use serde::Deserialize;

/// Cloudflare's endpoint.
pub const SITEVERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";

/// Longest token Turnstile issues; longer ones are refused without a call.
pub const MAX_TOKEN_LEN: usize = 2048;

/// Error codes that say *our* request or Cloudflare failed, not the client.
const OUR_FAULT: [&str; 4] = [
    "missing-input-secret",
    "invalid-input-secret",
    "bad-request",
    "internal-error",
];

/// Turnstile settings.
#[derive(Clone)]
pub struct TurnstileConfig {
    pub siteverify_url: String,
    /// The widget's secret key (kept out of `Debug`).
    pub secret: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for TurnstileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnstileConfig")
            .field("siteverify_url", &self.siteverify_url)
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct SiteverifyAnswer {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

/// Verifies Turnstile tokens. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TurnstileVerifier {
    config: TurnstileConfig,
    http: reqwest::Client,
}

impl TurnstileVerifier {
    /// # Errors
    /// When the HTTP client cannot be built (TLS set-up).
    pub fn new(config: TurnstileConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { config, http })
    }
}

impl HumanCheck for TurnstileVerifier {
    async fn verify(&self, token: &str, remote_ip: Option<IpAddr>) -> Result<HumanVerdict, HumanCheckError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Ok(HumanVerdict::NotHuman);
        }
        let mut body = serde_json::json!({ "secret": self.config.secret, "response": token });
        if let Some(ip) = remote_ip {
            body["remoteip"] = serde_json::Value::String(ip.to_string());
        }
        let unavailable = |what: String| HumanCheckError::Unavailable(what);
        let response = self
            .http
            .post(&self.config.siteverify_url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unavailable(format!("siteverify: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("siteverify answered HTTP {status}")));
        }
        let answer: SiteverifyAnswer = response
            .json()
            .await
            .map_err(|e| unavailable(format!("siteverify answer: {e}")))?;
        if answer.success {
            return Ok(HumanVerdict::Human);
        }
        if let Some(code) = answer
            .error_codes
            .iter()
            .find(|c| OUR_FAULT.contains(&c.as_str()))
        {
            tracing::error!(code = %code, "Turnstile refused our siteverify request; check LIVEVOTE_TURNSTILE_SECRET");
            return Err(unavailable(format!("siteverify: {code}")));
        }
        Ok(HumanVerdict::NotHuman)
    }
}

/// The human check of an instance with no CAPTCHA verifier configured: an
/// election that requires a CAPTCHA cannot take votes there (fail closed).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHumanCheck;

impl HumanCheck for NoHumanCheck {
    async fn verify(
        &self,
        _token: &str,
        _remote_ip: Option<IpAddr>,
    ) -> Result<HumanVerdict, HumanCheckError> {
        Err(HumanCheckError::Unavailable(
            "no CAPTCHA verifier configured (LIVEVOTE_TURNSTILE_SECRET)".into(),
        ))
    }
}

/// Either verifier, chosen by configuration at start-up.
#[derive(Debug, Clone)]
pub enum ConfiguredHumanCheck {
    Turnstile(TurnstileVerifier),
    None(NoHumanCheck),
}

impl HumanCheck for ConfiguredHumanCheck {
    async fn verify(&self, token: &str, remote_ip: Option<IpAddr>) -> Result<HumanVerdict, HumanCheckError> {
        match self {
            ConfiguredHumanCheck::Turnstile(t) => t.verify(token, remote_ip).await,
            ConfiguredHumanCheck::None(n) => n.verify(token, remote_ip).await,
        }
    }
}
