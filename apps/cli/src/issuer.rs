//! The local development token issuer: the repository's development key
//! pair signs tokens (`livevote token`) and its JWKS is served locally
//! (`livevote issuer serve`, started by `stack up`). Local only: production
//! services verify tokens issued by Auth0, and nothing there trusts this key.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::get;
use clap::Args;
use livevote_auth0::{DevIssuer, DevTokenClaims};

/// The issuer and audience the services expect by default (their `LIVEVOTE_JWT_*` defaults).
pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:8089/";
pub const DEFAULT_AUDIENCE: &str = "https://api.livevote.local";

#[derive(Debug, Clone, Args)]
pub struct IssuerArgs {
    /// `iss` of the tokens (must match the services' LIVEVOTE_JWT_ISSUER).
    #[arg(long, env = "LIVEVOTE_JWT_ISSUER", default_value = DEFAULT_ISSUER)]
    pub issuer: String,
    /// `aud` of the tokens (must match the services' LIVEVOTE_JWT_AUDIENCE).
    #[arg(long, env = "LIVEVOTE_JWT_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub audience: String,
}

impl IssuerArgs {
    pub fn issuer(&self) -> DevIssuer {
        DevIssuer::builtin(&self.issuer, &self.audience)
    }
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The subject (viewer or operator id), e.g. auth0|alice.
    #[arg(long)]
    pub sub: String,
    /// Grants elections:admin.
    #[arg(long)]
    pub admin: bool,
    /// Grants audit:read.
    #[arg(long)]
    pub auditor: bool,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: u64,
    #[command(flatten)]
    pub issuer: IssuerArgs,
}

/// Claims for `sub` with the permissions asked for.
pub fn claims(sub: &str, admin: bool, auditor: bool, ttl: Duration) -> DevTokenClaims {
    let mut claims = DevTokenClaims::viewer(sub);
    if admin {
        claims.permissions.push("elections:admin".into());
    }
    if auditor {
        claims.permissions.push("audit:read".into());
    }
    claims.ttl = ttl;
    claims
}

pub fn token(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.sub.trim().is_empty(), "--sub must not be empty");
    let token = args.issuer.issuer().token(&claims(
        &args.sub,
        args.admin,
        args.auditor,
        Duration::from_secs(args.ttl_secs),
    ));
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// The issuer's routes: its JWKS, a readiness probe, and `/stats` (how many
/// times the JWKS was fetched: the hostile-input suite checks that the
/// services' refetches on unknown key ids stay throttled).
pub fn router() -> axum::Router {
    // The JWKS does not depend on iss/aud: any issuer built from the key serves the same keys.
    let jwks = DevIssuer::builtin(DEFAULT_ISSUER, DEFAULT_AUDIENCE)
        .jwks_json()
        .to_owned();
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = fetches.clone();
    axum::Router::new()
        .route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move { ([("content-type", "application/json")], jwks) }
            }),
        )
        .route(
            "/stats",
            get(move || {
                let n = fetches.load(std::sync::atomic::Ordering::Relaxed);
                async move { axum::Json(serde_json::json!({ "jwksFetches": n })) }
            }),
        )
        .route("/health/ready", get(|| async { "ready" }))
}

/// Serves `/.well-known/jwks.json` until SIGTERM or Ctrl-C.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let app = router();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (LIVEVOTE_ISSUER_LISTEN): {e}"))?;
    println!(
        "livevote issuer (local development only) serving JWKS on http://{listen}/.well-known/jwks.json"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(livevote_hosting::shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}
