//! Failures no local server produces on demand, on the SDK's in-process
//! HTTP client: a `SendMessageBatch` answered 200 with some entries failed,
//! and a throttled call. The adapter must map each failed entry back to
//! exactly the votes it carried, retry only what a retry can fix, and never
//! report a vote as published unless its entry succeeded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::infallible_client_fn;
use chrono::{Duration as ChronoDuration, Utc};
use livevote_domain::{Election, ElectionId, VoteRecord};
use livevote_ports::{QueueError, VoteQueue};
use livevote_sqs::{SqsConfig, SqsQueue, message};
use livevote_testkit::fixtures::{new_election, record};
use serde_json::{Value, json};

type Handler = dyn Fn(&Value, usize) -> (u16, Value) + Send + Sync;

/// A queue whose HTTP calls are answered by `handler(request body, call number)`;
/// returns the queue and the request bodies seen.
fn fake_queue(handler: Arc<Handler>, config: SqsConfig) -> (SqsQueue, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let http = infallible_client_fn(move |req| {
        let body: Value =
            serde_json::from_slice(req.body().bytes().unwrap_or_default()).unwrap_or(Value::Null);
        let call = {
            let mut log = log.lock().unwrap();
            log.push(body.clone());
            log.len()
        };
        let (status, answer) = handler(&body, call);
        http::Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.0")
            .body(answer.to_string())
            .unwrap()
    });
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://sqs.test")
            .http_client(http)
            .build(),
    );
    (SqsQueue::new(client, config), seen)
}

fn config() -> SqsConfig {
    SqsConfig {
        // Small messages: a few votes each, so one publish spans many entries.
        max_message_bytes: 700,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..SqsConfig::new(
            "http://sqs.test/000000000000/votes",
            "http://sqs.test/000000000000/votes-dlq",
        )
    }
}

fn votes(n: usize) -> Vec<VoteRecord> {
    let now = Utc::now();
    let e = Election::create(
        ElectionId::generate(),
        new_election("Partial", &["A", "B"], now, now + ChronoDuration::hours(1)),
        now,
        livevote_domain::CandidateId::generate,
    )
    .unwrap();
    (0..n)
        .map(|i| record(&e, &format!("auth0|{i}"), i % 2, now))
        .collect()
}

fn entry_ids(body: &Value) -> Vec<String> {
    body["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Id"].as_str().unwrap().to_owned())
        .collect()
}

fn votes_of_entry(body: &Value, id: &str) -> Vec<VoteRecord> {
    let entry = body["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Id"] == id)
        .unwrap();
    message::decode(entry["MessageBody"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_batch_answered_200_with_failed_entries_fails_exactly_their_votes_and_retries_what_can_succeed() {
    // Entry 3 is refused for good (sender fault); entry 5 fails once on the server side.
    let handler: Arc<Handler> = Arc::new(|body, call| {
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for id in entry_ids(body) {
            if id == "3" {
                failed.push(json!({"Id": id, "SenderFault": true, "Code": "InvalidMessageContents", "Message": "refused"}));
            } else if id == "5" && call == 1 {
                failed.push(
                    json!({"Id": id, "SenderFault": false, "Code": "InternalError", "Message": "try again"}),
                );
            } else {
                successful
                    .push(json!({"Id": id, "MessageId": format!("m-{id}-{call}"), "MD5OfMessageBody": "x"}));
            }
        }
        (200, json!({"Successful": successful, "Failed": failed}))
    });
    let (q, seen) = fake_queue(handler, config());
    // Two votes fit a 700-byte message: 20 votes are 10 messages, one call.
    let sent = votes(20);
    let outcomes = q.publish(&sent).await;
    assert_eq!(outcomes.len(), sent.len());

    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one call, then a retry: {calls:#?}");
    assert_eq!(entry_ids(&calls[0]).len(), 10, "ten messages per call");
    assert_eq!(
        entry_ids(&calls[1]),
        vec!["5".to_owned()],
        "only the retryable entry is sent again"
    );
    let refused: Vec<_> = votes_of_entry(&calls[0], "3")
        .into_iter()
        .map(|v| v.vote.vote_id)
        .collect();
    assert!(refused.len() >= 2, "several votes share a message");
    for (vote, outcome) in sent.iter().zip(&outcomes) {
        if refused.contains(&vote.vote.vote_id) {
            assert!(matches!(outcome, Err(QueueError::Rejected(_))), "{outcome:?}");
        } else {
            assert!(
                outcome.is_ok(),
                "vote {} should be published: {outcome:?}",
                vote.vote.vote_id
            );
        }
    }
}

#[tokio::test]
async fn entries_missing_from_the_answer_are_not_published() {
    // The server acknowledges only entry 0 and says nothing of the rest.
    let handler: Arc<Handler> = Arc::new(|body, call| {
        let first = &entry_ids(body)[0];
        let ok = if call == 1 && first == "0" {
            vec![json!({"Id": "0", "MessageId": "m", "MD5OfMessageBody": "x"})]
        } else {
            vec![]
        };
        (200, json!({"Successful": ok, "Failed": []}))
    });
    let (q, seen) = fake_queue(
        handler,
        SqsConfig {
            max_attempts: 3,
            ..config()
        },
    );
    let sent = votes(6);
    let outcomes = q.publish(&sent).await;
    let calls = seen.lock().unwrap().len();
    assert_eq!(calls, 3, "retried up to max_attempts");
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(
        ok >= 1 && ok < sent.len(),
        "only the acknowledged message's votes: {ok}"
    );
    assert!(outcomes[ok..].iter().all(Result::is_err));
}

#[tokio::test]
async fn a_throttled_call_is_retried_with_backoff_then_reported_as_throttled() {
    let handler: Arc<Handler> = Arc::new(|_, _| {
        (
            400,
            json!({"__type": "com.amazonaws.sqs#ThrottlingException", "message": "Rate exceeded"}),
        )
    });
    let (q, seen) = fake_queue(
        handler,
        SqsConfig {
            max_attempts: 4,
            ..config()
        },
    );
    let outcomes = q.publish(&votes(3)).await;
    assert_eq!(seen.lock().unwrap().len(), 4, "every attempt made");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(QueueError::Throttled(_)))),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_refused_call_is_not_retried() {
    let handler: Arc<Handler> = Arc::new(|_, _| {
        (
            400,
            json!({"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no such queue"}),
        )
    });
    let (q, seen) = fake_queue(handler, config());
    let outcomes = q.publish(&votes(3)).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        outcomes.iter().all(|o| matches!(o, Err(QueueError::Rejected(_)))),
        "{outcomes:?}"
    );
}
