//! The fault suite's own PostgreSQL, Redis and SQS endpoint: private
//! processes on free ports, so the suite can stop, kill, freeze and wipe
//! them without touching the servers the tests and the demo share.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A free TCP port on 127.0.0.1 (the OS picks it; the listener is closed at once).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct free ports: every listener is held until all are chosen, so
/// the system cannot hand the same port out twice.
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

/// Waits until something listens on `port`, or `child` exits.
fn wait_port(port: u16, what: &str, child: &mut Child, log: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    while !answers(port) {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}) before listening on {port}; see {}",
                log.display()
            );
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "{what} did not listen on {port} within 60 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Sends `signal` (a name such as KILL, STOP, CONT) to a pid, or with
/// `group` to its whole process group.
pub fn signal(pid: u32, signal: &str, group: bool) -> anyhow::Result<()> {
    let target = if group { format!("-{pid}") } else { pid.to_string() };
    let status = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), target])
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

fn log_file(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((out.try_clone()?.into(), out.into()))
}

/// The user PostgreSQL runs as: `postgres` when we are root (initdb refuses root).
fn postgres_user() -> anyhow::Result<Option<(u32, u32)>> {
    let status = fs::read_to_string("/proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse::<u32>().ok());
    if uid != Some(0) {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")?;
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .context("running as root, and there is no postgres user to run PostgreSQL as")?;
    let fields: Vec<&str> = entry.split(':').collect();
    Ok(Some((fields[2].parse()?, fields[3].parse()?)))
}

/// A private PostgreSQL cluster.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    pub port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

impl Postgres {
    /// The newest PostgreSQL server binaries of Debian's layout.
    pub fn find_bin() -> anyhow::Result<PathBuf> {
        let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
            .context(
                "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)",
            )?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        dirs.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        dirs.pop().context("no initdb under /usr/lib/postgresql/*/bin")
    }

    /// `initdb` into `<dir>/pg` (trust authentication, superuser postgres).
    pub fn init(bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        let data = dir.join("pg");
        fs::create_dir_all(&data)?;
        let user = postgres_user()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                .context("handing the data folder to postgres")?;
        }
        let log = dir.join("postgres.log");
        let (out, err) = log_file(&log)?;
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .stdout(out)
            .stderr(err);
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let status = initdb.status().context("running initdb")?;
        anyhow::ensure!(status.success(), "initdb failed; see {}", log.display());
        Ok(Self {
            bin: bin.to_owned(),
            data,
            log,
            port: free_port()?,
            user,
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Starts the server with `settings` (`name=value`, as `postgres -c`).
    pub fn start(&mut self, settings: &[&str]) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.log)?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]);
        for s in settings {
            cmd.args(["-c", s]);
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn().context("starting postgres")?;
        wait_port(self.port, "PostgreSQL", &mut child, &self.log)?;
        self.child = Some(child);
        Ok(())
    }

    /// Fast shutdown (SIGINT: sessions are ended, everything committed is kept).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "INT", false)?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGKILL to the postmaster and every backend at once: a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL", true)?;
            child.wait()?;
            // Orphaned backends notice the postmaster is gone; give them a moment.
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && signal(child.id(), "KILL", true).is_ok()
        {
            child.wait().ok();
        }
    }
}

/// A private redis-server (no persistence but an explicit `SHUTDOWN SAVE`).
#[derive(Debug)]
pub struct Redis {
    dir: PathBuf,
    log: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("redis");
        fs::create_dir_all(&dir)?;
        Ok(Self {
            log: dir.join("redis.log"),
            dir,
            port: free_port()?,
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.log)?;
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?;
        wait_port(self.port, "redis-server", &mut child, &self.log)?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server; with `keep` its data is saved and loaded again on start.
    pub fn stop(&mut self, keep: bool) -> anyhow::Result<()> {
        let how = if keep { "SAVE" } else { "NOSAVE" };
        // redis-cli may call the dropped connection an error: the server's exit decides.
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "SHUTDOWN", how])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running redis-cli")?;
        if let Some(mut child) = self.child.take() {
            let started = Instant::now();
            while child.try_wait()?.is_none() {
                if started.elapsed() > Duration::from_secs(10) {
                    signal(child.id(), "KILL", false)?;
                    child.wait()?;
                    bail!("redis-server ignored SHUTDOWN {how} for 10 s and was killed");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !keep {
            let dump = self.dir.join("dump.rdb");
            if dump.exists() {
                fs::remove_file(&dump)?;
            }
        }
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && signal(child.id(), "KILL", false).is_ok()
        {
            child.wait().ok();
        }
    }
}

/// A private SQS endpoint (the project's in-memory `livevote-sqs-local`).
#[derive(Debug)]
pub struct Sqs {
    bin: PathBuf,
    log: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Sqs {
    pub fn new(bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bin.exists(),
            "{} not found: scripts/services.sh sqs builds it (LIVEVOTE_FAULTS_SQS_BIN)",
            bin.display()
        );
        Ok(Self {
            bin: bin.to_owned(),
            log: dir.join("sqs-local.log"),
            port: free_port()?,
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.log)?;
        let mut child = Command::new(&self.bin)
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        wait_port(self.port, "the SQS endpoint", &mut child, &self.log)?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .context("the SQS endpoint is not running")
    }

    /// SIGKILL: every queue and message it held in memory is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL", false)?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Sqs {
    fn drop(&mut self) {
        self.kill().ok();
    }
}
