//! Helpers for the services' clap configurations: value parsers for
//! durations and a secret type that never shows in logs.

use std::time::Duration;

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A clap value parser: a whole number of milliseconds.
///
/// # Errors
/// When `s` is not one.
pub fn millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("{s:?} is not a number of milliseconds: {e}"))
}

/// A clap value parser: a whole number of seconds.
///
/// # Errors
/// When `s` is not one.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))
}

/// PostgreSQL settings. Each service sets its own pool size default with
/// `mut_arg("database_pool", ...)` on its command.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL.
    #[arg(
        id = "database_url",
        value_name = "DATABASE_URL",
        long = "database-url",
        env = "LIVEVOTE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/livevote"
    )]
    pub url: String,
    /// Connections to PostgreSQL.
    #[arg(
        id = "database_pool",
        value_name = "DATABASE_POOL",
        long = "database-pool",
        env = "LIVEVOTE_DATABASE_POOL",
        default_value_t = 4
    )]
    pub pool: u32,
}

/// Redis settings (Redis >= 7.0).
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL: dedup claims, live tallies, the election cache and its change feed.
    #[arg(
        id = "redis_url",
        value_name = "REDIS_URL",
        long = "redis-url",
        env = "LIVEVOTE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0"
    )]
    pub url: String,
    /// Prefix of every Redis key (no braces); the same for every service.
    #[arg(
        id = "redis_prefix",
        value_name = "REDIS_PREFIX",
        long = "redis-prefix",
        env = "LIVEVOTE_REDIS_PREFIX",
        default_value = "lv"
    )]
    pub prefix: String,
    /// Connections to Redis.
    #[arg(
        id = "redis_pool",
        value_name = "REDIS_POOL",
        long = "redis-pool",
        env = "LIVEVOTE_REDIS_POOL",
        default_value_t = 4
    )]
    pub pool: usize,
}

impl RedisArgs {
    /// # Errors
    /// A message naming the variable at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.prefix.contains(['{', '}']) || self.prefix.is_empty() {
            return Err("LIVEVOTE_REDIS_PREFIX must be non-empty and contain no braces".into());
        }
        Ok(())
    }
}

/// The vote queue.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// SQS endpoint override (a local SQS-compatible server); unset: AWS, from the standard AWS variables.
    #[arg(
        id = "sqs_endpoint",
        value_name = "SQS_ENDPOINT",
        long = "sqs-endpoint",
        env = "LIVEVOTE_SQS_ENDPOINT"
    )]
    pub sqs_endpoint: Option<String>,
    /// The vote queue's name; its dead-letter queue is `<name>-dlq`.
    #[arg(
        id = "queue_name",
        value_name = "QUEUE_NAME",
        long = "queue-name",
        env = "LIVEVOTE_QUEUE_NAME",
        default_value = "livevote-votes"
    )]
    pub name: String,
}

/// How bearer tokens are verified.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// JWKS of the token issuer (Auth0: https://<tenant>/.well-known/jwks.json).
    #[arg(
        id = "jwks_url",
        value_name = "JWKS_URL",
        long = "jwks-url",
        env = "LIVEVOTE_JWKS_URL",
        default_value = "http://127.0.0.1:8089/.well-known/jwks.json"
    )]
    pub jwks_url: String,
    /// Expected token issuer (`iss`), e.g. https://<tenant>/ for Auth0.
    #[arg(
        id = "jwt_issuer",
        value_name = "JWT_ISSUER",
        long = "jwt-issuer",
        env = "LIVEVOTE_JWT_ISSUER",
        default_value = "http://127.0.0.1:8089/"
    )]
    pub issuer: String,
    /// Expected token audience (`aud`): the API identifier.
    #[arg(
        id = "jwt_audience",
        value_name = "JWT_AUDIENCE",
        long = "jwt-audience",
        env = "LIVEVOTE_JWT_AUDIENCE",
        default_value = "https://api.livevote.local"
    )]
    pub audience: String,
    /// Clock skew tolerated on `exp`/`nbf`, seconds (at most 30).
    #[arg(id = "jwt_leeway", value_name = "JWT_LEEWAY", long = "jwt-leeway", env = "LIVEVOTE_JWT_LEEWAY_SECS", default_value = "10", value_parser = seconds)]
    pub leeway: Duration,
    /// Longest token lifetime accepted (`exp - iat`), seconds; tokens must then carry `iat`.
    /// `0`: no cap (and no `iat` needed).
    #[arg(id = "jwt_max_lifetime", value_name = "JWT_MAX_LIFETIME", long = "jwt-max-lifetime", env = "LIVEVOTE_JWT_MAX_LIFETIME_SECS", default_value = "86400", value_parser = seconds)]
    pub max_lifetime: Duration,
    /// How often the JWKS is refetched in the background, seconds.
    #[arg(id = "jwks_refresh", value_name = "JWKS_REFRESH", long = "jwks-refresh", env = "LIVEVOTE_JWKS_REFRESH_SECS", default_value = "600", value_parser = seconds)]
    pub jwks_refresh: Duration,
}

impl TokenArgs {
    /// # Errors
    /// A message naming the variable at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.leeway > Duration::from_secs(30) {
            return Err("LIVEVOTE_JWT_LEEWAY_SECS must be at most 30".into());
        }
        Ok(())
    }
}

/// Limits of the HTTP server and of each request.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Longest a request may take before it is answered 503, ms.
    #[arg(id = "request_timeout", value_name = "REQUEST_TIMEOUT", long = "request-timeout", env = "LIVEVOTE_REQUEST_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub request_timeout: Duration,
    /// A client must send its request head within this time, ms (slowloris).
    #[arg(id = "header_timeout", value_name = "HEADER_TIMEOUT", long = "header-timeout", env = "LIVEVOTE_HEADER_TIMEOUT_MS", default_value = "5000", value_parser = millis)]
    pub header_timeout: Duration,
    /// How long shutdown waits for requests in flight (and ingestion's publish buffer), seconds.
    #[arg(id = "shutdown_grace", value_name = "SHUTDOWN_GRACE", long = "shutdown-grace", env = "LIVEVOTE_SHUTDOWN_GRACE_SECS", default_value = "20", value_parser = seconds)]
    pub shutdown_grace: Duration,
}

impl HttpArgs {
    /// The connection limits these settings ask for.
    pub fn serve_config(&self) -> crate::ServeConfig {
        crate::ServeConfig {
            header_read_timeout: self.header_timeout,
            shutdown_grace: self.shutdown_grace,
            ..crate::ServeConfig::default()
        }
    }
}

/// CloudWatch publishing of the per-election vote counts.
#[derive(Debug, Clone, clap::Args)]
pub struct CloudWatchArgs {
    /// CloudWatch namespace for the vote counts; unset: CloudWatch publishing off.
    #[arg(
        id = "cloudwatch_namespace",
        value_name = "CLOUDWATCH_NAMESPACE",
        long = "cloudwatch-namespace",
        env = "LIVEVOTE_CLOUDWATCH_NAMESPACE"
    )]
    pub namespace: Option<String>,
    /// CloudWatch endpoint override (a local endpoint).
    #[arg(
        id = "cloudwatch_endpoint",
        value_name = "CLOUDWATCH_ENDPOINT",
        long = "cloudwatch-endpoint",
        env = "LIVEVOTE_CLOUDWATCH_ENDPOINT"
    )]
    pub endpoint: Option<String>,
}

/// For each service's own test: `command` passes clap's debug checks and
/// `doc` (the README) documents every environment variable it reads.
///
/// # Panics
/// When either does not hold; the message lists the missing variables.
pub fn assert_well_formed_and_documented(command: clap::Command, doc: &str) {
    command.clone().debug_assert();
    let missing = undocumented_variables(&command, doc);
    assert!(missing.is_empty(), "README.md does not document {missing:?}");
}

/// A service's test that its configuration command is well formed and that
/// the README documents every variable of it: `readme_documents_every_variable!(Config);`
/// in the module that defines `Config` (a `clap::Parser`).
#[macro_export]
macro_rules! readme_documents_every_variable {
    ($config:ty) => {
        #[cfg(test)]
        #[test]
        fn the_command_is_well_formed_and_the_readme_documents_every_variable() {
            $crate::config::assert_well_formed_and_documented(
                <$config as clap::CommandFactory>::command(),
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")),
            );
        }
    };
}

/// The environment variables of `command` (and its subcommands) that `doc`
/// never names as `` `NAME` ``: for the services' tests that the README
/// documents every setting.
pub fn undocumented_variables(command: &clap::Command, doc: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut stack = vec![command];
    while let Some(cmd) = stack.pop() {
        for arg in cmd.get_arguments() {
            if let Some(name) = arg.get_env().and_then(|n| n.to_str())
                && !doc.contains(&format!("`{name}`"))
            {
                missing.push(name.to_owned());
            }
        }
        stack.extend(cmd.get_subcommands());
    }
    missing.sort();
    missing.dedup();
    missing
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    #[command(mut_arg("database_pool", |a| a.default_value("8")))]
    struct All {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        queue: QueueArgs,
        #[command(flatten)]
        tokens: TokenArgs,
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        cloudwatch: CloudWatchArgs,
    }

    #[test]
    fn the_groups_combine_into_one_command_and_a_service_sets_its_own_pool_default() {
        All::command().debug_assert();
        let all = All::try_parse_from(["svc"]).unwrap();
        assert_eq!(all.database.pool, 8);
        assert_eq!(all.redis.pool, 4);
        assert_eq!(all.queue.name, "livevote-votes");
        assert_eq!(
            all.http.serve_config().header_read_timeout,
            Duration::from_secs(5)
        );
        let all = All::try_parse_from(["svc", "--database-pool", "2", "--redis-prefix", "x{y}"]).unwrap();
        assert_eq!(all.database.pool, 2);
        assert!(
            all.redis
                .validate()
                .unwrap_err()
                .contains("LIVEVOTE_REDIS_PREFIX")
        );
        let all = All::try_parse_from(["svc", "--jwt-leeway", "31"]).unwrap();
        assert!(
            all.tokens
                .validate()
                .unwrap_err()
                .contains("LIVEVOTE_JWT_LEEWAY_SECS")
        );
    }

    #[test]
    fn parsers_name_the_bad_value() {
        assert_eq!(millis("250"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("3"), Ok(Duration::from_secs(3)));
        assert!(millis("1.5").unwrap_err().contains("\"1.5\""));
        assert!(format!("{:?}", Secret("s3cret".into())) == "<redacted>");
    }

    #[test]
    fn undocumented_variables_are_named() {
        let cmd = All::command();
        let missing = undocumented_variables(&cmd, "`LIVEVOTE_DATABASE_URL` and `LIVEVOTE_REDIS_URL`");
        assert!(missing.contains(&"LIVEVOTE_QUEUE_NAME".to_owned()), "{missing:?}");
        assert!(
            !missing.contains(&"LIVEVOTE_DATABASE_URL".to_owned()),
            "{missing:?}"
        );
    }
}
