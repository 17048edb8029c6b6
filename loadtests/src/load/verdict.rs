//! The exact verdict of a run, taken after the queue drained, from
//! PostgreSQL (the record), Redis (the live tallies) and the reconciliation
//! endpoint, against the client's own ledger of votes answered 202:
//!
//! 1. every vote id answered 202 is stored exactly once, for the viewer and
//!    the candidate the client sent;
//! 2. no viewer has more rows than the election's policy gives (one under
//!    `single`, `maxVotes` under `multi`; every change is a row under `changeable`);
//! 3. no row exists that the client was never told about (unless its viewer's
//!    request went unanswered: then the server may rightly have taken it);
//! 4. persisted tallies = count(votes) = the client's count of 202s, per
//!    candidate; under `changeable`, persisted tallies = the current votes =
//!    each viewer's 202 with the highest vote number;
//! 5. the live tallies equal the persisted ones, per candidate;
//! 6. the reconciliation endpoint says balanced.
//!
//! Any miss fails the run and names the vote ids (or viewers) concerned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use livevote_cli::api::Api;
use livevote_domain::ElectionId;
use livevote_ports::LiveTallies;
use livevote_redis::RedisStore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use super::VerifyArgs;

/// A vote answered 202, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerVote {
    pub vote_id: String,
    pub voter: String,
    pub candidate_id: String,
    /// The 202's `voteNumber` (`multi` and `changeable` elections).
    pub vote_number: Option<u32>,
}

/// The vote policy of the election under test, as the verdict needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "policy")]
pub enum RunPolicy {
    #[default]
    Single,
    Multi {
        #[serde(rename = "maxVotes")]
        max_votes: u32,
    },
    Changeable,
}

impl RunPolicy {
    /// The most rows one viewer may have (`None`: any number of changes).
    pub fn rows_per_viewer(self) -> Option<usize> {
        match self {
            RunPolicy::Single => Some(1),
            RunPolicy::Multi { max_votes } => Some(max_votes as usize),
            RunPolicy::Changeable => None,
        }
    }

    pub fn label(self) -> String {
        match self {
            RunPolicy::Single => "single".into(),
            RunPolicy::Multi { max_votes } => format!("multi (up to {max_votes})"),
            RunPolicy::Changeable => "changeable".into(),
        }
    }
}

/// What the client knows: the votes answered 202, and the viewers whose
/// request for the election under test got no answer at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub accepted: Vec<LedgerVote>,
    pub unanswered_voters: Vec<String>,
}

impl Ledger {
    /// `vote_id,voter,candidate_id,vote_number` per accepted vote (the number
    /// empty for a `single` election); unanswered viewers as `,voter,,`.
    pub fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = String::from("vote_id,voter,candidate_id,vote_number\n");
        for v in &self.accepted {
            let number = v.vote_number.map(|n| n.to_string()).unwrap_or_default();
            text.push_str(&format!(
                "{},{},{},{number}\n",
                v.vote_id, v.voter, v.candidate_id
            ));
        }
        for voter in &self.unanswered_voters {
            text.push_str(&format!(",{voter},,\n"));
        }
        std::fs::write(path, text).with_context(|| format!("writing the ledger {}", path.display()))
    }

    pub fn read_csv(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the ledger {}", path.display()))?;
        let mut ledger = Ledger::default();
        for (n, line) in text.lines().enumerate().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            // Ledgers written before vote policies have three columns.
            let (vote_id, voter, candidate_id, number) = match fields[..] {
                [vote_id, voter, candidate_id] => (vote_id, voter, candidate_id, ""),
                [vote_id, voter, candidate_id, number] => (vote_id, voter, candidate_id, number),
                _ => bail!(
                    "{}:{}: expected vote_id,voter,candidate_id,vote_number",
                    path.display(),
                    n + 1
                ),
            };
            let vote_number = if number.is_empty() {
                None
            } else {
                Some(
                    number
                        .parse()
                        .with_context(|| format!("{}:{}: vote_number", path.display(), n + 1))?,
                )
            };
            if vote_id.is_empty() {
                ledger.unanswered_voters.push(voter.to_owned());
            } else {
                ledger.accepted.push(LedgerVote {
                    vote_id: vote_id.to_owned(),
                    voter: voter.to_owned(),
                    candidate_id: candidate_id.to_owned(),
                    vote_number,
                });
            }
        }
        Ok(ledger)
    }
}

/// One check of the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
    /// The vote ids (or viewers, or candidates) that fail it.
    pub ids: Vec<String>,
}

/// All checks; clean when every one passed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Verdict {
    pub clean: bool,
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn push(&mut self, check: Check) {
        self.clean &= check.passed;
        self.checks.push(check);
    }

    /// One line per check, with at most 20 ids each.
    pub fn text(&self) -> String {
        let mut out = format!("verdict: {}\n", if self.clean { "CLEAN" } else { "FAILED" });
        for c in &self.checks {
            out.push_str(&format!(
                "  [{}] {}: {}\n",
                if c.passed { "ok" } else { "FAIL" },
                c.name,
                c.detail
            ));
            for id in c.ids.iter().take(20) {
                out.push_str(&format!("         {id}\n"));
            }
            if c.ids.len() > 20 {
                out.push_str(&format!(
                    "         ... and {} more (see the JSON report)\n",
                    c.ids.len() - 20
                ));
            }
        }
        out
    }
}

/// Polls the reconciliation until nothing is in flight any more; returns its last answer.
pub async fn wait_for_drain(api: &Api, election: &str, timeout: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut told = Instant::now();
    loop {
        let r = api.reconciliation(election).await?;
        if r["verdict"] != "pending" {
            if terminal {
                eprintln!();
            }
            return Ok(r);
        }
        if started.elapsed() > timeout {
            bail!(
                "the queue did not drain within {} s ({} messages still in flight): is the processor running?",
                timeout.as_secs(),
                r["inFlight"]
            );
        }
        if terminal {
            eprint!(
                "\rdraining: {} votes accepted but not yet stored   ",
                r["inFlight"]
            );
        } else if told.elapsed() >= Duration::from_secs(5) {
            eprintln!("draining: {} votes accepted but not yet stored", r["inFlight"]);
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

type Row3 = (String, String, String);

/// Takes the verdict of `election` against `ledger`.
pub async fn check(
    api: &Api,
    pool: &sqlx::PgPool,
    redis: &RedisStore,
    election: &str,
    ledger: &Ledger,
    policy: RunPolicy,
) -> anyhow::Result<Verdict> {
    let id = ElectionId::parse(election).map_err(|e| anyhow::anyhow!("{election}: {e}"))?;
    let uuid: uuid::Uuid = election.parse().context("the election id is not a UUID")?;
    let rows: Vec<Row3> =
        sqlx::query("SELECT vote_id::text, voter_id, candidate_id::text FROM votes WHERE election_id = $1")
            .bind(uuid)
            .fetch_all(pool)
            .await
            .context("reading the votes from PostgreSQL")?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    let shards: Vec<(String, i64)> = sqlx::query(
        "SELECT candidate_id::text, sum(votes)::bigint FROM tally_shards WHERE election_id = $1 GROUP BY candidate_id",
    )
    .bind(uuid)
    .fetch_all(pool)
    .await
    .context("reading the tally shards from PostgreSQL")?
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    // A viewer's second vote the unique constraint dropped (after Redis lost their claim).
    let dropped: Vec<Row3> = sqlx::query(
        "SELECT vote_id::text, voter_id, candidate_id::text FROM vote_conflicts WHERE election_id = $1",
    )
    .bind(uuid)
    .fetch_all(pool)
    .await
    .context("reading the vote conflicts from PostgreSQL")?
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    // Stored votes stamped at or after the election's end (its close watermark).
    let late: Vec<String> = sqlx::query(
        "SELECT v.vote_id::text || ' accepted ' || v.accepted_at::text || ', end ' || e.ends_at::text \
         FROM votes v JOIN elections e ON e.election_id = v.election_id \
         WHERE v.election_id = $1 AND v.accepted_at >= e.ends_at",
    )
    .bind(uuid)
    .fetch_all(pool)
    .await
    .context("reading late votes from PostgreSQL")?
    .into_iter()
    .map(|r| r.get(0))
    .collect();
    // `changeable`: each viewer's current vote.
    let current: Vec<Row3> = sqlx::query(
        "SELECT vote_id::text, voter_id, candidate_id::text FROM current_votes WHERE election_id = $1",
    )
    .bind(uuid)
    .fetch_all(pool)
    .await
    .context("reading the current votes from PostgreSQL")?
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let live = redis
        .accepted_counts(id)
        .await
        .context("reading the live tallies from Redis")?;
    let live: BTreeMap<String, u64> = live
        .into_iter()
        .map(|c| (c.candidate_id.to_string(), c.votes))
        .collect();
    let reconciliation = api.reconciliation(election).await?;
    Ok(judge(
        ledger,
        &Store {
            rows: &rows,
            dropped: &dropped,
            late: &late,
            shards: &shards,
            policy,
            current: &current,
        },
        &live,
        &reconciliation,
    ))
}

/// What was read from PostgreSQL for one election.
#[derive(Debug, Clone, Copy)]
pub struct Store<'a> {
    /// The stored votes.
    pub rows: &'a [Row3],
    /// Second votes of a viewer dropped by the unique constraint (`vote_conflicts`).
    pub dropped: &'a [Row3],
    /// Stored votes accepted at or after the election's end.
    pub late: &'a [String],
    /// Persisted tallies per candidate.
    pub shards: &'a [(String, i64)],
    /// The election's vote policy.
    pub policy: RunPolicy,
    /// `changeable`: each viewer's current vote (`current_votes`).
    pub current: &'a [Row3],
}

/// The checks themselves, on what was read (pure, unit-tested).
pub fn judge(
    ledger: &Ledger,
    store: &Store<'_>,
    live: &BTreeMap<String, u64>,
    reconciliation: &Value,
) -> Verdict {
    let (rows, shards) = (store.rows, store.shards);
    let mut verdict = Verdict {
        clean: true,
        checks: Vec::new(),
    };
    let mut by_id: HashMap<&str, Vec<&Row3>> = HashMap::new();
    for row in rows {
        by_id.entry(row.0.as_str()).or_default().push(row);
    }

    // 1. Every 202 stored exactly once, as cast. The one exception is a
    // viewer's second 202, possible only after Redis lost their claim: the
    // unique constraint drops it as a conflict while their first vote counts
    // (ARCHITECTURE.md, invariant 3, D). It is listed apart, never as stored.
    let voters_stored: HashSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let dropped_ids: HashMap<&str, &Row3> = store.dropped.iter().map(|r| (r.0.as_str(), r)).collect();
    let mut bad = Vec::new();
    let mut second: Vec<&LedgerVote> = Vec::new();
    for v in &ledger.accepted {
        match by_id.get(v.vote_id.as_str()).map(Vec::as_slice) {
            None | Some([])
                if dropped_ids
                    .get(v.vote_id.as_str())
                    .is_some_and(|d| d.1 == v.voter && voters_stored.contains(v.voter.as_str())) =>
            {
                second.push(v);
            }
            None | Some([]) => bad.push(format!(
                "{} missing (viewer {}, candidate {})",
                v.vote_id, v.voter, v.candidate_id
            )),
            Some([(_, voter, candidate)]) if *voter == v.voter && *candidate == v.candidate_id => {}
            Some([(_, voter, candidate)]) => bad.push(format!(
                "{} stored as viewer {voter}, candidate {candidate}; sent as viewer {}, candidate {}",
                v.vote_id, v.voter, v.candidate_id
            )),
            Some(many) => bad.push(format!("{} stored {} times", v.vote_id, many.len())),
        }
    }
    bad.sort();
    verdict.push(Check {
        name: "every vote answered 202 is stored exactly once, as cast".into(),
        passed: bad.is_empty(),
        detail: format!(
            "{} of {} votes answered 202 are not; {} were a viewer's second 202, dropped as a conflict \
             while their first vote counts",
            bad.len(),
            ledger.accepted.len(),
            second.len()
        ),
        ids: bad,
    });

    // 2. No viewer beyond the policy: one row (`single`), `maxVotes` rows
    // (`multi`); under `changeable` every change is a row.
    let mut per_voter: HashMap<&str, usize> = HashMap::new();
    for row in rows {
        *per_voter.entry(row.1.as_str()).or_default() += 1;
    }
    let limit = store.policy.rows_per_viewer();
    let mut twice: Vec<String> = per_voter
        .iter()
        .filter(|(_, n)| limit.is_some_and(|l| **n > l))
        .map(|(v, n)| format!("viewer {v} has {n} rows"))
        .collect();
    twice.sort();
    verdict.push(Check {
        name: match limit {
            Some(1) => "no viewer has two rows".into(),
            Some(l) => format!("no viewer has more than {l} rows"),
            None => "every change is its own row (changeable)".into(),
        },
        passed: twice.is_empty(),
        detail: format!(
            "{} viewers with more rows than the policy {} gives, among {} rows",
            twice.len(),
            store.policy.label(),
            rows.len()
        ),
        ids: twice,
    });

    // 3. No row the client was not told about, unless its request went unanswered.
    let known: HashSet<&str> = ledger.accepted.iter().map(|v| v.vote_id.as_str()).collect();
    let unanswered: HashSet<&str> = ledger.unanswered_voters.iter().map(String::as_str).collect();
    let extra: Vec<&Row3> = rows.iter().filter(|r| !known.contains(r.0.as_str())).collect();
    let (explained, mut unexplained): (Vec<&Row3>, Vec<&Row3>) =
        extra.into_iter().partition(|r| unanswered.contains(r.1.as_str()));
    unexplained.sort();
    verdict.push(Check {
        name: "no stored vote the client was not answered 202 for".into(),
        passed: unexplained.is_empty(),
        detail: format!(
            "{} unexplained rows; {} rows whose request went unanswered (counted, as the server took them)",
            unexplained.len(),
            explained.len()
        ),
        ids: unexplained
            .iter()
            .map(|r| format!("{} (viewer {}, candidate {})", r.0, r.1, r.2))
            .collect(),
    });

    let total = |m: &BTreeMap<String, i64>| m.values().sum::<i64>();
    let tallies: BTreeMap<String, i64> = shards.iter().cloned().collect();
    let counted: BTreeMap<String, i64> =
        if store.policy == RunPolicy::Changeable {
            // 4'. Under `changeable`: persisted tallies = the current votes =
            // each viewer's 202 with the highest vote number (the last accepted).
            let mut current: BTreeMap<String, i64> = BTreeMap::new();
            for r in store.current {
                *current.entry(r.2.clone()).or_default() += 1;
            }
            // A 202 dropped as a conflict (its change number taken again after
            // Redis lost its data) never became a row, so never the current vote.
            let dropped_202: HashSet<&str> = second.iter().map(|v| v.vote_id.as_str()).collect();
            let mut newest: HashMap<&str, &LedgerVote> = HashMap::new();
            for v in ledger
                .accepted
                .iter()
                .filter(|v| !dropped_202.contains(v.vote_id.as_str()))
            {
                let slot = newest.entry(v.voter.as_str()).or_insert(v);
                if v.vote_number > slot.vote_number {
                    *slot = v;
                }
            }
            let current_of: HashMap<&str, &Row3> = store.current.iter().map(|r| (r.1.as_str(), r)).collect();
            let mut off = Vec::new();
            for (voter, v) in &newest {
                // A later change whose answer never came may rightly be the current one.
                if unanswered.contains(voter) {
                    continue;
                }
                match current_of.get(voter) {
                Some(r) if r.0 == v.vote_id => {}
                Some(r) => off.push(format!(
                    "viewer {voter}: current vote {} (candidate {}), but the newest 202 was {} (number {:?})",
                    r.0, r.2, v.vote_id, v.vote_number
                )),
                None => off.push(format!("viewer {voter}: no current vote, newest 202 {}", v.vote_id)),
            }
            }
            for c in current
                .keys()
                .chain(tallies.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let (t, n) = (
                    tallies.get(c).copied().unwrap_or(0),
                    current.get(c).copied().unwrap_or(0),
                );
                if t != n {
                    off.push(format!("candidate {c}: tally shards {t}, current votes {n}"));
                }
            }
            off.sort();
            verdict.push(Check {
                name: "persisted tallies = current votes = each viewer's newest 202 (changeable)".into(),
                passed: off.is_empty(),
                detail: format!(
                    "tally shards {}, current votes {}, viewers with a 202 {}; {} stored changes",
                    total(&tallies),
                    total(&current),
                    newest.len(),
                    rows.len()
                ),
                ids: off,
            });
            current
        } else {
            // 4. Tallies = count(votes) = the client's 202s (plus the explained rows), per candidate.
            let mut counted: BTreeMap<String, i64> = BTreeMap::new();
            for row in rows {
                *counted.entry(row.2.clone()).or_default() += 1;
            }
            let mut client: BTreeMap<String, i64> = BTreeMap::new();
            let second_ids: HashSet<&str> = second.iter().map(|v| v.vote_id.as_str()).collect();
            for v in ledger
                .accepted
                .iter()
                .filter(|v| !second_ids.contains(v.vote_id.as_str()))
            {
                *client.entry(v.candidate_id.clone()).or_default() += 1;
            }
            for r in &explained {
                *client.entry(r.2.clone()).or_default() += 1;
            }
            let candidates: std::collections::BTreeSet<&String> = counted
                .keys()
                .chain(client.keys())
                .chain(tallies.keys())
                .collect();
            let mut off = Vec::new();
            for c in &candidates {
                let (t, n, a) = (
                    tallies.get(*c).copied().unwrap_or(0),
                    counted.get(*c).copied().unwrap_or(0),
                    client.get(*c).copied().unwrap_or(0),
                );
                if t != n || n != a {
                    off.push(format!(
                        "candidate {c}: tally shards {t}, count(votes) {n}, client 202s {a}"
                    ));
                }
            }
            verdict.push(Check {
                name: "persisted tallies = count(votes) = the client's 202s".into(),
                passed: off.is_empty(),
                detail: format!(
                    "tally shards {}, count(votes) {}, client 202s {}",
                    total(&tallies),
                    total(&counted),
                    total(&client)
                ),
                ids: off,
            });
            counted
        };

    // 5. Live = persisted. A vote stored whose 202 never reached the client
    // may also have missed its confirm (a crash between the queue's
    // acknowledgement and the confirm): live may fall short by at most those.
    let mut unconfirmable: BTreeMap<&str, i64> = BTreeMap::new();
    for r in &explained {
        *unconfirmable.entry(r.2.as_str()).or_default() += 1;
    }
    let mut drift = Vec::new();
    let mut short = 0;
    for c in counted
        .keys()
        .chain(live.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (l, p) = (
            live.get(c).copied().unwrap_or(0) as i64,
            counted.get(c).copied().unwrap_or(0),
        );
        let allowed = unconfirmable.get(c.as_str()).copied().unwrap_or(0);
        if l > p || p - l > allowed {
            drift.push(format!(
                "candidate {c}: live {l}, persisted {p} ({allowed} stored without a 202 reaching the client)"
            ));
        }
        short += p - l;
    }
    verdict.push(Check {
        name: "live tallies equal persisted tallies (less votes whose 202 never reached the client)".into(),
        passed: drift.is_empty(),
        detail: format!(
            "live {} vs persisted {} ({short} short)",
            live.values().sum::<u64>(),
            total(&counted)
        ),
        ids: drift,
    });

    // 6. The service's own reconciliation: balanced, or a surplus no larger
    // than the votes the server took without the client hearing 202 (a crash
    // between the queue's acknowledgement and the confirm) plus the second
    // 202s dropped as conflicts. Never lost, never pending.
    let said = reconciliation["verdict"].as_str().unwrap_or("?").to_owned();
    let surplus = reconciliation["verdictCount"].as_u64().unwrap_or(u64::MAX);
    let explainable = (explained.len() + second.len()) as u64;
    verdict.push(Check {
        name: "the reconciliation endpoint says balanced (or a surplus the run explains)".into(),
        passed: said == "balanced" || (said == "surplus" && surplus <= explainable),
        detail: format!(
            "verdict {said} {}: accepted {}, persisted {}, conflicts {}, in flight {}; {explainable} votes taken \
             without a 202 reaching the client or dropped as a second vote",
            reconciliation["verdictCount"],
            reconciliation["accepted"],
            reconciliation["persisted"],
            reconciliation["conflicts"],
            reconciliation["inFlight"]
        ),
        ids: Vec::new(),
    });

    // 7. Counted iff accepted before the end: no stored vote is stamped at or after it.
    verdict.push(Check {
        name: "no stored vote was accepted at or after the election's end".into(),
        passed: store.late.is_empty(),
        detail: format!("{} stored votes stamped at or after the end", store.late.len()),
        ids: store.late.to_vec(),
    });
    verdict
}

/// What `verify` needs from a report.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportRef {
    election: String,
    ledger: PathBuf,
    /// Absent in reports written before vote policies: `single`.
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    max_votes: Option<u32>,
}

/// `livevote-load verify`: the verdict again, from a report and its ledger.
pub async fn verify_report(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.report)
        .with_context(|| format!("reading the report {}", args.report.display()))?;
    let report: ReportRef = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a livevote-load report", args.report.display()))?;
    // A relative ledger path is relative to the report's folder.
    let ledger_path = if report.ledger.is_absolute() {
        report.ledger.clone()
    } else {
        args.report
            .parent()
            .unwrap_or(Path::new("."))
            .join(report.ledger.file_name().unwrap_or_default())
    };
    let ledger = Ledger::read_csv(&ledger_path)?;
    let (api, pool, redis) = args.target.connect().await?;
    wait_for_drain(
        &api,
        &report.election,
        Duration::from_secs(args.target.drain_timeout_secs),
    )
    .await?;
    let policy = match (report.policy.as_deref(), report.max_votes) {
        (None | Some("single"), _) => RunPolicy::Single,
        (Some("multi"), Some(max_votes)) => RunPolicy::Multi { max_votes },
        (Some("changeable"), _) => RunPolicy::Changeable,
        (other, _) => bail!("the report names an unknown policy {other:?}"),
    };
    let verdict = check(&api, &pool, &redis, &report.election, &ledger, policy).await?;
    println!(
        "election {}: {} votes answered 202 in the ledger",
        report.election,
        ledger.accepted.len()
    );
    print!("{}", verdict.text());
    redis.close().await;
    Ok(if verdict.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(id: &str, voter: &str, candidate: &str) -> LedgerVote {
        LedgerVote {
            vote_id: id.into(),
            voter: voter.into(),
            candidate_id: candidate.into(),
            vote_number: None,
        }
    }

    fn row(id: &str, voter: &str, candidate: &str) -> Row3 {
        (id.into(), voter.into(), candidate.into())
    }

    fn st<'a>(rows: &'a [Row3], dropped: &'a [Row3], shards: &'a [(String, i64)]) -> Store<'a> {
        Store {
            rows,
            dropped,
            late: &[],
            shards,
            policy: RunPolicy::Single,
            current: &[],
        }
    }

    fn balanced() -> Value {
        serde_json::json!({"verdict": "balanced", "accepted": 2, "persisted": 2, "inFlight": 0})
    }

    fn failed(v: &Verdict) -> Vec<&str> {
        v.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_complete_store_is_clean() {
        let ledger = Ledger {
            accepted: vec![vote("v1", "a", "c1"), vote("v2", "b", "c2")],
            unanswered_voters: vec![],
        };
        let rows = [row("v1", "a", "c1"), row("v2", "b", "c2")];
        let shards = [("c1".to_owned(), 1), ("c2".to_owned(), 1)];
        let live = BTreeMap::from([("c1".to_owned(), 1), ("c2".to_owned(), 1)]);
        let v = judge(&ledger, &st(&rows, &[], &shards), &live, &balanced());
        assert!(v.clean, "{}", v.text());
        assert_eq!(v.checks.len(), 7);
    }

    #[test]
    fn a_lost_vote_fails_and_is_named() {
        let ledger = Ledger {
            accepted: vec![vote("v1", "a", "c1"), vote("v2", "b", "c2")],
            unanswered_voters: vec![],
        };
        let rows = [row("v1", "a", "c1")];
        let shards = [("c1".to_owned(), 1), ("c2".to_owned(), 1)];
        let live = BTreeMap::from([("c1".to_owned(), 1), ("c2".to_owned(), 1)]);
        let v = judge(&ledger, &st(&rows, &[], &shards), &live, &balanced());
        assert!(!v.clean);
        assert_eq!(v.checks[0].ids, vec!["v2 missing (viewer b, candidate c2)"]);
        assert_eq!(
            failed(&v),
            vec![
                "every vote answered 202 is stored exactly once, as cast",
                "persisted tallies = count(votes) = the client's 202s",
                "live tallies equal persisted tallies (less votes whose 202 never reached the client)"
            ]
        );
        assert!(v.text().contains("v2 missing"));
    }

    #[test]
    fn a_wrong_candidate_an_unknown_row_and_a_pending_reconciliation_fail() {
        let ledger = Ledger {
            accepted: vec![vote("v1", "a", "c1")],
            unanswered_voters: vec!["z".into()],
        };
        // v1 stored for the wrong candidate; x1 nobody was told about; z1 explained.
        let rows = [row("v1", "a", "c2"), row("x1", "q", "c1"), row("z1", "z", "c1")];
        let shards = [("c1".to_owned(), 2), ("c2".to_owned(), 1)];
        let live = BTreeMap::from([("c1".to_owned(), 2), ("c2".to_owned(), 1)]);
        let v = judge(
            &ledger,
            &st(&rows, &[], &shards),
            &live,
            &serde_json::json!({"verdict": "loss"}),
        );
        assert!(v.checks[0].ids[0].contains("stored as viewer a, candidate c2"));
        assert_eq!(v.checks[2].ids, vec!["x1 (viewer q, candidate c1)"]);
        assert!(
            v.checks[2]
                .detail
                .contains("1 rows whose request went unanswered")
        );
        assert!(
            failed(&v)
                .iter()
                .any(|n| n.starts_with("the reconciliation endpoint says balanced"))
        );
    }

    #[test]
    fn two_rows_of_one_viewer_fail() {
        let ledger = Ledger {
            accepted: vec![vote("v1", "a", "c1"), vote("v2", "a", "c2")],
            unanswered_voters: vec![],
        };
        let rows = [row("v1", "a", "c1"), row("v2", "a", "c2")];
        let shards = [("c1".to_owned(), 1), ("c2".to_owned(), 1)];
        let live = BTreeMap::from([("c1".to_owned(), 1), ("c2".to_owned(), 1)]);
        let v = judge(&ledger, &st(&rows, &[], &shards), &live, &balanced());
        assert_eq!(failed(&v), vec!["no viewer has two rows"]);
        assert_eq!(v.checks[1].ids, vec!["viewer a has 2 rows"]);
    }

    #[test]
    fn a_second_202_dropped_as_a_conflict_is_listed_apart_and_explains_a_surplus() {
        // Redis lost viewer a's claim: their second attempt got 202 too, and the constraint dropped it.
        let ledger = Ledger {
            accepted: vec![vote("v1", "a", "c1"), vote("v2", "a", "c2")],
            unanswered_voters: vec![],
        };
        let rows = [row("v1", "a", "c1")];
        let dropped = [row("v2", "a", "c2")];
        let shards = [("c1".to_owned(), 1)];
        let live = BTreeMap::from([("c1".to_owned(), 1)]);
        let surplus = serde_json::json!({"verdict": "surplus", "verdictCount": 1});
        let v = judge(&ledger, &st(&rows, &dropped, &shards), &live, &surplus);
        assert!(v.clean, "{}", v.text());
        assert!(
            v.checks[0].detail.contains("1 were a viewer's second 202"),
            "{}",
            v.checks[0].detail
        );
        // The same conflict row for a viewer with no stored vote is a loss, not a second vote.
        let orphan = [row("v2", "b", "c2")];
        let v = judge(&ledger, &st(&rows, &orphan, &shards), &live, &surplus);
        assert_eq!(v.checks[0].ids, vec!["v2 missing (viewer a, candidate c2)"]);
        // A surplus larger than the run explains fails; "lost" always fails.
        let big = serde_json::json!({"verdict": "surplus", "verdictCount": 2});
        assert!(
            failed(&judge(&ledger, &st(&rows, &dropped, &shards), &live, &big))
                .iter()
                .any(|n| n.contains("reconciliation"))
        );
        let lost = serde_json::json!({"verdict": "lost", "verdictCount": 1});
        assert!(
            failed(&judge(&ledger, &st(&rows, &dropped, &shards), &live, &lost))
                .iter()
                .any(|n| n.contains("reconciliation"))
        );
    }

    #[test]
    fn live_may_fall_short_only_by_votes_stored_without_a_202() {
        // z's request went unanswered but was stored; its confirm never ran.
        let ledger = Ledger {
            accepted: vec![vote("v1", "a", "c1")],
            unanswered_voters: vec!["z".into()],
        };
        let rows = [row("v1", "a", "c1"), row("z1", "z", "c1")];
        let shards = [("c1".to_owned(), 2)];
        let surplus = serde_json::json!({"verdict": "surplus", "verdictCount": 1});
        let short = BTreeMap::from([("c1".to_owned(), 1)]);
        let v = judge(&ledger, &st(&rows, &[], &shards), &short, &surplus);
        assert!(v.clean, "{}", v.text());
        // Two short is more than the one unanswered vote explains; live above persisted is never right.
        for live in [0, 3] {
            let v = judge(
                &ledger,
                &st(&rows, &[], &shards),
                &BTreeMap::from([("c1".to_owned(), live)]),
                &surplus,
            );
            assert!(
                failed(&v).iter().any(|n| n.starts_with("live tallies")),
                "live {live}"
            );
        }
    }

    #[test]
    fn under_changeable_the_current_vote_must_be_the_newest_202() {
        let numbered = |id: &str, voter: &str, candidate: &str, n: u32| LedgerVote {
            vote_number: Some(n),
            ..vote(id, voter, candidate)
        };
        let ledger = Ledger {
            accepted: vec![numbered("v1", "a", "c1", 1), numbered("v2", "a", "c2", 2)],
            unanswered_voters: vec![],
        };
        let rows = [row("v1", "a", "c1"), row("v2", "a", "c2")];
        let reconciliation = serde_json::json!({"verdict": "balanced"});
        let judge_with = |current: &[Row3], shards: &[(String, i64)], live: &BTreeMap<String, u64>| {
            let store = Store {
                policy: RunPolicy::Changeable,
                current,
                ..st(&rows, &[], shards)
            };
            judge(&ledger, &store, live, &reconciliation)
        };
        let good_shards = [("c2".to_owned(), 1)];
        let live = BTreeMap::from([("c2".to_owned(), 1)]);
        let v = judge_with(&[row("v2", "a", "c2")], &good_shards, &live);
        assert!(v.clean, "{}", v.text());
        // The older change left current: named.
        let stale_shards = [("c1".to_owned(), 1)];
        let stale_live = BTreeMap::from([("c1".to_owned(), 1)]);
        let v = judge_with(&[row("v1", "a", "c1")], &stale_shards, &stale_live);
        assert_eq!(
            failed(&v),
            vec!["persisted tallies = current votes = each viewer's newest 202 (changeable)"]
        );
        // A viewer with two rows is no fault under changeable.
        assert!(!v.text().contains("[FAIL] every change is its own row"));
    }

    #[test]
    fn a_vote_stored_with_a_time_after_the_end_fails() {
        let ledger = Ledger {
            accepted: vec![vote("v1", "a", "c1")],
            unanswered_voters: vec![],
        };
        let rows = [row("v1", "a", "c1")];
        let shards = [("c1".to_owned(), 1)];
        let live = BTreeMap::from([("c1".to_owned(), 1)]);
        let late = ["v1 accepted 12:00:00.2, end 12:00:00.1".to_owned()];
        let store = Store {
            late: &late,
            ..st(&rows, &[], &shards)
        };
        let v = judge(&ledger, &store, &live, &balanced());
        assert_eq!(
            failed(&v),
            vec!["no stored vote was accepted at or after the election's end"]
        );
    }

    #[test]
    fn the_ledger_round_trips_through_csv() {
        let ledger = Ledger {
            accepted: vec![vote("v1", "load|viewer-0000001", "c1")],
            unanswered_voters: vec!["load|viewer-0000002".into()],
        };
        let path = std::env::temp_dir().join(format!("lv-ledger-{}.csv", std::process::id()));
        ledger.write_csv(&path).unwrap();
        assert_eq!(Ledger::read_csv(&path).unwrap(), ledger);
        std::fs::remove_file(&path).unwrap();
    }
}
