//! The committed queue message schema (`contracts/vote-message.schema.json`)
//! is the one the code describes, and the encoder writes exactly its shape.
//! The schema is derived (schemars) from the decoder's types; every encoded message is
//! validated against the committed file (jsonschema). Regenerate with
//! `LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-sqs --test it contract::`.

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
         LIVEVOTE_UPDATE_CONTRACTS=1 cargo test -p livevote-sqs --test it contract::"
    );
}

#[test]
fn encoded_messages_have_exactly_the_schema_shape() {
    let now = Utc::now();
    let election = Election::create(
        ElectionId::generate(),
        new_election("Contract", &["A", "B"], now, now + Duration::hours(1)),
        now,
        livevote_domain::CandidateId::generate,
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
        // A `single` vote carries exactly the required fields; the slot
        // fields are optional and left out for the first slot.
        assert_eq!(keys(vote), required(item));
        let optional: BTreeSet<String> = ["slot", "candidateSlot"].map(String::from).into();
        let all: BTreeSet<String> = required(item).union(&optional).cloned().collect();
        assert_eq!(keys(&item["properties"]), all);
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

/// A validator of the committed schema, formats (`date-time`) included.
fn committed_validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contracts/vote-message.schema.json"
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the committed schema is a valid JSON Schema")
}

#[test]
fn every_encoded_message_is_valid_against_the_committed_schema_and_the_decoder_agrees_on_invalid_ones() {
    let validator = committed_validator();
    let now = Utc::now();
    let election = Election::create(
        ElectionId::generate(),
        new_election("Validated", &["A", "B", "C"], now, now + Duration::hours(1)),
        now,
        livevote_domain::CandidateId::generate,
    )
    .unwrap();
    let voters = [
        "auth0|plain".to_owned(),
        "ünïcödé \u{fffe}\u{ffff} voter".to_owned(),
        "x".repeat(255),
        "quote\" and backslash\\".to_owned(),
    ];
    for size in [1, 3, 50] {
        let votes: Vec<_> = (0..size)
            .map(|i| {
                let mut r = record(&election, &voters[i % voters.len()], i % 3, now);
                // Every third vote in a later slot, as `multi` and `changeable` send them.
                if i % 3 == 2 {
                    r.vote.slot = livevote_domain::VoteSlot {
                        number: 2 + i as u32,
                        per_candidate: (i % 2 == 0).then_some(1),
                    };
                }
                r
            })
            .collect();
        let body = encode(&votes);
        let value: Value = serde_json::from_str(&body).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "a message of {size} votes: {errors:?}");
        assert_eq!(decode(&body).unwrap(), votes);
    }
    let good: Value = serde_json::from_str(&encode(&[record(&election, "v", 0, now)])).unwrap();
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let invalid = [
        mutate(&|v| v["v"] = Value::from(2)),
        mutate(&|v| v["votes"] = Value::Array(Vec::new())),
        mutate(&|v| v["votes"][0]["voteId"] = Value::from("0190a8d2-1c3b-4f6e-8a9b-0c1d2e3f4a5b")),
        mutate(&|v| v["votes"][0]["electionId"] = Value::from("not-a-uuid")),
        mutate(&|v| v["votes"][0]["voterId"] = Value::from("")),
        mutate(&|v| v["votes"][0]["acceptedAt"] = Value::from("yesterday")),
        mutate(&|v| v["votes"][0]["correlationId"] = Value::from("has space")),
        mutate(&|v| {
            v["votes"][0].as_object_mut().unwrap().remove("candidateId");
        }),
        mutate(&|v| v["extra"] = Value::from(1)),
        mutate(&|v| v["votes"][0]["slot"] = Value::from(0)),
        mutate(&|v| v["votes"][0]["candidateSlot"] = Value::from(0)),
        mutate(&|v| v["votes"][0]["slot"] = Value::from("2")),
    ];
    for (i, message) in invalid.iter().enumerate() {
        assert!(
            !validator.is_valid(message),
            "case {i} passes the schema: {message}"
        );
        assert!(
            decode(&message.to_string()).is_err(),
            "case {i} decodes: {message}"
        );
    }
}
