//! A service binary run as a child process, for black-box tests and
//! benchmarks: started with an environment, ready once it logs its
//! "listening" line (a JSON log line with `message` and `addr`), its log
//! lines kept, and killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running service process.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    /// Where it listens, from its ready line.
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `bin` with `env` added to this process's environment and waits
    /// (up to 30 s) for the JSON log line whose `message` is `ready`.
    ///
    /// # Errors
    /// When it cannot be started or does not get ready; the message holds
    /// its log lines so far.
    pub fn start(bin: &str, args: &[&str], env: &[(String, String)], ready: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {bin}: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("{bin}: no stdout"))?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (sink, wanted) = (logs.clone(), ready.to_owned());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == wanted.as_str()
                    && let Some(addr) = v["addr"].as_str()
                    && tx.send(addr.to_owned()).is_err()
                {
                    // Nobody waits any more: start-up already succeeded or gave up.
                    tracing::debug!("a ready line after start-up");
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse()?,
            Err(_) => {
                if let Err(e) = child.kill() {
                    tracing::warn!(error = %e, "could not kill {bin}");
                }
                let seen = logs.lock().expect("log lock").join("\n");
                anyhow::bail!("{bin} did not log {ready:?} within 30 s; its output:\n{seen}");
            }
        };
        Ok(Self { child, addr, logs })
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`-TERM`, `-KILL`, ...) with `kill`.
    ///
    /// # Panics
    /// When `kill` cannot be run or fails.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed: {status}");
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// When it is still running after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status;
            }
            assert!(started.elapsed() < limit, "no exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits (30 s at most) for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait(Duration::from_secs(30))
    }

    /// Every line it has written to stdout so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // Already gone (it exited, or a test killed it) is fine here.
        if self.child.try_wait().ok().flatten().is_none() {
            if let Err(e) = self.child.kill() {
                tracing::warn!(error = %e, "could not kill a service process");
            }
            if let Err(e) = self.child.wait() {
                tracing::warn!(error = %e, "could not reap a service process");
            }
        }
    }
}
