//! `livevote-hostile`: hostile input against a running stack. Every case
//! states the status and code it must get, and after every case nothing may
//! have changed: no claim in Redis for the suite's viewers, no live tally,
//! no vote queued (`livevote_published_votes_total`), no row in PostgreSQL.
//! Prints one table (case, expected, observed, pass/fail); exit 1 on any failure.

mod cases;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use livevote_auth0::DevIssuer;
use livevote_cli::api::Api;
use livevote_domain::{ElectionId, VoterId};
use livevote_ports::{LiveTallies, VoteDedup};
use livevote_redis::RedisStore;

use crate::load::Target;
use crate::table::Row;

#[derive(Debug, Parser)]
#[command(
    name = "livevote-hostile",
    version,
    about = "Hostile input against a running livevote stack: every case refused, nothing changed"
)]
pub struct Cli {
    /// Run only the cases whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

/// What the cases share: where to send, how to sign, what must stay untouched.
pub struct Suite {
    pub api: Api,
    pub issuer: DevIssuer,
    pub pool: sqlx::PgPool,
    pub redis: RedisStore,
    /// An ACTIVE election and its candidates; a CLOSED one and its candidates.
    pub open: (String, Vec<String>),
    pub closed: (String, Vec<String>),
    /// The viewers the cases vote as (none of them may ever get a claim).
    pub voters: Vec<String>,
    pub rows: Vec<Row>,
    published_before: f64,
    /// What the stores held after the previous case (empty while untouched).
    state: Vec<String>,
    /// Viewers handed out so far (a fresh one per case: the per-viewer limit stays out of the way).
    next_viewer: usize,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("open", &self.open.0)
            .finish_non_exhaustive()
    }
}

impl Suite {
    /// A valid token of hostile viewer `i`.
    pub fn viewer_token(&self, i: usize) -> String {
        self.issuer
            .token(&livevote_auth0::DevTokenClaims::viewer(self.voter(i)))
    }

    /// A token of a viewer no earlier case used.
    pub fn fresh_token(&mut self) -> String {
        let i = self.next_viewer % self.voters.len();
        self.next_viewer += 1;
        self.viewer_token(i)
    }

    pub fn voter(&self, i: usize) -> String {
        format!("hostile|viewer-{i:04}")
    }

    /// A ballot for the open election.
    pub fn ballot(&self) -> String {
        format!(
            r#"{{"electionId":"{}","candidateId":"{}"}}"#,
            self.open.0, self.open.1[0]
        )
    }

    pub fn votes_url(&self) -> String {
        format!("{}/api/v1/votes", self.api.ingestion_url)
    }

    /// Sum of a counter on the ingestion service's /metrics.
    async fn counter(&self, name: &str) -> anyhow::Result<f64> {
        let text = self
            .api
            .http
            .get(format!("{}/metrics", self.api.ingestion_url))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// What the stores hold for the suite: claims of its viewers, live
    /// tallies, votes queued since it began, rows stored (empty: untouched).
    pub async fn changes(&self) -> anyhow::Result<Vec<String>> {
        let mut changed = Vec::new();
        for (election, _) in [&self.open, &self.closed] {
            let id = ElectionId::parse(election).map_err(|e| anyhow::anyhow!("{e}"))?;
            for v in &self.voters {
                let voter = VoterId::parse(v).map_err(|e| anyhow::anyhow!("{e}"))?;
                if self.redis.lookup(id, &voter).await?.is_some() {
                    changed.push(format!("Redis claim for {v} in {election}"));
                }
            }
            let live: u64 = self
                .redis
                .accepted_counts(id)
                .await?
                .iter()
                .map(|c| c.votes)
                .sum();
            if live > 0 {
                changed.push(format!("live tally {live} in {election}"));
            }
            let uuid: uuid::Uuid = election.parse()?;
            let rows: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM votes WHERE election_id = $1) + \
                 (SELECT count(*) FROM vote_conflicts WHERE election_id = $1)",
            )
            .bind(uuid)
            .fetch_one(&self.pool)
            .await?;
            if rows > 0 {
                changed.push(format!("{rows} rows in {election}"));
            }
        }
        let published = self.counter("livevote_published_votes_total").await?;
        if published != self.published_before {
            changed.push(format!("{} votes queued", published - self.published_before));
        }
        Ok(changed)
    }

    /// Records a case: `observed` must equal `expected`, and nothing may have
    /// changed since the previous case.
    pub async fn record(&mut self, case: &str, expected: &str, observed: String) {
        let now = match self.changes().await {
            Ok(c) => c,
            Err(e) => vec![format!("could not check the stores: {e:#}")],
        };
        let changes: Vec<String> = now.iter().filter(|c| !self.state.contains(c)).cloned().collect();
        self.state = now;
        let mut passed = observed == expected;
        let mut observed = observed;
        if !changes.is_empty() {
            passed = false;
            observed = format!("{observed}; CHANGED: {}", changes.join(", "));
        }
        self.rows.push(Row {
            case: case.to_owned(),
            expected: expected.to_owned(),
            observed,
            passed,
        });
    }
}

pub async fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    let (api, pool, redis) = cli.target.connect().await?;
    let issuer = cli.target.api.issuer.issuer();
    let stamp = chrono::Utc::now().format("%H:%M:%S");
    let names = ["Ada", "Grace"];
    let open = api
        .create_election_ids(&format!("hostile {stamp}"), &names, 60)
        .await?;
    let closed = api
        .create_election_ids(&format!("hostile {stamp} (closed)"), &names, 60)
        .await?;
    api.open(&open.0).await?;
    api.open(&closed.0).await?;
    api.set_status(&closed.0, "CLOSED").await?;
    // Ingestion sees the status through its election cache; let a close reach it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut suite = Suite {
        voters: (0..cases::VIEWERS)
            .map(|i| format!("hostile|viewer-{i:04}"))
            .collect(),
        api,
        issuer,
        pool,
        redis,
        open,
        closed,
        rows: Vec::new(),
        published_before: 0.0,
        state: Vec::new(),
        next_viewer: 0,
    };
    suite.published_before = suite.counter("livevote_published_votes_total").await?;
    cases::run_all(&mut suite, cli.only.as_deref()).await?;

    let failed = crate::table::print(&suite.rows);
    println!("(election {}, closed {})", suite.open.0, suite.closed.0);
    suite.redis.close().await;
    Ok(if failed == 0 && !suite.rows.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
