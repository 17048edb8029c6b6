//! Operator commands: elections, results watch, reconcile, the dead-letter
//! queue, migrations and the live tally rebuild.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use livevote_domain::ElectionId;
use livevote_hosting::SystemClock;
use livevote_ports::{DeadLetter, QueueInspector};
use livevote_postgres::{PgElections, PgVoteStore, StoreConfig};
use livevote_redis::{RedisConfig, RedisElectionCache, RedisStore};
use livevote_results::ResultsService;

use crate::api::{Api, ApiArgs, PolicyArgs};
use crate::view::{LiveBars, print_reconciliation, print_results};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL of the stack.
    #[arg(
        long,
        env = "LIVEVOTE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/livevote"
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// SQS endpoint; `aws` for AWS itself (from the standard AWS variables).
    #[arg(long, env = "LIVEVOTE_SQS_ENDPOINT", default_value = "http://127.0.0.1:4566")]
    pub sqs_endpoint: String,
    /// The vote queue; its dead-letter queue is `<name>-dlq`.
    #[arg(long, env = "LIVEVOTE_QUEUE_NAME", default_value = "livevote-votes")]
    pub queue_name: String,
}

impl QueueArgs {
    pub fn endpoint(&self) -> Option<&str> {
        (self.sqs_endpoint != "aws").then_some(self.sqs_endpoint.as_str())
    }

    /// The vote queue and its dead-letter queue. A local endpoint gets the
    /// static credentials local servers accept; AWS uses the standard AWS environment.
    pub async fn open(&self) -> anyhow::Result<livevote_sqs::SqsQueue> {
        let context = || {
            format!(
                "queue {} at {} (is the stack up? `livevote stack status`; LIVEVOTE_SQS_ENDPOINT / LIVEVOTE_QUEUE_NAME)",
                self.queue_name, self.sqs_endpoint
            )
        };
        match self.endpoint() {
            Some(url) => {
                let client = livevote_sqs::local_client(url);
                let queues = livevote_sqs::find_queues(&client, &self.queue_name)
                    .await
                    .with_context(context)?;
                Ok(livevote_sqs::SqsQueue::new(client, queues))
            }
            None => livevote_sqs::open_queue(None, &self.queue_name)
                .await
                .with_context(context),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ElectionsAction {
    /// Lists elections, newest first.
    List {
        /// Only this effective status (DRAFT, SCHEDULED, ACTIVE, CLOSED, CANCELLED).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Creates an election in DRAFT and prints its id.
    Create {
        #[arg(long)]
        title: String,
        /// Candidate names, comma-separated (at least two).
        #[arg(long, value_delimiter = ',')]
        candidates: Vec<String>,
        /// Minutes from now until the window ends.
        #[arg(long, default_value_t = 60)]
        minutes: i64,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Opens an election at once (lines open).
    Open {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Closes an election at once (lines closed).
    Close {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Reveals embargoed results.
    Reveal {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn elections(action: ElectionsAction) -> anyhow::Result<ExitCode> {
    match action {
        ElectionsAction::List { status, api } => {
            let api = Api::new(&api)?;
            let query = status.map(|s| format!("&status={s}")).unwrap_or_default();
            let page = api
                .results(
                    reqwest::Method::GET,
                    &format!("/api/v1/admin/elections?size=100{query}"),
                    None,
                )
                .await?
                .expect(200, "listing elections")?;
            println!(
                "{:<38} {:<10} {:<8} {:<10} {:>4}  title",
                "id", "status", "results", "policy", "cand"
            );
            for e in page["content"].as_array().map(Vec::as_slice).unwrap_or_default() {
                // An election without a policy field is `single`.
                let policy = match (e["policy"].as_str(), e["maxVotes"].as_u64()) {
                    (Some(p), Some(n)) => format!("{p} {n}"),
                    (Some(p), None) => p.to_owned(),
                    (None, _) => "single".to_owned(),
                };
                println!(
                    "{:<38} {:<10} {:<8} {:<10} {:>4}  {}",
                    e["electionId"].as_str().unwrap_or("?"),
                    e["effectiveStatus"].as_str().unwrap_or("?"),
                    e["resultsVisibility"].as_str().unwrap_or("?"),
                    policy,
                    e["candidates"].as_array().map_or(0, Vec::len),
                    e["title"].as_str().unwrap_or("?")
                );
            }
            println!("{} elections", page["totalElements"]);
        }
        ElectionsAction::Create {
            title,
            candidates,
            minutes,
            policy,
            api,
        } => {
            let api = Api::new(&api)?;
            let names: Vec<&str> = candidates.iter().map(String::as_str).collect();
            let e = api.create_election_with(&title, &names, minutes, &policy).await?;
            println!("{}", e["electionId"].as_str().unwrap_or("?"));
        }
        ElectionsAction::Open { id, api } => {
            let e = Api::new(&api)?.open(&id).await?;
            println!(
                "election {id} is {}",
                e["effectiveStatus"].as_str().unwrap_or("?")
            );
        }
        ElectionsAction::Close { id, api } => {
            let e = Api::new(&api)?.set_status(&id, "CLOSED").await?;
            println!(
                "election {id} is {}",
                e["effectiveStatus"].as_str().unwrap_or("?")
            );
        }
        ElectionsAction::Reveal { id, api } => {
            let e = Api::new(&api)?
                .results(
                    reqwest::Method::PUT,
                    &format!("/api/v1/admin/elections/{id}/visibility"),
                    Some(serde_json::json!({ "resultsVisibility": "LIVE" })),
                )
                .await?
                .expect(200, "revealing results")?;
            println!(
                "results of {id} are {}",
                e["resultsVisibility"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum ResultsAction {
    /// Live terminal bars of an election's results until they are final or Ctrl-C.
    Watch {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn results(action: ResultsAction) -> anyhow::Result<ExitCode> {
    let ResultsAction::Watch { id, api } = action;
    let api = Api::new(&api)?;
    let multi = MultiProgress::new();
    let mut doc = api.results_of(&id).await?;
    let status = multi.add(ProgressBar::new_spinner());
    let bars = LiveBars::new(&multi, &doc);
    loop {
        status.set_message(format!(
            "{} · {} · {} votes{}{}",
            doc["electionTitle"].as_str().unwrap_or("?"),
            doc["status"].as_str().unwrap_or("?"),
            doc["totalVotes"],
            if doc["final"] == true { " · FINAL" } else { "" },
            if doc["embargoed"] == true {
                " · EMBARGOED"
            } else {
                ""
            }
        ));
        status.tick();
        bars.update(&doc);
        if doc["final"] == true {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        doc = api.results_of(&id).await?;
    }
    bars.finish();
    status.finish();
    print_results(&doc);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    pub id: String,
    /// Prints the reconciliation as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

pub async fn reconcile(args: &ReconcileArgs) -> anyhow::Result<ExitCode> {
    let r = Api::new(&args.api)?.reconciliation(&args.id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_reconciliation(&r);
    }
    Ok(match r["verdict"].as_str() {
        Some("lost") => ExitCode::from(1),
        Some("pending") => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    })
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Counts the dead-lettered votes per election (looks without consuming).
    List(QueueArgs),
    /// Moves every dead-lettered message back to the vote queue, with progress.
    Replay(QueueArgs),
}

#[derive(Debug, Subcommand)]
pub enum QueuesAction {
    /// Creates `<name>` and `<name>-dlq` (or checks that they exist) at the endpoint.
    Create(QueueArgs),
}

pub async fn queues(action: QueuesAction) -> anyhow::Result<ExitCode> {
    let QueuesAction::Create(q) = action;
    let client = livevote_sqs::client(q.endpoint()).await;
    livevote_sqs::create_queues(&client, &q.queue_name, livevote_sqs::QueueSettings::default())
        .await
        .with_context(|| format!("creating queue {} at {}", q.queue_name, q.sqs_endpoint))?;
    println!(
        "queues {0} and {0}-dlq ready at {1}",
        q.queue_name, q.sqs_endpoint
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq(action: DlqAction) -> anyhow::Result<ExitCode> {
    match action {
        DlqAction::List(q) => {
            let queue = q.open().await?;
            let stats = queue.stats().await?;
            let letters = queue.peek_dead_letters().await?;
            println!(
                "vote queue {}: {} visible, {} in flight; dead-letter queue: {} messages",
                q.queue_name, stats.visible, stats.in_flight, stats.dead_letter_messages
            );
            for letter in &letters {
                println!("{}", dead_letter_line(letter));
            }
            let unseen = stats.dead_letter_messages.saturating_sub(letters.len() as u64);
            if unseen > 0 {
                println!(
                    "  {unseen} more counted by the queue but not seen now (another reader holds them; run again)"
                );
            }
        }
        DlqAction::Replay(q) => {
            let queue = q.open().await?;
            let letters = queue.peek_dead_letters().await?;
            let skipped: Vec<&DeadLetter> = letters.iter().filter(|l| l.poison.is_some()).collect();
            if !skipped.is_empty() {
                println!(
                    "skipping {} messages that cannot be processed (they stay in the dead-letter queue):",
                    skipped.len()
                );
                for letter in &skipped {
                    println!("{}", dead_letter_line(letter));
                }
            }
            let total = (letters.len() - skipped.len()) as u64;
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("replaying {bar:40.cyan/blue} {pos}/{len} messages {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let done = queue
                .replay_dead_letters(|p| {
                    bar.set_position(p.moved);
                    bar.set_message(format!("({} failed, {} skipped)", p.failed, p.skipped));
                })
                .await?;
            bar.finish();
            println!(
                "moved {} messages back to {} ({} failed, still in the DLQ; {} skipped as unprocessable, \
                 still in the DLQ)",
                done.moved, q.queue_name, done.failed, done.skipped
            );
            if done.failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `dlq list`: the message, its election(s) if it names any,
/// why it was dead-lettered, and its first bytes.
pub fn dead_letter_line(letter: &DeadLetter) -> String {
    let whose = if letter.votes_per_election.is_empty() {
        "unattributed".to_owned()
    } else {
        letter
            .votes_per_election
            .iter()
            .map(|(e, n)| format!("election {e} ({n} vote{})", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reason = match &letter.poison {
        Some(why) => why.to_string(),
        None => format!(
            "well formed, received {} times and never stored (an unknown election or candidate, or a store that kept failing: see the processor's log)",
            letter.receive_count
        ),
    };
    format!(
        "  {}  {whose}\n      reason: {reason}\n      first bytes: {:?}",
        letter.message_id, letter.head
    )
}

pub async fn migrate(args: &DatabaseArgs) -> anyhow::Result<ExitCode> {
    let pool = livevote_postgres::connect_lazy(&args.database_url, 2).context("LIVEVOTE_DATABASE_URL")?;
    let applied = livevote_postgres::migrate(&pool).await.with_context(|| {
        format!(
            "migrating {} (is PostgreSQL up? `livevote stack status`)",
            redact(&args.database_url)
        )
    })?;
    if applied.is_empty() {
        println!("schema up to date");
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, Subcommand)]
pub enum TalliesAction {
    /// Rebuilds an election's live tallies in Redis from PostgreSQL (after Redis lost its data).
    Rebuild {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        queue: QueueArgs,
        /// Redis of the stack.
        #[arg(long, env = "LIVEVOTE_REDIS_URL", default_value = "redis://127.0.0.1:6379/0")]
        redis_url: String,
        /// The services' Redis key prefix.
        #[arg(long, env = "LIVEVOTE_REDIS_PREFIX", default_value = "lv")]
        redis_prefix: String,
    },
}

pub async fn tallies(action: TalliesAction) -> anyhow::Result<ExitCode> {
    let TalliesAction::Rebuild {
        id,
        database,
        queue,
        redis_url,
        redis_prefix,
    } = action;
    let election = ElectionId::parse(&id).map_err(|e| anyhow::anyhow!("{id} is not an election id: {e}"))?;
    let pool = livevote_postgres::connect_lazy(&database.database_url, 2).context("LIVEVOTE_DATABASE_URL")?;
    let redis = RedisStore::connect(RedisConfig {
        url: redis_url.clone(),
        key_prefix: redis_prefix,
        ..RedisConfig::default()
    })
    .await
    .with_context(|| format!("Redis at {redis_url} (LIVEVOTE_REDIS_URL)"))?;
    let queue = queue.open().await?;
    let service = ResultsService::new(
        RedisElectionCache::new(redis.clone(), PgElections::new(pool.clone())),
        redis.clone(),
        PgVoteStore::new(pool, StoreConfig::default()),
        queue,
        SystemClock,
    );
    let rebuilt = service.rebuild_live_tallies(election).await?;
    println!(
        "live tallies of {id} rebuilt from PostgreSQL: {} votes",
        rebuilt.tally.total()
    );
    if !rebuilt.queue_was_drained {
        println!(
            "note: votes were still queued, so the live tally may be short until they are stored \
             (reconciliation shows that as a surplus, never as a loss); run the rebuild again once drained"
        );
    }
    redis.close().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://postgres@h/db"), "postgres://postgres@h/db");
    }
}
