//! Test helpers: a store on the shared local Redis with a key prefix of its
//! own (so tests run in parallel), and a private redis-server that a test may
//! stop and start to simulate an outage.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use livevote_redis::{RedisConfig, RedisStore};

/// `LIVEVOTE_TEST_REDIS_URL`, default the local server.
pub fn redis_url() -> String {
    std::env::var("LIVEVOTE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A config on the shared server with a fresh `lvtest-<uuid>` prefix.
/// `scripts/test.sh` deletes the keys of earlier runs.
pub fn test_config() -> RedisConfig {
    RedisConfig {
        url: redis_url(),
        key_prefix: format!("lvtest-{}", uuid::Uuid::new_v4().simple()),
        pool_size: 2,
        ..RedisConfig::default()
    }
}

pub async fn store(config: RedisConfig) -> RedisStore {
    RedisStore::connect(config)
        .await
        .expect("connect to the test Redis")
}

/// A redis-server of the test's own, on a free port, killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut me = Self { port, child: None };
        me.restart();
        me
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// Starts the server (again) on the same port, with no data.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &std::env::temp_dir().to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/services.sh redis installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("private redis-server did not start on port {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
