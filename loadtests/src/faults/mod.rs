//! `livevote-faults`: the fault suite. It starts its own PostgreSQL, Redis
//! and SQS endpoint (see [`servers`]), and for every case a stack of its
//! own on them (`livevote stack up`, services built with the `failpoints`
//! feature), runs `livevote-load` against it, breaks something while the
//! votes come in, and takes the load generator's exact verdict afterwards.
//! Prints one table (case, expected, observed, pass/fail); exit 1 on any failure.

mod cases;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::Value;

use crate::table::Row;
use servers::{Postgres, Redis, Sqs};

#[derive(Debug, Parser)]
#[command(
    name = "livevote-faults",
    version,
    about = "Fault suite: crashes, outages, redelivery and skew while votes come in; nothing accepted may be lost"
)]
pub struct Cli {
    /// Run only the cases whose name contains this (repeat the flag for several).
    #[arg(long)]
    pub only: Vec<String>,
    /// The livevote binaries; the services must be built with the `failpoints` feature.
    #[arg(long, env = "LIVEVOTE_BIN_DIR")]
    pub bin_dir: PathBuf,
    /// The local SQS endpoint binary (livevote-sqs-local, built by scripts/services.sh sqs).
    #[arg(long, env = "LIVEVOTE_FAULTS_SQS_BIN")]
    pub sqs_bin: PathBuf,
    /// PostgreSQL server binaries (initdb, postgres); unset: the newest under /usr/lib/postgresql.
    #[arg(long, env = "LIVEVOTE_FAULTS_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Where the servers, stacks, logs and reports go (removed after a fully passing run).
    #[arg(long, env = "LIVEVOTE_FAULTS_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Vote attempts per second of each case's load.
    #[arg(long, default_value_t = 150.0)]
    pub rate: f64,
    /// Seconds of voting of each case's load (cases with a 30 s outage add to it).
    #[arg(long, default_value_t = 20.0)]
    pub duration_secs: f64,
}

/// The suite's servers and settings, shared by the cases.
#[derive(Debug)]
pub struct Harness {
    pub bin_dir: PathBuf,
    pub work: PathBuf,
    pub rate: f64,
    pub duration_secs: f64,
    pub pg: Postgres,
    pub redis: Redis,
    pub sqs: Sqs,
    tokens: PathBuf,
}

/// One case's stack: its folder, ports, database, key prefix and queue.
#[derive(Debug)]
pub struct Stack {
    pub name: String,
    pub dir: PathBuf,
    pub results_url: String,
    pub ingestion_url: String,
    pub queue: String,
    issuer_port: u16,
    ports: [u16; 4],
    env: Vec<(String, String)>,
}

/// What a `livevote-load` run reported.
#[derive(Debug)]
pub struct LoadOutcome {
    pub report: Value,
    pub path: PathBuf,
}

impl LoadOutcome {
    pub fn clean(&self) -> bool {
        self.report["verdict"]["clean"] == true
    }

    /// The checks that failed, by name.
    pub fn failed_checks(&self) -> Vec<String> {
        self.report["verdict"]["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["passed"] != true)
            .map(|c| c["name"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// The detail line of the check whose name starts with `prefix`.
    pub fn detail(&self, prefix: &str) -> String {
        self.report["verdict"]["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .and_then(|c| c["detail"].as_str())
            .unwrap_or("")
            .to_owned()
    }

    /// Attempts answered with `answer` ("202", "503 SERVICE_UNAVAILABLE", "no answer", ...).
    pub fn answered(&self, answer: &str) -> u64 {
        self.report["outcomes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["answer"].as_str().is_some_and(|a| a.starts_with(answer)))
            .filter_map(|o| o["count"].as_u64())
            .sum()
    }

    pub fn accepted(&self) -> u64 {
        self.report["accepted"].as_u64().unwrap_or(0)
    }

    pub fn election(&self) -> String {
        self.report["election"].as_str().unwrap_or("").to_owned()
    }

    /// One line: accepted, shed, unanswered, and the verdict.
    pub fn summary(&self) -> String {
        let verdict = if self.clean() {
            "verdict clean".to_owned()
        } else {
            format!("verdict FAILED: {}", self.failed_checks().join("; "))
        };
        format!(
            "{} accepted, {} shed (503/429), {} unanswered; {verdict}",
            self.accepted(),
            self.answered("503") + self.answered("429"),
            self.answered("no answer")
        )
    }
}

impl Harness {
    fn livevote(&self, program: &str) -> PathBuf {
        self.bin_dir.join(program)
    }

    /// A stack for case `name`; `queue` is (visibility timeout s, receives before the DLQ).
    pub fn stack(&self, name: &str, queue: (u64, u32)) -> anyhow::Result<Stack> {
        // PostgreSQL keeps 63 bytes of a database name: a long case name is
        // cut, and a hash of the whole name keeps the cut names apart.
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(36)
            .collect();
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(name, &mut hasher);
        let hash = std::hash::Hasher::finish(&hasher) as u32;
        let id = format!("{slug}_{hash:08x}_{}", std::process::id());
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir)?;
        let ports = servers::free_ports::<4>()?;
        let [ingestion, _, results, issuer] = ports;
        let database = format!("faults_{id}").to_lowercase();
        let queue_name = format!("faults-{}", id.replace('_', "-"));
        let (ingestion_url, results_url) = (
            format!("http://127.0.0.1:{ingestion}"),
            format!("http://127.0.0.1:{results}"),
        );
        let env: Vec<(String, String)> = [
            ("LIVEVOTE_STACK_DIR", dir.display().to_string()),
            ("LIVEVOTE_BIN_DIR", self.bin_dir.display().to_string()),
            ("LIVEVOTE_STACK_POSTGRES", self.pg.url()),
            ("LIVEVOTE_STACK_DATABASE", database.clone()),
            ("LIVEVOTE_DATABASE_URL", format!("{}/{database}", self.pg.url())),
            ("LIVEVOTE_REDIS_URL", self.redis.url()),
            ("LIVEVOTE_REDIS_PREFIX", format!("lvfault-{id}")),
            ("LIVEVOTE_SQS_ENDPOINT", self.sqs.url()),
            ("LIVEVOTE_QUEUE_NAME", queue_name.clone()),
            ("LIVEVOTE_QUEUE_VISIBILITY_SECS", queue.0.to_string()),
            ("LIVEVOTE_QUEUE_MAX_RECEIVES", queue.1.to_string()),
            ("LIVEVOTE_INGESTION_URL", ingestion_url.clone()),
            ("LIVEVOTE_RESULTS_URL", results_url.clone()),
            ("LIVEVOTE_ISSUER_URL", format!("http://127.0.0.1:{issuer}")),
            ("LIVEVOTE_LOAD_TOKEN_CACHE", self.tokens.display().to_string()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Stack {
            name: name.to_owned(),
            dir,
            results_url,
            ingestion_url,
            queue: queue_name,
            issuer_port: issuer,
            ports,
            env,
        })
    }
}

impl Stack {
    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs a `livevote` subcommand to the end, its output appended to `<dir>/livevote.log`.
    pub async fn livevote(&self, h: &Harness, args: &[&str], extra: &[(&str, &str)]) -> anyhow::Result<()> {
        let log = self.dir.join("livevote.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let start = out.metadata()?.len() as usize;
        let status = self
            .command(&h.livevote("livevote"))
            .args(args)
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .await
            .context("running livevote")?;
        if !status.success() {
            // The error line of this run (`livevote: ...`), not the service log it quotes.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let ours = text.get(start..).unwrap_or("");
            let error = ours
                .lines()
                .find(|l| l.starts_with("livevote:") || l.starts_with("Error"))
                .unwrap_or_else(|| ours.lines().last().unwrap_or(""));
            bail!("livevote {} failed: {error}", args.join(" "));
        }
        Ok(())
    }

    /// `livevote stack up`: starts whatever of the stack is not running; the
    /// processes it starts get `extra` in their environment (failpoints, skew).
    pub async fn up(&self, h: &Harness, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        self.up_with(h, extra, &[]).await
    }

    /// [`Stack::up`] with more `livevote stack up` flags.
    pub async fn up_with(&self, h: &Harness, extra: &[(&str, &str)], flags: &[&str]) -> anyhow::Result<()> {
        let [ingestion, processor, results, issuer] = self.ports.map(|p| p.to_string());
        let mut args = vec![
            "stack",
            "up",
            "--ingestion-port",
            &ingestion,
            "--processor-port",
            &processor,
            "--results-port",
            &results,
            "--issuer-port",
            &issuer,
        ];
        args.extend_from_slice(flags);
        self.livevote(h, &args, extra).await
    }

    pub async fn down(&self, h: &Harness) -> anyhow::Result<()> {
        self.livevote(h, &["stack", "down"], &[]).await
    }

    /// The pid of a stack process (ingestion, processor, results, issuer).
    pub fn pid(&self, service: &str) -> anyhow::Result<u32> {
        let path = self.dir.join(format!("{service}.pid"));
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds no pid", path.display()))
    }

    /// Waits until `service` has exited (a failpoint fired); false after `limit`.
    pub async fn wait_exit(&self, service: &str, limit: Duration) -> anyhow::Result<bool> {
        let pid = self.pid(service)?;
        let started = Instant::now();
        while started.elapsed() < limit {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            if state.is_none_or(|s| s.split(' ').nth(2) == Some("Z")) {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(false)
    }

    pub fn signal(&self, service: &str, signal: &str) -> anyhow::Result<()> {
        servers::signal(self.pid(service)?, signal, false)
    }

    pub fn issuer_port(&self) -> u16 {
        self.issuer_port
    }

    /// Starts `livevote-load run` at the suite's rate for `secs` (extra flags
    /// appended) and returns once its votes start (tokens signed, election
    /// open), so the cases' fault timelines count from the first vote.
    pub async fn start_load(
        &self,
        h: &Harness,
        secs: f64,
        extra: &[&str],
    ) -> anyhow::Result<tokio::process::Child> {
        let mut child = self.spawn_load(h, secs, extra)?;
        let log = self.dir.join("load.log");
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.starts_with("election ") && l.contains(" open;"))
            {
                return Ok(child);
            }
            if let Some(status) = child.try_wait()? {
                let tail: Vec<&str> = text.lines().rev().take(4).collect();
                bail!(
                    "livevote-load ended ({status}) before voting began: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            if started.elapsed() > Duration::from_secs(180) {
                bail!(
                    "livevote-load did not start voting within 180 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn_load(&self, h: &Harness, secs: f64, extra: &[&str]) -> anyhow::Result<tokio::process::Child> {
        let reports = self.dir.join("reports");
        std::fs::create_dir_all(&reports)?;
        let log = std::fs::File::create(self.dir.join("load.log"))?;
        let mut cmd = self.command(&h.livevote("livevote-load"));
        cmd.args(["run", "--scenario", "baseline", "--rate"])
            .arg(h.rate.to_string())
            .arg("--duration-secs")
            .arg(secs.to_string())
            .arg("--drain-timeout-secs")
            .arg("180")
            .arg("--report-dir")
            .arg(&reports)
            .arg("--stack-dir")
            .arg(&self.dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        cmd.spawn().context("starting livevote-load")
    }

    /// Waits for the load to end and reads its report.
    pub async fn finish_load(&self, mut child: tokio::process::Child) -> anyhow::Result<LoadOutcome> {
        let status = child.wait().await?;
        let reports = self.dir.join("reports");
        let newest = std::fs::read_dir(&reports)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
        let Some(path) = newest else {
            let text = std::fs::read_to_string(self.dir.join("load.log")).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(6).collect();
            bail!(
                "livevote-load ended ({status}) without a report: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        };
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{} is not a report", path.display()))?;
        Ok(LoadOutcome { report, path })
    }

    /// `livevote-load verify` of a finished run, after something was repaired; true when clean.
    pub async fn verify(&self, h: &Harness, load: &LoadOutcome) -> anyhow::Result<(bool, String)> {
        let out = self
            .command(&h.livevote("livevote-load"))
            .arg("verify")
            .arg("--report")
            .arg(&load.path)
            .output()
            .await?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok((out.status.success(), text))
    }
}

pub async fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    let work = cli
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("livevote-faults-{}", std::process::id())));
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let pg_bin = match &cli.pg_bin {
        Some(p) => p.clone(),
        None => Postgres::find_bin()?,
    };
    eprintln!("faults: servers and logs in {}", work.display());
    let mut pg = Postgres::init(&pg_bin, &work)?;
    pg.start(&[])?;
    let mut redis = Redis::new(&work)?;
    redis.start()?;
    let mut sqs = Sqs::new(&cli.sqs_bin, &work)?;
    sqs.start()?;
    let mut h = Harness {
        bin_dir: cli.bin_dir.canonicalize().context("LIVEVOTE_BIN_DIR")?,
        tokens: work.join("tokens.txt"),
        work: work.clone(),
        rate: cli.rate,
        duration_secs: cli.duration_secs,
        pg,
        redis,
        sqs,
    };
    let mut rows = Vec::new();
    for (case, expected) in cases::ALL {
        if !cli.only.is_empty() && !cli.only.iter().any(|only| case.contains(only.as_str())) {
            continue;
        }
        eprintln!("faults: {case} ...");
        let started = Instant::now();
        let (observed, passed) = match cases::run(&mut h, case).await {
            Ok(result) => result,
            Err(e) => (format!("ERROR: {e:#}"), false),
        };
        eprintln!(
            "faults: {case}: {} in {:.0} s: {observed}",
            if passed { "ok" } else { "FAIL" },
            started.elapsed().as_secs_f64()
        );
        rows.push(Row {
            case: (*case).to_owned(),
            expected: (*expected).to_owned(),
            observed,
            passed,
        });
    }
    println!();
    let failed = crate::table::print(&rows);
    drop(h);
    if failed == 0 && !rows.is_empty() {
        std::fs::remove_dir_all(&work).ok();
        Ok(ExitCode::SUCCESS)
    } else {
        println!("logs, stacks and reports kept in {}", work.display());
        Ok(ExitCode::FAILURE)
    }
}
