//! `livevote dlq list` and `livevote dlq replay` against the local SQS
//! endpoint, on queues of their own: every dead letter gets its own line,
//! and replay leaves (and names) what it cannot process.

use std::process::Command;

use chrono::Utc;
use livevote_domain::Election;
use livevote_ports::QueueInspector;
use livevote_sqs::{QueueSettings, SqsQueue, create_queues, local_client};
use livevote_testkit::fixtures::{new_election, record};

use crate::{livevote, sqs_endpoint};

fn run(queue_name: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(livevote())
        .args(args)
        .env("LIVEVOTE_SQS_ENDPOINT", sqs_endpoint())
        .env("LIVEVOTE_QUEUE_NAME", queue_name)
        .output()
        .expect("livevote runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ livevote {}\n{text}", args.join(" "));
    (out.status.success(), text)
}

fn election() -> Election {
    let now = Utc::now();
    let new = new_election("DLQ", &["A", "B"], now, now + chrono::Duration::hours(1));
    livevote_testkit::fixtures::create(new, now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dead_letter_gets_a_line_and_replay_names_what_it_skips() {
    let client = local_client(&sqs_endpoint());
    let name = format!("lvtest-dlq-{}", uuid::Uuid::new_v4().simple());
    let config = create_queues(&client, &name, QueueSettings::default())
        .await
        .expect("queues on the local SQS endpoint (scripts/services.sh sqs)");
    let queue = SqsQueue::new(client.clone(), config.clone());
    let (known, nobodys) = (election(), election());
    let send = |body: String| {
        let (client, url) = (client.clone(), config.dead_letter_queue_url.clone());
        async move {
            client
                .send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .unwrap()
                .message_id
                .unwrap()
        }
    };
    let garbage = send("<<<not a vote message>>>".into()).await;
    let stranger = send(livevote_sqs::message::encode(&[record(
        &nobodys,
        "auth0|x",
        0,
        Utc::now(),
    )]))
    .await;
    let votes: Vec<_> = (0..2)
        .map(|i| record(&known, &format!("auth0|v{i}"), i, Utc::now()))
        .collect();
    let good = send(livevote_sqs::message::encode(&votes)).await;

    let (ok, out) = run(&name, &["dlq", "list"]);
    assert!(ok, "{out}");
    assert!(out.contains("dead-letter queue: 3 messages"), "{out}");
    let block = |id: &str| {
        let start = out.find(id).unwrap_or_else(|| panic!("no line for {id}:\n{out}"));
        out[start..].lines().take(3).collect::<Vec<_>>().join("\n")
    };
    let g = block(&garbage);
    assert!(g.contains("unattributed"), "{g}");
    assert!(g.contains("reason: undecodable message"), "{g}");
    assert!(g.contains("first bytes: \"<<<not a vote message>>>\""), "{g}");
    let s = block(&stranger);
    assert!(s.contains(&format!("election {} (1 vote)", nobodys.id())), "{s}");
    assert!(s.contains("reason: well formed, received"), "{s}");
    assert!(s.contains("first bytes: \"{"), "{s}");
    let k = block(&good);
    assert!(k.contains(&format!("election {} (2 votes)", known.id())), "{k}");

    let (ok, out) = run(&name, &["dlq", "replay"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("skipping 1 messages that cannot be processed"),
        "{out}"
    );
    assert!(out.contains(&garbage), "the skipped message is named: {out}");
    assert!(out.contains("moved 2 messages back"), "{out}");
    assert!(out.contains("1 skipped as unprocessable"), "{out}");
    // The undecodable message stays behind, visible again; the others are back in the queue.
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.visible, stats.dead_letter_messages), (2, 1), "{stats:?}");
    let left = queue.peek_dead_letters().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message_id, garbage);
}
