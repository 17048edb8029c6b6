//! `livevote-load`: drives the real HTTP API of a running stack with an
//! open-loop schedule, then proves after the queue drains that every vote
//! answered 202 is stored exactly once, as cast (see [`verdict`]).

pub mod drive;
pub mod plan;
pub mod report;
pub mod stats;
pub mod tokens;
pub mod verdict;
pub mod visibility;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use livevote_cli::api::{Api, ApiArgs};
use livevote_cli::ops::DatabaseArgs;
use livevote_redis::{RedisConfig, RedisStore};

use plan::{Mix, RateShape};

#[derive(Debug, Parser)]
#[command(
    name = "livevote-load",
    version,
    about = "Load generator for livevote with an exact loss verdict"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a scenario against the running stack, waits for the queue to drain,
    /// then checks every accepted vote in PostgreSQL (exit 1 if anything is off).
    Run(Box<RunArgs>),
    /// Checks a finished run again from its report and ledger (exit 1 if anything is off).
    Verify(VerifyArgs),
    /// Writes viewer tokens, one per line (for the k6 scripts in loadtests/k6).
    Tokens(TokensArgs),
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    /// How many viewers.
    #[arg(long)]
    pub count: usize,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub issuer: livevote_cli::issuer::IssuerArgs,
}

/// Named presets; every figure can be overridden by its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// A comfortable steady rate: 200 votes/s for 30 s.
    Baseline,
    /// The highest rate this machine sustained with p99 < 150 ms (README): 2,500 votes/s for 60 s.
    Peak,
    /// From 0 to the peak rate in 5 s, then held for the rest of 30 s.
    Spike,
    /// A long steady run (300 votes/s for 30 min) sampling each service's memory every 30 s.
    Soak,
    /// Voting at 300 votes/s for 60 s while 200 pollers and 50 SSE clients read the results.
    ResultsReaders,
}

impl Scenario {
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::Peak => "peak",
            Scenario::Spike => "spike",
            Scenario::Soak => "soak",
            Scenario::ResultsReaders => "results-readers",
        }
    }

    /// (rate, duration s, ramp s, readers, SSE clients, memory sample period s)
    fn preset(self) -> (f64, f64, f64, usize, usize, u64) {
        match self {
            Scenario::Baseline => (200.0, 30.0, 0.0, 0, 0, 5),
            Scenario::Peak => (6000.0, 60.0, 0.0, 0, 0, 5),
            Scenario::Spike => (2500.0, 30.0, 5.0, 0, 0, 5),
            Scenario::Soak => (300.0, 1800.0, 0.0, 10, 5, 30),
            Scenario::ResultsReaders => (300.0, 60.0, 0.0, 200, 50, 5),
        }
    }
}

#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Redis of the stack (the live tallies are compared with PostgreSQL).
    #[arg(long, env = "LIVEVOTE_REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
    pub redis_url: String,
    /// The services' Redis key prefix.
    #[arg(long, env = "LIVEVOTE_REDIS_PREFIX", default_value = "lv")]
    pub redis_prefix: String,
    /// How long to wait for the queue to drain before the verdict, seconds.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout_secs: u64,
}

impl Target {
    pub async fn connect(&self) -> anyhow::Result<(Api, sqlx::PgPool, RedisStore)> {
        let api = Api::new(&self.api)?;
        let pool = livevote_postgres::connect_lazy(&self.database.database_url, 4)
            .context("LIVEVOTE_DATABASE_URL")?;
        let redis = RedisStore::connect(RedisConfig {
            url: self.redis_url.clone(),
            key_prefix: self.redis_prefix.clone(),
            pool_size: 1,
            ..RedisConfig::default()
        })
        .await
        .with_context(|| format!("Redis at {} (LIVEVOTE_REDIS_URL)", self.redis_url))?;
        Ok((api, pool, redis))
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The preset; the flags below override its figures.
    #[arg(long, value_enum, default_value = "baseline")]
    pub scenario: Scenario,
    /// Vote attempts per second at full rate.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Length of the voting phase, seconds.
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Linear ramp from 0 to the rate, seconds (spike).
    #[arg(long)]
    pub ramp_secs: Option<f64>,
    /// Attempts that are a viewer's second try, percent.
    #[arg(long, default_value_t = 5)]
    pub repeat_percent: u32,
    /// Attempts for an election that has closed, percent.
    #[arg(long, default_value_t = 1)]
    pub closed_percent: u32,
    /// Attempts for an election that does not exist, percent.
    #[arg(long, default_value_t = 1)]
    pub unknown_percent: u32,
    /// Clients polling the results while the votes come in.
    #[arg(long)]
    pub readers: Option<usize>,
    /// How often each poller asks, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
    /// SSE clients following the results while the votes come in.
    #[arg(long)]
    pub sse_clients: Option<usize>,
    /// How often each service's memory is sampled, seconds.
    #[arg(long)]
    pub sample_secs: Option<u64>,
    /// Closes the election this many seconds into the voting while attempts keep
    /// coming (the close boundary): attempts after it are refused ELECTION_CLOSED,
    /// and no stored vote may be stamped at or after the end.
    #[arg(long)]
    pub close_after_secs: Option<f64>,
    /// The election's vote policy: `single` (repeats get 409 DUPLICATE_VOTE),
    /// `multi` (a viewer's first --max-votes attempts get 202, the rest 409
    /// VOTE_LIMIT_REACHED) or `changeable` (every attempt 202; the newest
    /// counts). Raise --repeat-percent to exercise the limit or the changes.
    #[arg(long, value_parser = ["single", "multi", "changeable"], default_value = "single")]
    pub policy: String,
    /// With `--policy multi`: votes per viewer (1 to 100).
    #[arg(long)]
    pub max_votes: Option<u32>,
    /// Requests in flight at most; an attempt due while at the limit is not sent and
    /// is reported (the generator, not the server, would then be the bottleneck).
    #[arg(long, default_value_t = 20_000)]
    pub max_in_flight: usize,
    /// Where the JSON report and the ledger of accepted votes are written.
    #[arg(long, default_value = "loadtests/reports")]
    pub report_dir: PathBuf,
    /// Signed viewer tokens are kept here between runs (RS256 signing is slow); `none` disables.
    #[arg(
        long,
        env = "LIVEVOTE_LOAD_TOKEN_CACHE",
        default_value = ".livevote/load-tokens.txt"
    )]
    pub token_cache: PathBuf,
    /// The local stack's folder: its record of the services' pids is used to sample their memory.
    #[arg(long, env = "LIVEVOTE_STACK_DIR", default_value = ".livevote")]
    pub stack_dir: PathBuf,
    #[command(flatten)]
    pub target: Target,
}

/// A run's resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scenario: Scenario,
    pub shape: RateShape,
    pub mix: Mix,
    pub readers: usize,
    pub poll_ms: u64,
    pub sse_clients: usize,
    pub sample_secs: u64,
    pub max_in_flight: usize,
    pub close_after: Option<std::time::Duration>,
    pub policy: verdict::RunPolicy,
}

impl RunArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let (rate, duration, ramp, readers, sse, sample) = self.scenario.preset();
        let duration_secs = self.duration_secs.unwrap_or(duration);
        let shape = RateShape {
            rate: self.rate.unwrap_or(rate),
            duration_secs,
            // A preset's ramp never outlasts a shortened run.
            ramp_secs: self.ramp_secs.unwrap_or(ramp.min(duration_secs)),
        };
        anyhow::ensure!(
            shape.rate.is_finite() && shape.rate > 0.0,
            "--rate must be a positive number"
        );
        anyhow::ensure!(
            shape.duration_secs.is_finite() && shape.duration_secs > 0.0,
            "--duration-secs must be positive"
        );
        anyhow::ensure!(
            shape.ramp_secs.is_finite() && (0.0..=shape.duration_secs).contains(&shape.ramp_secs),
            "--ramp-secs must be between 0 and the duration"
        );
        let mix = Mix {
            repeat: self.repeat_percent,
            closed: self.closed_percent,
            unknown: self.unknown_percent,
        };
        anyhow::ensure!(
            mix.repeat + mix.closed + mix.unknown < 100,
            "the repeat, closed and unknown shares must leave room for first votes"
        );
        anyhow::ensure!(
            shape.total() > 0,
            "the run schedules no attempt: raise --rate or --duration-secs"
        );
        anyhow::ensure!(self.max_in_flight > 0, "--max-in-flight must be at least 1");
        let close_after = match self.close_after_secs {
            None => None,
            Some(secs) if secs.is_finite() && secs > 0.0 && secs < shape.duration_secs => {
                Some(std::time::Duration::from_secs_f64(secs))
            }
            Some(_) => anyhow::bail!("--close-after-secs must be within the run (0 < s < --duration-secs)"),
        };
        let policy = match (self.policy.as_str(), self.max_votes) {
            ("single", None) => verdict::RunPolicy::Single,
            ("changeable", None) => verdict::RunPolicy::Changeable,
            ("multi", Some(max_votes)) if (1..=100).contains(&max_votes) => {
                verdict::RunPolicy::Multi { max_votes }
            }
            ("multi", _) => anyhow::bail!("--policy multi needs --max-votes between 1 and 100"),
            (_, _) => anyhow::bail!("--max-votes applies only to --policy multi"),
        };
        Ok(Settings {
            policy,
            scenario: self.scenario,
            shape,
            mix,
            readers: self.readers.unwrap_or(readers),
            poll_ms: self.poll_ms.max(10),
            sse_clients: self.sse_clients.unwrap_or(sse),
            sample_secs: self.sample_secs.unwrap_or(sample).max(1),
            max_in_flight: self.max_in_flight,
            close_after,
        })
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The JSON report of the run.
    #[arg(long)]
    pub report: PathBuf,
    #[command(flatten)]
    pub target: Target,
}

pub async fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => drive::run(&args).await,
        Command::Verify(args) => verdict::verify_report(&args).await,
        Command::Tokens(args) => {
            let issuer = args.issuer.issuer();
            let (count, cache) = (args.count, PathBuf::from("none"));
            let tokens =
                tokio::task::spawn_blocking(move || tokens::viewer_tokens(&issuer, count, &cache)).await??;
            std::fs::write(&args.out, tokens.join("\n") + "\n")
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!(
                "{count} viewer tokens (load|viewer-0000000 ...) in {}",
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunArgs {
        let mut all = vec!["livevote-load", "run"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Run(r) => *r,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn the_policy_flags_are_checked() {
        use verdict::RunPolicy;
        assert_eq!(parse(&[]).settings().unwrap().policy, RunPolicy::Single);
        assert_eq!(
            parse(&["--policy", "multi", "--max-votes", "5"])
                .settings()
                .unwrap()
                .policy,
            RunPolicy::Multi { max_votes: 5 }
        );
        assert_eq!(
            parse(&["--policy", "changeable"]).settings().unwrap().policy,
            RunPolicy::Changeable
        );
        for bad in [
            &["--policy", "multi"][..],
            &["--policy", "multi", "--max-votes", "0"],
            &["--policy", "multi", "--max-votes", "101"],
            &["--max-votes", "3"],
        ] {
            let err = parse(bad).settings().unwrap_err().to_string();
            assert!(err.contains("--max-votes"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn presets_scale_with_flags() {
        let peak = parse(&["--scenario", "peak"]).settings().unwrap();
        assert_eq!(peak.shape.rate, 6000.0);
        let short = parse(&["--scenario", "spike", "--rate", "100", "--duration-secs", "4"])
            .settings()
            .unwrap();
        assert_eq!(
            (short.shape.rate, short.shape.duration_secs, short.shape.ramp_secs),
            (100.0, 4.0, 4.0)
        );
        let readers = parse(&["--scenario", "results-readers", "--readers", "3"])
            .settings()
            .unwrap();
        assert_eq!((readers.readers, readers.sse_clients), (3, 50));
    }

    #[test]
    fn impossible_settings_are_refused_with_the_flag_named() {
        let e = parse(&["--rate", "0"]).settings().unwrap_err().to_string();
        assert!(e.contains("--rate"), "{e}");
        let e = parse(&["--repeat-percent", "60", "--closed-percent", "40"])
            .settings()
            .unwrap_err()
            .to_string();
        assert!(e.contains("shares"), "{e}");
        let e = parse(&["--ramp-secs", "90"]).settings().unwrap_err().to_string();
        assert!(e.contains("--ramp-secs"), "{e}");
    }
}
