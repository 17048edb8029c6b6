//! The JWKS-backed token verifier (see the crate docs for the rules it enforces).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use livevote_domain::VoterId;
use livevote_ports::{Permission, Principal, TokenError, TokenVerifier};
use serde::Deserialize;
use tokio::time::Instant;

/// Where the keys come from and what a token must say.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// The JWKS document, e.g. `https://<tenant>.auth0.com/.well-known/jwks.json`.
    pub jwks_url: String,
    /// The expected `iss`, e.g. `https://<tenant>.auth0.com/` (Auth0 keeps the trailing slash).
    pub issuer: String,
    /// The expected `aud` (the API identifier).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`; capped at 30 s.
    pub leeway: Duration,
    /// Longest lifetime (`exp - iat`) a token may have; `None`: no cap. When
    /// set, `iat` is required and may not lie ahead of the clock (beyond the
    /// leeway), so a token is never good for longer than this from now.
    pub max_lifetime: Option<Duration>,
    /// Least time between two fetches caused by unknown key ids, so a flood
    /// of tokens with made-up `kid`s cannot hammer the identity provider.
    pub refetch_interval: Duration,
    /// Timeout of one JWKS fetch.
    pub fetch_timeout: Duration,
}

impl JwksConfig {
    pub fn new(jwks_url: impl Into<String>, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(10),
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            refetch_interval: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(3),
        }
    }
}

/// Largest leeway accepted, whatever the configuration says.
const MAX_LEEWAY: Duration = Duration::from_secs(30);

/// The default cap on a token's lifetime: a day.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(86_400);

/// The claims read from a token whose signature verified. Every registered
/// claim is optional here so that a missing one is named in the refusal.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    #[serde(default)]
    permissions: Vec<String>,
}

/// `aud` is one string or a list of strings (RFC 7519, section 4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn includes(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(list) => list.iter().any(|a| a == audience),
        }
    }
}

/// A JWKS key ready to verify: the RSA key is parsed once, when the JWKS
/// is loaded, instead of once per token (issue 20: a few microseconds a vote).
type VerifyingKey = Arc<ParsedPublicKey>;

#[derive(Debug, Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

#[derive(Debug, Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

struct Inner {
    config: JwksConfig,
    http: reqwest::Client,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    leeway: u64,
    keys: RwLock<Arc<HashMap<String, VerifyingKey>>>,
    /// Held by the one task fetching: single flight.
    fetch: tokio::sync::Mutex<FetchState>,
}

/// Verifies RS256 bearer tokens against the keys of a JWKS URL. Cheap to clone.
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("jwks_url", &self.inner.config.jwks_url)
            .field("keys", &self.key_count())
            .finish()
    }
}

impl JwksVerifier {
    /// A verifier with no keys yet; call [`JwksVerifier::refresh`] at start-up
    /// (a token arriving first triggers the fetch itself).
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS set-up).
    pub fn new(config: JwksConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let leeway = config.leeway.min(MAX_LEEWAY).as_secs();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                leeway,
                keys: RwLock::default(),
                fetch: tokio::sync::Mutex::default(),
            }),
        })
    }

    /// Number of usable keys held; readiness wants at least one.
    pub fn key_count(&self) -> usize {
        self.inner.keys.read().expect("jwks lock").len()
    }

    /// Fetches the JWKS now and replaces the cached keys with the usable
    /// ones found. On failure, or when the document has no usable key, the
    /// cached keys stay as they were. Returns the number of keys held.
    ///
    /// # Errors
    /// Why the fetch failed, as text for logs and readiness.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut state = self.inner.fetch.lock().await;
        self.fetch_locked(&mut state).await
    }

    /// Refreshes the keys every `every` in the background (keys rotate at
    /// the provider); failures are logged and the cached keys kept.
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(error) = this.refresh().await {
                    tracing::warn!(%error, "JWKS refresh failed; keeping the cached keys");
                }
            }
        })
    }

    async fn fetch_locked(&self, state: &mut FetchState) -> Result<usize, String> {
        state.last_attempt = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) if keys.is_empty() => {
                let error = "the JWKS document has no usable RS256 signing key".to_string();
                state.last_error = Some(error.clone());
                Err(error)
            }
            Ok(keys) => {
                let n = keys.len();
                *self.inner.keys.write().expect("jwks lock") = Arc::new(keys);
                state.last_error = None;
                tracing::debug!(keys = n, "JWKS loaded");
                Ok(n)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, VerifyingKey>, String> {
        let url = &self.inner.config.jwks_url;
        let response = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        let document: JwksDocument =
            serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not a JWKS document: {e}"))?;
        Ok(usable_keys(document))
    }

    fn cached(&self, kid: &str) -> Option<VerifyingKey> {
        self.inner.keys.read().expect("jwks lock").get(kid).cloned()
    }

    /// The key for `kid`, fetching the JWKS once if it is unknown and the
    /// last fetch is old enough.
    async fn key_for(&self, kid: &str) -> Result<VerifyingKey, TokenError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let mut state = self.inner.fetch.lock().await;
        // A fetch we waited for may have brought the key.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let recent = state
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.inner.config.refetch_interval);
        if !recent {
            // A failure is kept in `state.last_error` for the answer below.
            if let Err(error) = self.fetch_locked(&mut state).await {
                tracing::warn!(%error, kid, "JWKS refetch for an unknown key id failed");
            }
            if let Some(key) = self.cached(kid) {
                return Ok(key);
            }
        }
        if self.key_count() == 0 {
            return Err(TokenError::KeysUnavailable(
                state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no keys loaded yet".into()),
            ));
        }
        Err(TokenError::Invalid(format!("unknown key id {kid:?}")))
    }
}

impl JwksVerifier {
    /// The lifetime cap: `iat` present, not ahead of the clock, and `exp`
    /// at most the cap after it.
    fn check_lifetime(&self, claims: &Claims, exp: u64, now: u64) -> Result<(), TokenError> {
        let Some(max) = self.inner.config.max_lifetime else {
            return Ok(());
        };
        let iat = claims
            .iat
            .ok_or_else(|| TokenError::Invalid("token has no iat (issued-at) claim".into()))?;
        if iat > now.saturating_add(self.inner.leeway) {
            return Err(TokenError::Invalid(format!(
                "token issued in the future (iat {iat}, now {now})"
            )));
        }
        let lifetime = exp.saturating_sub(iat);
        if lifetime > max.as_secs() {
            return Err(TokenError::Invalid(format!(
                "token lifetime of {lifetime} s exceeds the maximum of {} s",
                max.as_secs()
            )));
        }
        Ok(())
    }
}

impl JwksVerifier {
    /// The registered claims, by the rules of the crate docs; returns the
    /// subject. `exp`, `sub`, `iss` and `aud` are required; `nbf` is checked
    /// when present; each time with the leeway.
    fn check_claims(&self, claims: &mut Claims) -> Result<String, TokenError> {
        let missing = |name: &str| TokenError::Invalid(format!("token has no {name} claim"));
        let config = &self.inner.config;
        let exp = claims.exp.ok_or_else(|| missing("exp"))?;
        let sub = claims.sub.take().ok_or_else(|| missing("sub"))?;
        match &claims.iss {
            None => return Err(missing("iss")),
            Some(iss) if *iss != config.issuer => {
                return Err(TokenError::Invalid(format!(
                    "token issued by {iss:?}, not by this issuer"
                )));
            }
            Some(_) => {}
        }
        match &claims.aud {
            None => return Err(missing("aud")),
            Some(aud) if !aud.includes(&config.audience) => {
                return Err(TokenError::Invalid("token is meant for another audience".into()));
            }
            Some(_) => {}
        }
        let now = jsonwebtoken::get_current_timestamp();
        if exp.saturating_add(self.inner.leeway) < now {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(self.inner.leeway)
        {
            return Err(TokenError::Invalid(format!(
                "token not valid before {nbf} (now {now})"
            )));
        }
        self.check_lifetime(claims, exp, now)?;
        Ok(sub)
    }
}

/// The RSA signing keys of a JWKS document, by key id. Keys for another use
/// or algorithm, and keys that do not parse, are skipped.
fn usable_keys(document: JwksDocument) -> HashMap<String, VerifyingKey> {
    let mut keys = HashMap::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let signing = matches!(jwk.common.public_key_use, None | Some(PublicKeyUse::Signature));
        let rs256 = matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256));
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            continue;
        };
        if !signing || !rs256 {
            continue;
        }
        let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(&rsa.n), URL_SAFE_NO_PAD.decode(&rsa.e)) else {
            continue;
        };
        let components = RsaPublicKeyComponents { n: &n[..], e: &e[..] };
        if let Ok(key) = components.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256) {
            keys.insert(kid, Arc::new(key));
        }
    }
    keys
}

impl TokenVerifier for JwksVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let malformed = |what: &str| TokenError::Invalid(format!("malformed token: {what}"));
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("not three dot-separated parts"));
        };
        let header = jsonwebtoken::decode_header(token).map_err(|e| malformed(&e.to_string()))?;
        // The algorithm is ours to choose; the header only has to agree.
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} not accepted",
                header.alg
            )));
        }
        if header.crit.is_some() {
            return Err(TokenError::Invalid(
                "critical header extensions not supported".into(),
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("token has no key id".into()))?;
        // A known key, nearly every token, needs no await; the fetch for an
        // unknown one is boxed, so its HTTP future does not grow every request's.
        let key = match self.cached(&kid) {
            Some(key) => key,
            None => Box::pin(self.key_for(&kid)).await?,
        };
        // The signature covers the first two parts as sent (RFC 7515, section 5.2).
        let signed = &token[..token.len() - signature.len() - 1];
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| malformed("the signature is not base64url"))?;
        key.verify_sig(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::Invalid("the signature does not verify".into()))?;
        // Only a token whose signature verified is read further.
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| malformed("the claims are not base64url"))?;
        let mut claims: Claims =
            serde_json::from_slice(&payload).map_err(|e| malformed(&format!("claims: {e}")))?;
        let sub = self.check_claims(&mut claims)?;
        let subject = VoterId::parse(sub).map_err(|e| TokenError::Invalid(format!("unusable sub: {e}")))?;
        let permissions = claims
            .permissions
            .iter()
            .filter_map(|p| Permission::parse(p))
            .collect();
        Ok(Principal { subject, permissions })
    }
}
