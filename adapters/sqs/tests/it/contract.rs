//! The committed queue message schema (`contracts/vote-message.schema.json`)
//! is the one the code describes, and the encoder writes exactly its shape.
//! Regenerate with `LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-sqs --test contract`.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use livevote_domain::{Election, ElectionId};
use livevote_sqs::message::{SCHEMA_VERSION, decode, encode, json_schema};
use livevote_testkit::fixtures::{new_election, record};
use serde_json::Value;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn required(schema: &Value) -> BTreeSet<String> {
    schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_committed_schema_matches_the_code() {
    let generated = format!("{}\n", serde_json::to_string_pretty(&json_schema()).unwrap());
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/vote-message.schema.json"
    );
    if std::env::var_os("LIVEVOTE_UPDATE_CONTRACTS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    // Compared as JSON values: key order depends on serde_json's features in a build.
    let committed: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    assert!(
        committed == json_schema(),
        "contracts/vote-message.schema.json differs from message::json_schema(); regenerate it with \
         LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-sqs --test contract"
    );
}

#[test]
fn encoded_messages_have_exactly_the_schema_shape() {
    let now = Utc::now();
    let election = Election::create(
        ElectionId::generate(),
        new_election("Contract", &["A", "B"], now, now + Duration::hours(1)),
        now,
    )
    .unwrap();
    let votes = vec![
        record(&election, "auth0|plain", 0, now),
        record(&election, "ünïcödé \u{fffe} voter", 1, now),
    ];
    let body: Value = serde_json::from_str(&encode(&votes)).unwrap();
    let schema = json_schema();
    assert_eq!(keys(&body), required(&schema));
    assert_eq!(
        keys(&body),
        keys(&schema["properties"]),
        "no field outside the schema"
    );
    assert_eq!(body["v"], schema["properties"]["v"]["const"]);
    assert_eq!(body["v"], SCHEMA_VERSION);
    let item = &schema["properties"]["votes"]["items"];
    for vote in body["votes"].as_array().unwrap() {
        assert_eq!(keys(vote), required(item));
        assert_eq!(keys(vote), keys(&item["properties"]));
        for field in keys(vote) {
            assert!(vote[&field].is_string(), "{field} is a string");
        }
        let vote_id = vote["voteId"].as_str().unwrap();
        assert_eq!(vote_id.len(), 36);
        assert_eq!(&vote_id[14..15], "7", "a UUID v7");
    }
    // additionalProperties: false is what the decoder enforces.
    let mut extra = body.clone();
    extra["votes"][0]["voter"] = Value::String("someone".into());
    assert!(decode(&extra.to_string()).is_err(), "an unknown field is poison");
    let mut extra_top = body.clone();
    extra_top["note"] = Value::String("x".into());
    assert!(decode(&extra_top.to_string()).is_err());
    // minItems: 1.
    assert!(decode(r#"{"v":1,"votes":[]}"#).is_err());
    assert_eq!(decode(&body.to_string()).unwrap(), votes);
}
