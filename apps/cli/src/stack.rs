//! `livevote stack up | down | status`: the local stack.
//!
//! `up` makes sure PostgreSQL, Redis and the local SQS + CloudWatch endpoint
//! answer (through `scripts/services.sh` when run from a checkout, which
//! installs and starts them; otherwise it says what to install), creates
//! the database and applies the migrations, creates the vote queue and its
//! dead-letter queue, then starts the local token issuer (unless the
//! services are pointed at another one with `LIVEVOTE_JWKS_URL`) and the
//! three services with the right environment, and waits until each reports
//! ready. Every setting of the stack is passed on to the services
//! ([`StackArgs::service_env`]); other `LIVEVOTE_*` variables in the caller's
//! environment reach them unchanged.
//! Logs, pid files and the record of what it started live in one folder
//! (`.livevote/` by default, ignored by git); `down` stops exactly the
//! processes recorded there.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::issuer::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};

#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Folder for logs, pid files and the record of what `up` started.
    #[arg(long, env = "LIVEVOTE_STACK_DIR", default_value = ".livevote")]
    pub dir: PathBuf,
    /// Where the service binaries are; unset: next to this `livevote` binary.
    #[arg(long, env = "LIVEVOTE_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// PostgreSQL server (the stack's database is created on it).
    #[arg(
        long,
        env = "LIVEVOTE_STACK_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub postgres: String,
    /// The stack's database name.
    #[arg(long, env = "LIVEVOTE_STACK_DATABASE", default_value = "livevote")]
    pub database: String,
    /// Redis of the stack.
    #[arg(long, env = "LIVEVOTE_REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,
    /// Prefix of the stack's Redis keys.
    #[arg(long, env = "LIVEVOTE_REDIS_PREFIX", default_value = "lv")]
    pub redis_prefix: String,
    /// The local SQS + CloudWatch endpoint.
    #[arg(long, env = "LIVEVOTE_SQS_ENDPOINT", default_value = "http://127.0.0.1:4566")]
    pub sqs_endpoint: String,
    /// The vote queue (its dead-letter queue is `<name>-dlq`).
    #[arg(long, env = "LIVEVOTE_QUEUE_NAME", default_value = "livevote-votes")]
    pub queue_name: String,
    /// Visibility timeout of the vote queue `up` creates, seconds.
    #[arg(long, env = "LIVEVOTE_QUEUE_VISIBILITY_SECS", default_value_t = 30)]
    pub queue_visibility_secs: u64,
    /// Receives of one message before the queue moves it to the dead-letter queue.
    #[arg(long, env = "LIVEVOTE_QUEUE_MAX_RECEIVES", default_value_t = 5)]
    pub queue_max_receives: u32,
    /// Port of livevote-ingestion (votes).
    #[arg(long, default_value_t = 8080)]
    pub ingestion_port: u16,
    /// Port of livevote-processor (health and metrics).
    #[arg(long, default_value_t = 8081)]
    pub processor_port: u16,
    /// Port of livevote-results (results, admin, audit, pages).
    #[arg(long, default_value_t = 8082)]
    pub results_port: u16,
    /// Port of the local token issuer (JWKS).
    #[arg(long, default_value_t = 8089)]
    pub issuer_port: u16,
    /// The JWKS the services verify tokens against (e.g. an Auth0 tenant's
    /// `https://<tenant>/.well-known/jwks.json`); unset: the local issuer, which `up` starts.
    #[arg(long, env = "LIVEVOTE_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// The `iss` the services expect (Auth0: `https://<tenant>/`).
    #[arg(long, env = "LIVEVOTE_JWT_ISSUER", default_value = DEFAULT_ISSUER)]
    pub jwt_issuer: String,
    /// The `aud` the services expect (the API identifier).
    #[arg(long, env = "LIVEVOTE_JWT_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// How long each service may take to become ready, seconds.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout_secs: u64,
}

/// One process `up` started.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Started {
    name: String,
    pid: u32,
    /// Its base URL.
    url: String,
    log: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    processes: Vec<Started>,
}

impl StackArgs {
    fn record_path(&self) -> PathBuf {
        self.dir.join("stack.json")
    }

    fn load(&self) -> anyhow::Result<Record> {
        match fs::read_to_string(self.record_path()) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not a stack record", self.record_path().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
            Err(e) => Err(anyhow!("reading {}: {e}", self.record_path().display())),
        }
    }

    fn save(&self, record: &Record) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(record)?;
        fs::write(self.record_path(), text)
            .with_context(|| format!("writing {}", self.record_path().display()))
    }

    fn database_url(&self) -> String {
        format!("{}/{}", self.postgres.trim_end_matches('/'), self.database)
    }

    fn bin(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = match &self.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()
                .context("locating the livevote binary")?
                .parent()
                .map(Path::to_path_buf)
                .context("the livevote binary has no folder")?,
        };
        let path = dir.join(name);
        if !path.exists() {
            bail!(
                "{} not found: build the services first (cargo build --release -p livevote-ingestion \
                 -p livevote-processor -p livevote-results -p livevote-cli), or set LIVEVOTE_BIN_DIR",
                path.display()
            );
        }
        Ok(path)
    }

    /// Whether `up` starts the local token issuer: only when no other JWKS is configured.
    fn local_issuer(&self) -> bool {
        self.jwks_url.is_none()
    }

    /// The JWKS the services use.
    fn jwks(&self) -> String {
        self.jwks_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}/.well-known/jwks.json", self.issuer_port))
    }

    /// The environment every service gets: the stack's settings, then local
    /// defaults for what the stack does not configure itself, each kept as
    /// the caller set it when it is set.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("LIVEVOTE_DATABASE_URL", self.database_url()),
            ("LIVEVOTE_REDIS_URL", self.redis_url.clone()),
            ("LIVEVOTE_REDIS_PREFIX", self.redis_prefix.clone()),
            ("LIVEVOTE_SQS_ENDPOINT", self.sqs_endpoint.clone()),
            ("LIVEVOTE_QUEUE_NAME", self.queue_name.clone()),
            ("LIVEVOTE_JWKS_URL", self.jwks()),
            ("LIVEVOTE_JWT_ISSUER", self.jwt_issuer.clone()),
            ("LIVEVOTE_JWT_AUDIENCE", self.jwt_audience.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let defaults = [
            ("LIVEVOTE_CLOUDWATCH_NAMESPACE", "livevote-local".to_owned()),
            ("LIVEVOTE_CLOUDWATCH_ENDPOINT", self.sqs_endpoint.clone()),
            ("LIVEVOTE_LOG_FORMAT", "json".to_owned()),
            // The local endpoint takes any credentials; the AWS SDK wants some.
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ];
        for (k, v) in defaults {
            env.push((k.to_owned(), std::env::var(k).unwrap_or(v)));
        }
        env
    }
}

/// host:port of a URL such as `postgres://user@host:5432/db` or `redis://host:6379/0`.
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hp = rest.split(['/', '?']).next()?;
    Some(hp.to_owned())
}

fn answers(host_port: &str) -> bool {
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            // A zombie has exited: only its parent has not collected it yet.
            .map(|s| s.split(' ').nth(2).is_none_or(|state| state != "Z"))
            .unwrap_or(false)
}

fn step(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(message.to_owned());
    bar
}

fn done(bar: &ProgressBar, message: String) {
    bar.finish_and_clear();
    println!("✔ {message}");
}

/// Makes sure PostgreSQL, Redis and the SQS endpoint answer.
fn ensure_dependencies(args: &StackArgs) -> anyhow::Result<()> {
    let deps = [
        ("PostgreSQL", host_port(&args.postgres), "postgres", "postgresql"),
        ("Redis", host_port(&args.redis_url), "redis", "redis-server"),
        ("the local SQS endpoint", host_port(&args.sqs_endpoint), "sqs", ""),
    ];
    let missing: Vec<_> = deps
        .iter()
        .filter(|(_, hp, _, _)| !hp.as_deref().is_some_and(answers))
        .collect();
    if missing.is_empty() {
        println!("✔ PostgreSQL, Redis and the local SQS endpoint answer");
        return Ok(());
    }
    let script = Path::new("scripts/services.sh");
    if script.exists() {
        let names: Vec<&str> = missing.iter().map(|(_, _, s, _)| *s).collect();
        println!(
            "starting {} with scripts/services.sh (installs what is missing)",
            names.join(", ")
        );
        let status = Command::new("bash")
            .arg(script)
            .args(&names)
            .status()
            .context("running scripts/services.sh")?;
        if !status.success() {
            bail!(
                "scripts/services.sh {} failed (see its messages above)",
                names.join(" ")
            );
        }
    }
    for (what, hp, service, package) in deps {
        let hp = hp.unwrap_or_default();
        if !answers(&hp) {
            let how = if package.is_empty() {
                "run scripts/services.sh sqs from a livevote checkout (it builds infra/local/sqs-local)"
                    .to_owned()
            } else {
                format!(
                    "install it (Debian: apt-get install {package}) and start it, or run scripts/services.sh {service} from a livevote checkout"
                )
            };
            bail!("{what} does not answer on {hp}: {how}");
        }
    }
    println!("✔ PostgreSQL, Redis and the local SQS endpoint answer");
    Ok(())
}

async fn prepare_database(args: &StackArgs) -> anyhow::Result<()> {
    let bar = step("database: creating and migrating");
    let admin_url = format!("{}/postgres", args.postgres.trim_end_matches('/'));
    let admin = livevote_postgres::connect_lazy(&admin_url, 1).context("LIVEVOTE_STACK_POSTGRES")?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&args.database)
        .fetch_optional(&admin)
        .await
        .with_context(|| {
            format!(
                "connecting to PostgreSQL at {}",
                crate::ops::redact(&args.postgres)
            )
        })?;
    if exists.is_none() {
        anyhow::ensure!(
            args.database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "LIVEVOTE_STACK_DATABASE must be letters, digits and underscores"
        );
        // The name was checked above: letters, digits and underscores only.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{}\"",
            args.database
        )))
        .execute(&admin)
        .await
        .with_context(|| format!("creating database {}", args.database))?;
    }
    admin.close().await;
    let pool = livevote_postgres::connect_lazy(&args.database_url(), 2)?;
    let applied = livevote_postgres::migrate(&pool)
        .await
        .context("applying migrations")?;
    pool.close().await;
    done(
        &bar,
        format!(
            "database {} ready ({})",
            args.database,
            if applied.is_empty() {
                "schema up to date".to_owned()
            } else {
                format!("applied migrations {applied:?}")
            }
        ),
    );
    Ok(())
}

async fn prepare_queues(args: &StackArgs) -> anyhow::Result<()> {
    let bar = step("queues: creating the vote queue and its dead-letter queue");
    let client = livevote_sqs::local_client(&args.sqs_endpoint);
    let settings = livevote_sqs::QueueSettings {
        visibility_timeout: Duration::from_secs(args.queue_visibility_secs.max(1)),
        max_receive_count: args.queue_max_receives.max(1),
        ..livevote_sqs::QueueSettings::default()
    };
    livevote_sqs::create_queues(&client, &args.queue_name, settings)
        .await
        .with_context(|| format!("creating queue {} at {}", args.queue_name, args.sqs_endpoint))?;
    done(&bar, format!("queues {0} and {0}-dlq ready", args.queue_name));
    Ok(())
}

/// Starts `program` detached (its own process group, so Ctrl-C on the CLI
/// leaves it running), logging to `<dir>/<name>.log`.
fn spawn(
    args: &StackArgs,
    name: &str,
    program: &Path,
    argv: &[&str],
    env: &[(String, String)],
    url: String,
) -> anyhow::Result<Started> {
    let log = args.dir.join(format!("{name}.log"));
    let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(program)
        .args(argv)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id();
    fs::write(args.dir.join(format!("{name}.pid")), pid.to_string())?;
    Ok(Started {
        name: name.to_owned(),
        pid,
        url,
        log,
    })
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn ready(http: &reqwest::Client, url: &str) -> bool {
    http.get(format!("{url}/health/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn wait_ready(http: &reqwest::Client, p: &Started, limit: Duration) -> anyhow::Result<()> {
    let bar = step(&format!("{}: waiting until ready at {}", p.name, p.url));
    let started = Instant::now();
    loop {
        if ready(http, &p.url).await {
            done(
                &bar,
                format!(
                    "{} ready at {} (pid {}, log {})",
                    p.name,
                    p.url,
                    p.pid,
                    p.log.display()
                ),
            );
            return Ok(());
        }
        if !alive(p.pid) {
            bar.finish_and_clear();
            bail!(
                "{} exited during start-up; the end of {}:\n{}",
                p.name,
                p.log.display(),
                last_lines(&p.log, 15)
            );
        }
        if started.elapsed() > limit {
            bar.finish_and_clear();
            bail!(
                "{} not ready after {} s ({}/health/ready); the end of {}:\n{}",
                p.name,
                limit.as_secs(),
                p.url,
                p.log.display(),
                last_lines(&p.log, 15)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What to start: name, program, arguments, its own variables, port.
type Launch = (&'static str, PathBuf, Vec<String>, Vec<(String, String)>, u16);

pub async fn up(args: &StackArgs) -> anyhow::Result<ExitCode> {
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    ensure_dependencies(args)?;
    prepare_database(args).await?;
    prepare_queues(args).await?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let mut record = args.load()?;
    let livevote = std::env::current_exe().context("locating the livevote binary")?;
    let common = args.service_env();
    let mut plan: Vec<Launch> = vec![
        (
            "issuer",
            livevote,
            vec![
                "issuer".into(),
                "serve".into(),
                "--listen".into(),
                format!("127.0.0.1:{}", args.issuer_port),
            ],
            Vec::new(),
            args.issuer_port,
        ),
        (
            "processor",
            args.bin("livevote-processor")?,
            Vec::new(),
            vec![(
                "LIVEVOTE_PROCESSOR_LISTEN".into(),
                format!("127.0.0.1:{}", args.processor_port),
            )],
            args.processor_port,
        ),
        (
            "ingestion",
            args.bin("livevote-ingestion")?,
            Vec::new(),
            vec![
                (
                    "LIVEVOTE_INGESTION_LISTEN".into(),
                    format!("127.0.0.1:{}", args.ingestion_port),
                ),
                // Every local viewer comes from 127.0.0.1: a per-address limit would throttle the
                // demo, so it is off unless the caller's environment sets one.
                (
                    "LIVEVOTE_RATE_IP_PER_SEC".into(),
                    std::env::var("LIVEVOTE_RATE_IP_PER_SEC").unwrap_or_else(|_| "0".into()),
                ),
            ],
            args.ingestion_port,
        ),
        (
            "results",
            args.bin("livevote-results")?,
            Vec::new(),
            vec![(
                "LIVEVOTE_RESULTS_LISTEN".into(),
                format!("127.0.0.1:{}", args.results_port),
            )],
            args.results_port,
        ),
    ];
    if !args.local_issuer() {
        // The services verify another issuer's tokens: the local one would only mislead.
        plan.retain(|(name, ..)| *name != "issuer");
    }
    for (name, program, argv, own_env, port) in plan {
        let url = format!("http://127.0.0.1:{port}");
        if let Some(p) = record.processes.iter().find(|p| p.name == name)
            && alive(p.pid)
            && ready(&http, &p.url).await
        {
            println!("✔ {name} already running at {} (pid {})", p.url, p.pid);
            continue;
        }
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        if answers(&addr.to_string()) {
            bail!(
                "port {port} is taken by a process this stack did not start: stop it, or choose another \
                 port (livevote stack up --{name}-port N)"
            );
        }
        let mut env = common.clone();
        env.extend(own_env);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let started = spawn(args, name, &program, &argv, &env, url)?;
        record.processes.retain(|p| p.name != name);
        record.processes.push(started.clone());
        args.save(&record)?;
        wait_ready(&http, &started, Duration::from_secs(args.ready_timeout_secs)).await?;
    }
    println!();
    println!("livevote stack is up (logs in {}):", args.dir.display());
    println!(
        "  votes      http://127.0.0.1:{}/api/v1/votes",
        args.ingestion_port
    );
    println!(
        "  results    http://127.0.0.1:{}/api/v1/results/<electionId>",
        args.results_port
    );
    println!(
        "  on air     http://127.0.0.1:{}/onair/<electionId>",
        args.results_port
    );
    println!("  audit      http://127.0.0.1:{}/audit", args.results_port);
    println!("  processor  http://127.0.0.1:{}/metrics", args.processor_port);
    if args.local_issuer() {
        println!(
            "  JWKS       {} (local issuer: livevote token --sub you [--admin] [--auditor])",
            args.jwks()
        );
    } else {
        println!(
            "  JWKS       {} (iss {}, aud {}; set LIVEVOTE_OPERATOR_TOKEN to one of its tokens for the CLI)",
            args.jwks(),
            args.jwt_issuer,
            args.jwt_audience
        );
    }
    println!("next: livevote demo");
    Ok(ExitCode::SUCCESS)
}

fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

pub async fn down(args: &StackArgs) -> anyhow::Result<ExitCode> {
    let record = args.load()?;
    if record.processes.is_empty() {
        println!(
            "nothing to stop: {} records no process",
            args.record_path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // The reverse of the start order: readers and writers first, the issuer last.
    for p in record.processes.iter().rev() {
        if !alive(p.pid) {
            println!("✔ {} (pid {}) was not running", p.name, p.pid);
            continue;
        }
        let bar = step(&format!("stopping {} (pid {})", p.name, p.pid));
        signal(p.pid, "TERM");
        let started = Instant::now();
        while alive(p.pid) && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if alive(p.pid) {
            signal(p.pid, "KILL");
            done(&bar, format!("{} did not stop within 30 s: killed", p.name));
        } else {
            done(&bar, format!("{} stopped", p.name));
        }
        if let Err(error) = fs::remove_file(args.dir.join(format!("{}.pid", p.name))) {
            eprintln!("note: {}.pid not removed: {error}", p.name);
        }
    }
    fs::remove_file(args.record_path())
        .with_context(|| format!("removing {}", args.record_path().display()))?;
    println!(
        "PostgreSQL, Redis and the SQS endpoint keep running (shared with the tests; scripts/services.sh started them)"
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: &StackArgs) -> anyhow::Result<ExitCode> {
    let mut healthy = true;
    for (what, url) in [
        ("PostgreSQL", &args.postgres),
        ("Redis", &args.redis_url),
        ("SQS endpoint", &args.sqs_endpoint),
    ] {
        let hp = host_port(url).unwrap_or_default();
        let up = answers(&hp);
        healthy &= up;
        println!("{:<14} {:<24} {}", what, hp, if up { "up" } else { "DOWN" });
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let record = args.load()?;
    if record.processes.is_empty() {
        println!(
            "no livevote process started here ({}): livevote stack up",
            args.record_path().display()
        );
        return Ok(ExitCode::FAILURE);
    }
    for p in &record.processes {
        let state = if !alive(p.pid) {
            "EXITED"
        } else if ready(&http, &p.url).await {
            "ready"
        } else {
            "NOT READY"
        };
        healthy &= state == "ready";
        println!(
            "{:<14} {:<24} {} (pid {}, log {})",
            p.name,
            p.url,
            state,
            p.pid,
            p.log.display()
        );
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        stack: StackArgs,
    }

    fn parse(flags: &[&str]) -> StackArgs {
        Cli::try_parse_from(std::iter::once("livevote").chain(flags.iter().copied()))
            .unwrap()
            .stack
    }

    fn value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The variables the README says `stack up` passes on to the services.
    fn documented_pass_through() -> Vec<String> {
        let readme = include_str!("../../../README.md");
        let line = readme
            .lines()
            .find(|l| l.contains("`stack up` passes on to the services"))
            .expect("the README names what `stack up` passes on");
        line.split('`')
            .skip(1)
            .step_by(2)
            // LIVEVOTE_STACK_*: the stack's own settings the database URL is made of.
            .filter(|w| w.starts_with("LIVEVOTE_") && !w.starts_with("LIVEVOTE_STACK_"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_documented_setting_reaches_the_services() {
        let args = parse(&[
            "--postgres",
            "postgres://u@db.example:5432",
            "--database",
            "show",
            "--redis-url",
            "rediss://cache.example:6380/0",
            "--redis-prefix",
            "tv",
            "--sqs-endpoint",
            "http://sqs.example:4566",
            "--queue-name",
            "votes-eu",
            "--jwks-url",
            "https://tenant.example/.well-known/jwks.json",
            "--jwt-issuer",
            "https://tenant.example/",
            "--jwt-audience",
            "https://api.tv.example",
        ]);
        let env = args.service_env();
        let want = [
            ("LIVEVOTE_DATABASE_URL", "postgres://u@db.example:5432/show"),
            ("LIVEVOTE_REDIS_URL", "rediss://cache.example:6380/0"),
            ("LIVEVOTE_REDIS_PREFIX", "tv"),
            ("LIVEVOTE_SQS_ENDPOINT", "http://sqs.example:4566"),
            ("LIVEVOTE_QUEUE_NAME", "votes-eu"),
            (
                "LIVEVOTE_JWKS_URL",
                "https://tenant.example/.well-known/jwks.json",
            ),
            ("LIVEVOTE_JWT_ISSUER", "https://tenant.example/"),
            ("LIVEVOTE_JWT_AUDIENCE", "https://api.tv.example"),
        ];
        for (key, expected) in want {
            assert_eq!(value(&env, key), Some(expected), "{key}");
        }
        assert!(
            !args.local_issuer(),
            "another issuer: the local one is not started"
        );
        let documented = documented_pass_through();
        assert!(documented.len() >= 8, "{documented:?}");
        for key in &documented {
            assert!(
                want.iter().any(|(k, _)| k == key),
                "the README says `stack up` passes {key} on, and this test does not check it"
            );
        }
        for (key, _) in want {
            assert!(
                documented.iter().any(|k| k == key),
                "{key} is passed on but not documented"
            );
        }
    }

    #[test]
    fn without_settings_the_stack_uses_its_local_issuer() {
        let args = parse(&["--issuer-port", "9999"]);
        let env = args.service_env();
        assert!(args.local_issuer());
        assert_eq!(
            value(&env, "LIVEVOTE_JWKS_URL"),
            Some("http://127.0.0.1:9999/.well-known/jwks.json")
        );
        assert_eq!(value(&env, "LIVEVOTE_JWT_ISSUER"), Some(DEFAULT_ISSUER));
        assert_eq!(value(&env, "LIVEVOTE_JWT_AUDIENCE"), Some(DEFAULT_AUDIENCE));
    }

    #[test]
    fn host_and_port_of_urls() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            host_port("postgres://u:p@db:5432/x?sslmode=off").as_deref(),
            Some("db:5432")
        );
        assert_eq!(
            host_port("redis://127.0.0.1:6379/0").as_deref(),
            Some("127.0.0.1:6379")
        );
        assert_eq!(
            host_port("http://127.0.0.1:4566").as_deref(),
            Some("127.0.0.1:4566")
        );
    }
}
