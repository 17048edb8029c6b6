//! CloudWatch publishing: the request shape on the SDK's in-process HTTP
//! client (namespace, names, dimensions, summed values), a failed flush kept
//! for the next one, and a round trip to the local endpoint
//! (`PutMetricData`, read back with `ListMetrics`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::infallible_client_fn;
use ciborium::Value;
use livevote_domain::ElectionId;
use livevote_metrics::cloudwatch::{ELECTION_DIMENSION, VOTES_ACCEPTED, VOTES_PERSISTED, local_client};
use livevote_metrics::{CloudWatchConfig, CloudWatchMetrics};
use livevote_ports::{MetricEvent, Metrics};

/// A client whose calls are answered with `status(call number)`; returns the request bodies.
fn fake_client(
    status: impl Fn(usize) -> u16 + Send + Sync + 'static,
) -> (aws_sdk_cloudwatch::Client, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let http = infallible_client_fn(move |req| {
        let bytes = req.body().bytes().unwrap_or_default().to_vec();
        let body: Value = ciborium::from_reader(bytes.as_slice()).expect("a CBOR request body");
        let call = {
            let mut log = log.lock().unwrap();
            log.push(body);
            log.len()
        };
        http::Response::builder()
            .status(status(call))
            .header("smithy-protocol", "rpc-v2-cbor")
            .header("content-type", "application/cbor")
            .body(vec![0xA0u8]) // an empty CBOR map
            .unwrap()
    });
    let client = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://monitoring.test")
            .retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled())
            .http_client(http)
            .build(),
    );
    (client, seen)
}

fn field<'a>(map: &'a Value, key: &str) -> &'a Value {
    map.as_map()
        .unwrap_or_else(|| panic!("not a map: {map:?}"))
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {map:?}"))
}

/// (metric name, election, value, unit) of every datum of a request.
fn data(body: &Value) -> Vec<(String, String, f64, String)> {
    let mut out: Vec<_> = field(body, "MetricData")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let dims = field(d, "Dimensions").as_array().unwrap();
            assert_eq!(dims.len(), 1);
            assert_eq!(field(&dims[0], "Name").as_text(), Some(ELECTION_DIMENSION));
            let value = match field(d, "Value") {
                Value::Float(f) => *f,
                Value::Integer(i) => i128::from(*i) as f64,
                other => panic!("value {other:?}"),
            };
            (
                field(d, "MetricName").as_text().unwrap().to_owned(),
                field(&dims[0], "Value").as_text().unwrap().to_owned(),
                value,
                field(d, "Unit").as_text().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

#[tokio::test]
async fn many_events_become_one_call_with_one_summed_point_per_metric_and_election() {
    let (client, seen) = fake_client(|_| 200);
    let cw = CloudWatchMetrics::new(
        client,
        CloudWatchConfig {
            namespace: "LivevoteTest".into(),
            ..CloudWatchConfig::default()
        },
    );
    let (a, b) = (ElectionId::generate(), ElectionId::generate());
    for _ in 0..1000 {
        cw.record(MetricEvent::VotesAccepted {
            election: a,
            count: 1,
        });
    }
    cw.record(MetricEvent::VotesAccepted {
        election: b,
        count: 500,
    });
    cw.record(MetricEvent::VotesPersisted {
        election: a,
        count: 998,
    });
    cw.record(MetricEvent::VoteReplayed); // not a CloudWatch metric
    assert!(seen.lock().unwrap().is_empty(), "recording sends nothing");
    assert_eq!(cw.flush().await, 3);

    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one PutMetricData for everything");
    assert_eq!(field(&calls[0], "Namespace").as_text(), Some("LivevoteTest"));
    let mut expected = vec![
        (
            VOTES_ACCEPTED.to_owned(),
            a.to_string(),
            1000.0,
            "Count".to_owned(),
        ),
        (
            VOTES_ACCEPTED.to_owned(),
            b.to_string(),
            500.0,
            "Count".to_owned(),
        ),
        (
            VOTES_PERSISTED.to_owned(),
            a.to_string(),
            998.0,
            "Count".to_owned(),
        ),
    ];
    expected.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    assert_eq!(data(&calls[0]), expected);
    // Nothing new: nothing sent.
    assert_eq!(cw.flush().await, 0);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_flush_keeps_its_sums_for_the_next_one() {
    let (client, seen) = fake_client(|call| if call == 1 { 500 } else { 200 });
    let cw = CloudWatchMetrics::new(client, CloudWatchConfig::default());
    let e = ElectionId::generate();
    cw.record(MetricEvent::VotesAccepted {
        election: e,
        count: 3,
    });
    assert_eq!(cw.flush().await, 0, "CloudWatch failed");
    cw.record(MetricEvent::VotesAccepted {
        election: e,
        count: 2,
    });
    assert_eq!(cw.flush().await, 1);
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        data(&calls[1]),
        vec![(VOTES_ACCEPTED.to_owned(), e.to_string(), 5.0, "Count".to_owned())]
    );
}

#[tokio::test]
async fn the_background_task_flushes_periodically_and_once_more_on_shutdown() {
    let (client, seen) = fake_client(|_| 200);
    let cw = CloudWatchMetrics::new(
        client,
        CloudWatchConfig {
            flush_interval: Duration::from_millis(50),
            ..CloudWatchConfig::default()
        },
    );
    let task = cw.start();
    let e = ElectionId::generate();
    cw.record(MetricEvent::VotesPersisted {
        election: e,
        count: 7,
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().len(), 1, "flushed by the task");
    cw.record(MetricEvent::VotesPersisted {
        election: e,
        count: 1,
    });
    task.shutdown().await;
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "the last sums are flushed on shutdown");
    assert_eq!(data(&calls[1])[0].2, 1.0);
}

#[tokio::test]
async fn published_metrics_reach_the_local_endpoint() {
    let endpoint =
        std::env::var("LIVEVOTE_TEST_CLOUDWATCH_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let namespace = format!("LivevoteTest/{}", ElectionId::generate());
    let client = local_client(&endpoint);
    let cw = CloudWatchMetrics::new(
        client.clone(),
        CloudWatchConfig {
            namespace: namespace.clone(),
            ..CloudWatchConfig::default()
        },
    );
    let e = ElectionId::generate();
    cw.record(MetricEvent::VotesAccepted {
        election: e,
        count: 10,
    });
    cw.record(MetricEvent::VotesPersisted {
        election: e,
        count: 9,
    });
    assert_eq!(cw.flush().await, 2, "PutMetricData accepted by {endpoint}");
    let listed = client.list_metrics().namespace(&namespace).send().await.unwrap();
    let mut names: Vec<(String, String)> = listed
        .metrics()
        .iter()
        .map(|m| {
            let dim = &m.dimensions()[0];
            assert_eq!(dim.name(), Some(ELECTION_DIMENSION));
            (
                m.metric_name().unwrap().to_owned(),
                dim.value().unwrap().to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            (VOTES_ACCEPTED.to_owned(), e.to_string()),
            (VOTES_PERSISTED.to_owned(), e.to_string())
        ]
    );
}
