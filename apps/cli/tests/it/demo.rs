//! The README's first command at small size: `livevote stack up` on a
//! stack of its own (free ports, its own database, Redis prefix and queue),
//! `livevote demo`, then `livevote stack down`. The demo must end balanced,
//! with every accepted vote stored and shown in the final results.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::{livevote, sqs_endpoint};

/// `N` distinct free ports (each listener is held until all are chosen).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

struct TestStack {
    dir: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    results_url: String,
}

impl TestStack {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("livevote-cli-test-{id}"));
        let bin_dir = PathBuf::from(livevote()).parent().unwrap().to_path_buf();
        let [ingestion, processor, results, issuer] = free_ports::<4>();
        let env = vec![
            ("LIVEVOTE_STACK_DIR".to_owned(), dir.display().to_string()),
            ("LIVEVOTE_BIN_DIR".to_owned(), bin_dir.display().to_string()),
            // scripts/test.sh drops livevote_test_% databases of earlier runs.
            (
                "LIVEVOTE_STACK_DATABASE".to_owned(),
                format!("livevote_test_cli_{id}"),
            ),
            ("LIVEVOTE_REDIS_PREFIX".to_owned(), format!("lvtest-{id}")),
            ("LIVEVOTE_QUEUE_NAME".to_owned(), format!("lvtest-cli-{id}")),
            ("LIVEVOTE_SQS_ENDPOINT".to_owned(), sqs_endpoint()),
            (
                "LIVEVOTE_RESULTS_URL".to_owned(),
                format!("http://127.0.0.1:{results}"),
            ),
            (
                "LIVEVOTE_INGESTION_URL".to_owned(),
                format!("http://127.0.0.1:{ingestion}"),
            ),
        ];
        let args = [
            ("--ingestion-port", ingestion),
            ("--processor-port", processor),
            ("--results-port", results),
            ("--issuer-port", issuer),
        ]
        .iter()
        .flat_map(|(flag, port)| [(*flag).to_owned(), port.to_string()])
        .collect();
        Self {
            dir,
            env,
            args,
            results_url: format!("http://127.0.0.1:{results}"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = Command::new(livevote())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("livevote runs");
        eprintln!(
            "$ livevote {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn stack(&self, action: &str) -> Output {
        let mut args = vec!["stack", action];
        if action == "up" {
            args.extend(self.args.iter().map(String::as_str));
        }
        self.run(&args)
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        // Whatever happened, stop what this test started.
        let down = self.stack("down");
        if !down.status.success() {
            eprintln!("stack down failed");
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {error}", self.dir.display());
        }
    }
}

#[test]
fn stack_up_demo_and_down_end_balanced() {
    let stack = TestStack::new();
    let up = stack.stack("up");
    assert!(up.status.success(), "stack up failed");
    let status = stack.stack("status");
    assert!(status.status.success(), "stack status after up");
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(text.matches(" ready (pid").count(), 4, "{text}");

    // 330 attempts take 2.2 s; the lines stay open 8 s so a loaded machine still gets them all in.
    let demo = stack.run(&["demo", "--voters", "300", "--rate", "150", "--seconds", "8"]);
    let out = String::from_utf8_lossy(&demo.stdout).into_owned();
    assert!(demo.status.success(), "the demo did not balance");
    // 300 viewers, 10 % of them tried twice: 300 accepted, 30 refused, all stored, all shown.
    assert!(
        out.contains("demo: verdict=balanced accepted=300 persisted=300 shown=300 final=true"),
        "{out}"
    );
    assert!(out.contains("409 repeat refused 30"), "{out}");
    assert!(
        out.contains("exact check: every one of the 300 votes answered 202 is stored"),
        "{out}"
    );
    assert!(out.contains(&format!("{}/onair/", stack.results_url)), "{out}");

    // The final results, from the API: the four candidates add up to the 300 votes.
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("election "))
        .and_then(|l| l.split(':').next())
        .expect("the election id is printed")
        .to_owned();
    let reconcile = stack.run(&["reconcile", &id]);
    assert!(reconcile.status.success());
    assert!(String::from_utf8_lossy(&reconcile.stdout).contains("balanced"));

    // An unreachable service is named, with the fix.
    let mut wrong = stack.env.clone();
    wrong.retain(|(k, _)| k != "LIVEVOTE_RESULTS_URL");
    let refused = Command::new(livevote())
        .args(["reconcile", &id, "--results-url", "http://127.0.0.1:9"])
        .envs(wrong)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("the results service does not answer") && err.contains("livevote stack up"),
        "{err}"
    );

    let down = stack.stack("down");
    assert!(down.status.success());
    let gone = stack.stack("status");
    assert!(!gone.status.success(), "nothing runs after down");
}

#[test]
fn the_embedded_demo_needs_no_server_and_balances() {
    let out = Command::new(livevote())
        .args([
            "demo",
            "--embedded",
            "--voters",
            "400",
            "--rate",
            "200",
            "--seconds",
            "6",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("NOT DURABLE"), "{text}");
    assert!(
        text.contains("demo: verdict=balanced accepted=400 persisted=400 shown=400 final=true"),
        "{text}"
    );
    assert!(
        text.contains("exact check: every one of the 400 votes answered 202 is stored"),
        "{text}"
    );
}
