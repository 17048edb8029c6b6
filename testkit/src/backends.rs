//! The servers a service's black-box tests run it against, private to one
//! test: a scratch PostgreSQL database, a Redis key prefix, a queue (and its
//! dead-letter queue) on the SQS endpoint, and a JWKS endpoint serving the
//! development key pair, all on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use livevote_auth0::DevIssuer;
use livevote_redis::{RedisConfig, RedisStore};
use livevote_sqs::{QueueSettings, SqsQueue, create_queues, local_client};
use tokio::net::TcpListener;

use crate::{scratch_database, test_server_url};

/// The audience of every test token.
pub const AUDIENCE: &str = "https://api.livevote.test";

/// The SQS endpoint the tests use (`LIVEVOTE_TEST_SQS_ENDPOINT`).
pub fn sqs_endpoint() -> String {
    std::env::var("LIVEVOTE_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// The Redis the tests use (`LIVEVOTE_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("LIVEVOTE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Serves `app` on a free port of 127.0.0.1 until the test ends.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free local port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("a test server") });
    addr
}

/// One test's servers.
#[derive(Debug)]
pub struct Backends {
    /// The scratch database, as a service's `LIVEVOTE_DATABASE_URL`.
    pub database_url: String,
    pub pool: sqlx::PgPool,
    pub redis: RedisStore,
    pub redis_prefix: String,
    pub queue: SqsQueue,
    pub queue_name: String,
    /// Signs tokens that the JWKS at `jwks_addr` verifies.
    pub issuer: Arc<DevIssuer>,
    pub issuer_name: &'static str,
    pub jwks_addr: SocketAddr,
}

impl Backends {
    /// Fresh servers for one test; tokens are issued by `issuer_name`.
    ///
    /// # Panics
    /// When PostgreSQL, Redis or the SQS endpoint is not reachable
    /// (`scripts/test.sh` starts them).
    pub async fn start(issuer_name: &'static str) -> Self {
        Self::start_with(issuer_name, QueueSettings::default()).await
    }

    /// As [`Backends::start`], the queues made with `settings` (visibility, receive count).
    ///
    /// # Panics
    /// As [`Backends::start`].
    pub async fn start_with(issuer_name: &'static str, settings: QueueSettings) -> Self {
        let pool = scratch_database(&test_server_url(), 4)
            .await
            .expect("a test database (scripts/test.sh starts PostgreSQL)");
        let db = pool
            .connect_options()
            .get_database()
            .expect("a scratch database has a name")
            .to_owned();
        let server = test_server_url();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let database_url = format!("{base}/{db}");
        let redis_prefix = format!("lvtest-{}", uuid::Uuid::new_v4().simple());
        let redis = RedisStore::connect(RedisConfig {
            url: redis_url(),
            key_prefix: redis_prefix.clone(),
            ..RedisConfig::default()
        })
        .await
        .expect("Redis reachable (scripts/test.sh starts it)");
        let client = local_client(&sqs_endpoint());
        let queue_name = format!("lvtest-{}", uuid::Uuid::new_v4().simple());
        let config = create_queues(&client, &queue_name, settings)
            .await
            .expect("the local SQS endpoint (scripts/services.sh sqs)");
        let queue = SqsQueue::new(client, config);
        let issuer = Arc::new(DevIssuer::builtin(issuer_name, AUDIENCE));
        let jwks = issuer.jwks_json().to_string();
        let jwks_addr = serve(axum::Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { ([("content-type", "application/json")], jwks) }
            }),
        ))
        .await;
        Self {
            database_url,
            pool,
            redis,
            redis_prefix,
            queue,
            queue_name,
            issuer,
            issuer_name,
            jwks_addr,
        }
    }

    /// The variables a service reads to reach these servers (database,
    /// Redis, queue, token keys, the local AWS credentials).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("LIVEVOTE_DATABASE_URL", self.database_url.clone()),
            ("LIVEVOTE_REDIS_URL", redis_url()),
            ("LIVEVOTE_REDIS_PREFIX", self.redis_prefix.clone()),
            ("LIVEVOTE_SQS_ENDPOINT", sqs_endpoint()),
            ("LIVEVOTE_QUEUE_NAME", self.queue_name.clone()),
            (
                "LIVEVOTE_JWKS_URL",
                format!("http://{}/.well-known/jwks.json", self.jwks_addr),
            ),
            ("LIVEVOTE_JWT_ISSUER", self.issuer_name.to_owned()),
            ("LIVEVOTE_JWT_AUDIENCE", AUDIENCE.to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}
