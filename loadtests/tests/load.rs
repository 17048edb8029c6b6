//! `livevote-load` against a real local stack (PostgreSQL, Redis, the SQS
//! endpoint, the three services started by `livevote stack up` on free
//! ports with their own database, key prefix and queue):
//!
//! - a short run at small scale ends with a clean verdict;
//! - the checker catches loss: rows deleted after a clean run make
//!   `livevote-load verify` fail and name every deleted vote id.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn load_bin() -> &'static str {
    env!("CARGO_BIN_EXE_livevote-load")
}

/// The `livevote` CLI, built next to `livevote-load` by `cargo test --workspace`.
fn livevote_bin() -> PathBuf {
    let bin = Path::new(load_bin()).with_file_name("livevote");
    assert!(
        bin.exists(),
        "{} not found: run the workspace's tests (cargo test --workspace) so the services and the CLI are built",
        bin.display()
    );
    bin
}

/// `N` distinct free ports (each listener is held until all are chosen).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// A stack of the test's own; `stack down` and clean-up on drop.
struct Stack {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    database_url: String,
}

impl Stack {
    fn up() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("livevote-load-test-{id}"));
        let ports: Vec<u16> = free_ports::<4>().to_vec();
        // scripts/test.sh drops livevote_test_% databases and lvtest-* keys of earlier runs.
        let database = format!("livevote_test_load_{id}");
        let env = vec![
            ("LIVEVOTE_STACK_DIR", dir.display().to_string()),
            (
                "LIVEVOTE_BIN_DIR",
                livevote_bin().parent().unwrap().display().to_string(),
            ),
            ("LIVEVOTE_STACK_DATABASE", database.clone()),
            (
                "LIVEVOTE_DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ),
            ("LIVEVOTE_REDIS_PREFIX", format!("lvtest-{id}")),
            ("LIVEVOTE_QUEUE_NAME", format!("lvtest-load-{id}")),
            (
                "LIVEVOTE_SQS_ENDPOINT",
                std::env::var("LIVEVOTE_TEST_SQS_ENDPOINT")
                    .unwrap_or_else(|_| "http://127.0.0.1:4566".into()),
            ),
            ("LIVEVOTE_INGESTION_URL", format!("http://127.0.0.1:{}", ports[0])),
            ("LIVEVOTE_RESULTS_URL", format!("http://127.0.0.1:{}", ports[2])),
            (
                "LIVEVOTE_LOAD_TOKEN_CACHE",
                dir.join("tokens.txt").display().to_string(),
            ),
        ];
        let stack = Self {
            database_url: env[3].1.clone(),
            dir,
            env,
        };
        let up = stack.run(
            livevote_bin().to_str().unwrap(),
            &[
                "stack",
                "up",
                "--ingestion-port",
                &ports[0].to_string(),
                "--processor-port",
                &ports[1].to_string(),
                "--results-port",
                &ports[2].to_string(),
                "--issuer-port",
                &ports[3].to_string(),
            ],
        );
        assert!(up.status.success(), "stack up failed");
        stack
    }

    fn run(&self, bin: &str, args: &[&str]) -> Output {
        let out = Command::new(bin)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("the binary runs");
        eprintln!(
            "$ {} {}\n{}{}",
            Path::new(bin).file_name().unwrap().to_string_lossy(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `livevote-load run` with `args`; the parsed report.
    fn load(&self, args: &[&str]) -> (Output, Value) {
        let reports = self.dir.join("reports");
        let mut all = vec!["run", "--report-dir", reports.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = self.run(load_bin(), &all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let path = stdout
            .lines()
            .find_map(|l| l.strip_prefix("report: "))
            .unwrap_or_else(|| panic!("no report path printed: {stdout}"));
        let report = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        (out, report)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let down = self.run(livevote_bin().to_str().unwrap(), &["stack", "down"]);
        if !down.status.success() {
            eprintln!("stack down failed");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

#[test]
fn a_short_spike_with_readers_ends_with_a_clean_verdict() {
    let stack = Stack::up();
    let (out, report) = stack.load(&[
        "--scenario",
        "spike",
        "--rate",
        "150",
        "--duration-secs",
        "4",
        "--ramp-secs",
        "1",
        "--repeat-percent",
        "10",
        "--closed-percent",
        "3",
        "--unknown-percent",
        "3",
        "--readers",
        "4",
        "--poll-ms",
        "200",
        "--sse-clients",
        "2",
        "--sample-secs",
        "1",
    ]);
    assert!(out.status.success(), "the run did not end clean");
    assert_eq!(report["verdict"]["clean"], true, "{:#}", report["verdict"]);
    let checks = report["verdict"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 8);
    assert!(checks.iter().all(|c| c["passed"] == true));

    // 150/s with a 1 s ramp over 4 s: 75 + 450 attempts; every first vote accepted.
    let attempts = &report["attempts"];
    let total: u64 = ["first", "repeat", "closed", "unknown"]
        .iter()
        .map(|k| attempts[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, 525);
    assert!(attempts["repeat"].as_u64().unwrap() > 20, "{attempts}");
    assert!(attempts["closed"].as_u64().unwrap() > 0 && attempts["unknown"].as_u64().unwrap() > 0);
    assert_eq!(report["accepted"], attempts["first"]);
    assert_eq!(report["reconciliation"]["persisted"], attempts["first"]);
    assert!(
        report["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["expected"] == true),
        "{}",
        report["outcomes"]
    );

    // Latency per endpoint, the readers, and each service's memory.
    let votes = &report["latency"]["POST /api/v1/votes"];
    assert_eq!(votes["count"].as_u64().unwrap(), 525);
    assert!(votes["p50Ms"].as_f64().unwrap() <= votes["p99Ms"].as_f64().unwrap());
    assert!(
        report["latency"]["GET /api/v1/results/{id}"]["count"]
            .as_u64()
            .unwrap()
            > 40
    );
    assert_eq!(
        report["latency"]["GET /api/v1/results/{id}/stream (first event)"]["count"],
        2
    );
    assert!(report["readers"]["sseEvents"].as_u64().unwrap() >= 2);
    assert_eq!(report["readers"]["resultsErrors"], 0);
    let memory = report["memory"].as_object().unwrap();
    for service in ["ingestion", "processor", "results"] {
        assert!(memory[service]["maxMb"].as_f64().unwrap() > 1.0, "{memory:?}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verdict: CLEAN"), "{stdout}");
}

/// The vote policies under load, on one stack: a `multi` run where many
/// viewers come back more often than their two votes allow, and a
/// `changeable` run where half the attempts are changes; both verdicts exact.
#[test]
fn multi_and_changeable_runs_end_with_exact_verdicts() {
    let stack = Stack::up();
    let common = ["--rate", "120", "--duration-secs", "3", "--repeat-percent", "60"];
    let (out, multi) = stack.load(&[&common[..], &["--policy", "multi", "--max-votes", "2"]].concat());
    assert!(
        out.status.success(),
        "the multi run did not end clean: {:#}",
        multi["verdict"]
    );
    assert_eq!(multi["policy"], "multi");
    assert_eq!(multi["maxVotes"], 2);
    let outcomes = multi["outcomes"].as_array().unwrap();
    let count = |kind: &str, answer: &str| {
        outcomes
            .iter()
            .filter(|o| o["kind"] == kind && o["answer"] == answer)
            .map(|o| o["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(count("repeat", "202") > 0, "{outcomes:?}");
    assert!(count("repeat", "409 VOTE_LIMIT_REACHED") > 0, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o["expected"] == true), "{outcomes:?}");
    assert_eq!(multi["reconciliation"]["persisted"], multi["accepted"]);
    let names: Vec<&str> = multi["verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"no viewer has more than 2 rows"), "{names:?}");

    let (out, changes) = stack.load(&[&common[..], &["--policy", "changeable"]].concat());
    assert!(
        out.status.success(),
        "the changeable run did not end clean: {:#}",
        changes["verdict"]
    );
    assert_eq!(changes["policy"], "changeable");
    let attempts = &changes["attempts"];
    let votes = attempts["first"].as_u64().unwrap() + attempts["repeat"].as_u64().unwrap();
    // Every change answered 202 (or shed: 429/503, allowed) and stored; the
    // tallies hold one vote per viewer.
    let shed: u64 = changes["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            let answer = o["answer"].as_str().unwrap();
            (o["kind"] == "first" || o["kind"] == "repeat")
                && (answer.starts_with("429") || answer.starts_with("503"))
        })
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        changes["accepted"].as_u64().unwrap() + shed,
        votes,
        "{:#}",
        changes["outcomes"]
    );
    assert_eq!(changes["reconciliation"]["persisted"], changes["accepted"]);
    let checks = changes["verdict"]["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["name"]
            == "persisted tallies = current votes = each viewer's newest 202 (changeable)"
            && c["passed"] == true),
        "{checks:?}"
    );
}

#[test]
fn the_checker_names_votes_deleted_after_a_clean_run() {
    let stack = Stack::up();
    let (out, report) = stack.load(&["--rate", "100", "--duration-secs", "2"]);
    assert!(out.status.success(), "the run did not end clean");
    let election = report["election"].as_str().unwrap().to_owned();

    // Lose three stored votes behind the services' back.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deleted: Vec<String> = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
        let ids = sqlx::query_scalar::<_, String>(
            "DELETE FROM votes WHERE vote_id IN \
             (SELECT vote_id FROM votes WHERE election_id = $1::uuid ORDER BY vote_id LIMIT 3) \
             RETURNING vote_id::text",
        )
        .bind(&election)
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        ids
    });
    assert_eq!(deleted.len(), 3);

    let report_path = stack.dir.join("reports").read_dir().unwrap().find_map(|e| {
        let p = e.unwrap().path();
        (p.extension().is_some_and(|x| x == "json")).then_some(p)
    });
    let verify = stack.run(
        load_bin(),
        &["verify", "--report", report_path.unwrap().to_str().unwrap()],
    );
    assert_eq!(verify.status.code(), Some(1), "verify must fail on loss");
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(text.contains("verdict: FAILED"), "{text}");
    assert!(text.contains("3 of "), "{text}");
    for id in &deleted {
        assert!(text.contains(&format!("{id} missing")), "{id} not named: {text}");
    }
    // The independent count sees it too, even where a tally alone would not.
    assert!(text.contains("[FAIL] persisted tallies = count(votes)"), "{text}");
}
